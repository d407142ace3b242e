"""The action-token VLA: a VLM backbone whose vocabulary is extended with action-bin tokens.

Sequence layout (left-padded so every sample's action tokens sit in the same final positions):

    [pad ...] [image tokens per camera] "<instruction>; state:" [s_0 ... s_{D-1}] [a_0 ... a_{T-1}]

The backbone adapter (`backbone.py`) lays out the part up to the state tokens as its family does (image
special tokens, BOS, positions, PaliGemma's bidirectional prefix); this model only supplies the instruction
text and the state and action ids, and never knows which family it runs.

The state is quantile-normalized and binned, one appended token per dimension. (pi0-FAST writes the bins
as decimal text, which a pretrained LM reads; a backbone trained from scratch first has to learn to parse
digits, and measured here it did not within a CPU budget.) Bin tokens, state and action alike, start from
ordinal (Fourier-feature) embeddings, so neighbouring bins begin close instead of as unrelated classes.
The T = H x D action tokens are time-major (or, with `step_tokens`, H tokens of D values each). Logits are
only ever computed over the action ids (the rows of the LM head for them), so training is a distribution
over bins and decoding cannot leave the action vocabulary: every decode yields exactly H x D valid bins,
i.e. a well-formed chunk.

Teacher forcing alone teaches a shortcut: actions are smooth, so token t is nearly token t - D, and the
model learns to copy instead of to look (measured: 0.016 teacher-forced L1 while its open-loop chunks on
training frames were no better than the mean action). Training therefore replaces each input action token
by a MASK token with probability `token_dropout`, so every position must be predictable from the images,
state and instruction. The same model then decodes either way:
- "autoregressive": one token at a time with a KV cache, each step fed the bin it just decoded;
- "parallel": every input is MASK, the whole chunk comes from one forward pass.

Both decoders also take *given* actions (real-time chunking, `generate(given=...)`): the actions a robot will
execute while this chunk is being computed enter as their bin tokens in the first positions, and only the
rest is predicted, so the new chunk continues from them. Token dropout already trains inputs that mix real
tokens and MASK; `prefix_prob` adds samples laid out exactly as at inference (a real prefix of random length,
MASK after it). Measured on Meta-World (README, "Control under latency"), the head continues given tokens
even when they come from an older plan, so errors compound; `input_noise` (noise on the real action inputs in
training) makes it lean on the image: with prefix_prob 0.5 and input_noise 0.6, real-time chunking at 3 ticks
of delay matched lockstep, at a cost in lockstep success.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vla.model.action_tokenizer import BinActionTokenizer, BinTokenizerConfig
from vla.model.backbone import Backbone, BackboneConfig, kv_cache
from vla.model.ordinal import ordinal_embedding

DECODE_MODES = ("expected", "argmax")
DECODING = ("autoregressive", "parallel")
FINAL_STATE_READS = ("auto", "image_tokens")


def check_action_indices(name: str, dims: list[int]) -> None:
    if len(set(dims)) != len(dims) or any(d < 0 for d in dims):
        raise ValueError(f"{name} must be distinct action indices >= 0, got {dims}")


@dataclass
class VLAConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    tokenizer: BinTokenizerConfig = field(default_factory=BinTokenizerConfig)
    chunk_size: int = 8  # H: actions predicted per inference
    n_action_steps: int = 4  # actions executed from each chunk before replanning
    decode: str = "expected"  # "expected": mean under the bin distribution; "argmax": the likeliest bin
    # Dimensions decoded by their likeliest bin whatever `decode` says (indices into the action vector). A gripper
    # the expert only ever opens or closes is bimodal where the policy is unsure; its expected value is then a
    # half-closed command in a bin training never showed, which autoregressive decoding also feeds back.
    argmax_dims: list[int] = field(default_factory=list)
    decoding: str = "parallel"  # or "autoregressive" (one token at a time, KV cache)
    token_dropout: float = 0.5  # training: probability an input action token is replaced by MASK
    state_bins: int = 256  # resolution of the proprioceptive state tokens in the prompt
    input_noise: float = 0.0  # training: std of noise on the real action inputs (normalized units)
    prefix_prob: float = 0.0  # training: probability a sample's inputs are a real prefix then MASK (real-time chunking)
    state_dropout: float = 0.0  # training: probability a sample's state tokens are all MASK; 1.0: never fed the state
    # Training: probability that a sample's real action inputs are the model's own decoded values (`decode`, from a
    # MASK-only pass without gradient, re-binned) instead of the expert's: what autoregressive decoding feeds
    # back. The expert's gripper is always open or closed, so the input rows of the gripper's middle bins are
    # never trained, yet a decoder torn between open and closed feeds back just such a bin: one tabletop seed
    # decoded autoregressively lost its grasps to a gripper command that flipped 21 to 71 times an episode,
    # and feeding back the likeliest bin instead rescued it (README, tabletop). Costs one more pass of the language
    # model (the images are encoded once, ~1.13x the step). At 0.5 it gave that seed its grasps back (seen 52 to
    # 87%) and cost another seed's (88 to 77%), so it is off.
    self_condition: float = 0.0
    # The action dimensions whose inputs self-conditioning replaces (indices into the action vector); empty: all.
    # The gripper's alone (the tabletop's [3]) targets the bins the expert never shows and leaves the arm's inputs
    # the expert's. On the tabletop's two seeds it kept the good one (seen 93%) and rescued the other less (72%).
    self_condition_dims: list[int] = field(default_factory=list)
    # Training: weight of an auxiliary loss on where the demonstration ends (the hand on the named object, for
    # touch). It is read from the demonstration itself, so any dataset has it. The action loss alone lets a policy
    # reach *some* object and ignore which one the words name (README, tabletop). With a keypoint encoder
    # (connector=film_cnn) an MLP on the first camera's keypoints predicts the displacement to the final state
    # (MSE), trained on a batch of episodes' first frames of its own (`final_state_frames`); otherwise the D
    # prompt positions before the state tokens predict the final state over the state bins. The keypoint head
    # at 10 took a touch policy from chance to 92% on seen scenes (README, tabletop); the prompt-position loss
    # did not move it. 0: off.
    final_state_weight: float = 0.0
    # What the final-state head reads. "auto": the first camera's keypoints with a keypoint encoder
    # (connector=film_cnn), otherwise the prompt positions above. "image_tokens": an MLP on the first camera's image
    # tokens, flattened in grid order (the embedded model's, any connector; FiLM-conditioned where `film` is on),
    # trained on first frames as the keypoint head is. Meta-World's puck and goals are 2 to 3 pixels wide; from the
    # action loss alone the encoder found push's puck at 12000 steps on one seed and not in 24000 on another
    # (benchmarks/results/metaworld_history.md). This target asks it where the demonstration grasps and ends from
    # the first frame, without the FilmCNN's cost (~46 samples/s on Meta-World; this head ~256, against ~310
    # without one). At 6000 steps (one seed) MT10 scored 66.5% against 61.0%; at 24000 steps 81.0 and 82.5% on two
    # seeds against 78.5 and 60.0%, so benchmarks/metaworld_mt.py trains with it. The model's default stays auto
    # (README, MT10).
    final_state_reads: str = "auto"
    # The keypoint head learns from each episode's first N frames only (the trainer draws a batch of them each
    # step, beside the action batch). Later in an episode the hand's own position says where it is heading: a
    # head trained on every frame, with the state as input, fit its training frames (MSE 0.05) and still guessed
    # 16.4 cm from the named object on new scenes' first frames (session 16).
    final_state_frames: int = 5
    # How many of those first frames the head learns from each step; 0: the training batch size. Each is one more
    # pass of the first camera's CNN, forward and backward: a third of the tabletop step's CNN work at batch 32
    # (benchmarks/tabletop_train_speed.py measures what fewer save).
    final_state_batch: int = 0
    # The share of those first frames whose instruction is redrawn among the scene's objects that its task trains
    # as targets (its own among them), the final state and keyframe moved with the object
    # (vla/datasets/renamings.py; Suite.renamings: each tabletop scene's four objects, none for Meta-World). Each
    # scene is then asked for all its objects, so the same color word meets both shapes, and the shape word both
    # colors, in one image. On the encoder probe (benchmarks/probes/composition_probe.py 6000 counterfactual=1.0,
    # seed 0) the FilmCNN found the named object in 98.5% of new seen scenes and 86.5% of held-out-composition
    # ones, where without it, the same seed, it was still at chance at step 6000 (31.5 and 24%). In the tabletop
    # policy (seed 0) the head found held-out pairs as often without it (91 and 92%), and held-out compositions
    # were level (78.3% against 77.5% over 30 episodes per skill; seen 95% against 93%): off until more seeds say.
    # Training-time labels from the simulator's scene, as the demonstrations are; the policy's inputs are unchanged.
    final_state_renamed: float = 0.0
    # The keypoint head also predicts the displacement to the demonstration's first gripper keyframe (where its
    # gripper command first changes: the grasp of a pick; ChunkDataset's keyframe_state), beside the final
    # state. The final state of a place is over the pad, so the final state alone never asks the encoder where
    # the object to pick is: the tabletop policy trained without it placed 0% (README, tabletop).
    final_state_keyframe: bool = False
    # How many frames a step the keyframe target also learns from on the approach: frames past the first
    # `final_state_frames` and before the grasp, of episodes whose gripper changes (a pick; a touch or push has no
    # grasp to find). The first frames teach the encoder where the named object is while the hand is far; the
    # approach frames keep the keypoints on it as the arm comes near and covers the scene, where the tabletop's
    # held-out place misses closed the gripper 6 to 11 cm from the named object (README, tabletop). The final
    # state keeps the first frames only: on later frames the hand's own position says where it is heading
    # (`final_state_frames`). 0: off. Measured at 16 on the tabletop's seed 1 (history file, session 42): place's
    # held-out pairs stayed at 40%, held-out compositions 62% against the default's 67%, so it is off.
    keyframe_approach_batch: int = 0
    # The keypoint head's own prediction (where the demonstration ends, and with final_state_keyframe where it
    # grasps) enters the prompt as state-bin tokens after the state, predicted from the current frame's scene image
    # and instruction: the action model is told where to go instead of finding it in the keypoint tokens. Three
    # training seeds of the tabletop policy without it found the named object alike in the head (96-99% of new
    # seen scenes) and acted on it in 62 to 98% of seen episodes (README, tabletop). The tokens are bins, so no
    # action-loss gradient reaches the head through them (a head trained on every frame learns a shortcut,
    # `final_state_frames`); the action model learns from the same predictions, on the same frames, as it gets at
    # inference, so the policy stays stateless per call (one server serves many clients). Measured on two tabletop
    # seeds, it did not make them agree (seen 80 and 53%; README, tabletop), so it is off.
    goal_tokens: bool = False
    # One MASK id per action slot (timestep x dimension) instead of one for all: a masked slot's input then
    # says which action it stands for, where with a single MASK only the rotary positions tell the slots apart.
    slot_masks: bool = False
    # One token per action timestep that holds all D dimensions, instead of one token per dimension: a chunk
    # is H tokens instead of H x D. Each dimension has its own bin ids; a step's input embedding is the mean
    # of its D rows, and its hidden state is read out by each dimension's own LM-head rows. ~1.2x the
    # training samples/s and a lower loss at equal samples; on the demo tasks, five training seeds gave 80%
    # mean success against 72% with one token per dimension (README, "Training speed").
    step_tokens: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        if isinstance(self.tokenizer, dict):
            self.tokenizer = BinTokenizerConfig(**self.tokenizer)
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(f"n_action_steps must be in [1, chunk_size={self.chunk_size}], got {self.n_action_steps}")
        if self.decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, got {self.decode!r}")
        if self.decoding not in DECODING:
            raise ValueError(f"decoding must be one of {DECODING}, got {self.decoding!r}")
        for name in ("token_dropout", "prefix_prob", "state_dropout", "self_condition"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.input_noise < 0:
            raise ValueError(f"input_noise must be >= 0, got {self.input_noise}")
        for name in ("self_condition_dims", "argmax_dims"):
            check_action_indices(name, getattr(self, name))
        if self.final_state_weight < 0:
            raise ValueError(f"final_state_weight must be >= 0, got {self.final_state_weight}")
        if self.final_state_reads not in FINAL_STATE_READS:
            raise ValueError(f"final_state_reads must be one of {FINAL_STATE_READS}, got {self.final_state_reads!r}")
        if self.final_state_reads != "auto" and self.final_state_weight == 0:
            raise ValueError(f"final_state_reads={self.final_state_reads} chooses the final-state head's input: it "
                             "needs final_state_weight > 0")
        if self.final_state_frames < 1:
            raise ValueError(f"final_state_frames must be >= 1, got {self.final_state_frames}")
        if self.final_state_batch < 0:
            raise ValueError(f"final_state_batch must be >= 0 (0: the batch size), got {self.final_state_batch}")
        if not 0.0 <= self.final_state_renamed <= 1.0:
            raise ValueError(f"final_state_renamed must be in [0, 1], got {self.final_state_renamed}")
        if self.final_state_renamed and self.final_state_weight == 0:
            raise ValueError("final_state_renamed relabels the keypoint head's frames: it needs final_state_weight > 0")
        if self.final_state_keyframe and self.final_state_weight == 0:
            raise ValueError("final_state_keyframe is a target of the keypoint head: it needs final_state_weight > 0")
        if self.keyframe_approach_batch < 0:
            raise ValueError(f"keyframe_approach_batch must be >= 0, got {self.keyframe_approach_batch}")
        if self.keyframe_approach_batch and not self.final_state_keyframe:
            raise ValueError("keyframe_approach_batch trains the keyframe target: it needs final_state_keyframe=true")
        if self.goal_tokens and self.final_state_weight == 0:
            raise ValueError("goal_tokens are the keypoint head's predictions: they need final_state_weight > 0")


class VLAModel(torch.nn.Module):
    def __init__(self, cfg: VLAConfig, backbone: Backbone, action_tokenizer: BinActionTokenizer,
                 state_low: np.ndarray, state_high: np.ndarray, n_cameras: int):
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.action_tokenizer = action_tokenizer
        # The state is binned exactly as actions are (q01..q99 -> [-1, 1] -> bins); only the count differs.
        self.state_tokenizer = BinActionTokenizer(BinTokenizerConfig(n_bins=cfg.state_bins), state_low, state_high)
        self.n_cameras = n_cameras
        d = action_tokenizer.action_dim
        self.check_dims(cfg, d)
        self.values_per_token = self.token_width(cfg, d)  # g: 1, or D with step_tokens
        self.n_action_values = cfg.chunk_size * d  # what a chunk decodes to
        self.n_action_tokens = self.n_action_values // self.values_per_token  # the positions it takes
        # appended ids: MASK, the slot MASKs (slot_masks), g ranges of action bins (one per value of a token), the state bins
        self.mask_id = backbone.first_new_id
        n_slot = self.n_slot_masks(cfg, d)
        slot_ids = torch.arange(1, 1 + n_slot) + self.mask_id if n_slot else torch.full((self.n_action_tokens,), self.mask_id)
        self.register_buffer("slot_mask_ids", slot_ids, persistent=False)  # the MASK input of each action token
        self.first_action_id = self.mask_id + 1 + n_slot
        self.n_action_ids = self.values_per_token * action_tokenizer.n_bins
        self.first_state_id = self.first_action_id + self.n_action_ids
        # the offset of each value's bin range within a token: value i of a chunk is slot i % g of its token
        self.register_buffer("value_offsets", torch.arange(self.n_action_values) % self.values_per_token
                             * action_tokenizer.n_bins, persistent=False)
        # The model's own modules beside the backbone (saved in the checkpoint under "heads."). final_state_weight
        # with a keypoint encoder: an MLP reads, from the keypoints' coordinates in the first camera's image, how
        # far the demonstration still goes (its final state less the current one, normalized).
        # - The displacement rather than the final state itself: late in an episode the hand is already where it
        #   ends, and finding the hand would explain the final state without finding the named object (measured:
        #   the loss stalled at 41% of its variance).
        # - The first camera only (the fixed scene camera of the tabletop suite): in a probe, adding the wrist
        #   camera's keypoints to the head's input, even from a CNN of its own, kept it from finding the named
        #   object (16.4 cm after 1000 steps, against 1.4 cm without them).
        # - The current state beside the keypoints, so that the head need not find the hand in the image to
        #   subtract it: only where the demonstration ends.
        # With final_state_reads=image_tokens the same MLP reads the first camera's image tokens instead.
        self.heads = torch.nn.ModuleDict()
        self.n_head_points = 2 * getattr(backbone, "n_keypoints", 0)
        self.head_reads = self.final_state_head_input(cfg, backbone)
        if self.head_reads:
            width = (self.n_head_points if self.head_reads == "keypoints"
                     else backbone.image_seq_len * backbone.model.config.text_config.hidden_size)
            targets = 2 if cfg.final_state_keyframe else 1  # the final state, then the keyframe
            self.heads["final_state"] = torch.nn.Sequential(
                torch.nn.Linear(width + len(state_low), 256), torch.nn.GELU(),
                torch.nn.Linear(256, targets * len(state_low)))
        if cfg.goal_tokens and "final_state" not in self.heads:
            raise ValueError("goal_tokens are the final-state head's predictions: they need a keypoint encoder "
                             "(backbone.connector=film_cnn) or final_state_reads=image_tokens")
        # the goal tokens' values: the head's targets, D each (none without goal_tokens)
        self.n_goal_tokens = (2 if cfg.final_state_keyframe else 1) * len(state_low) if cfg.goal_tokens else 0
        self._text_ids: dict[str, list[int]] = {}
        self.text_length = 0  # pad every prompt's text to at least this many ids (the trainer's fixed shapes)

    # ---- inputs ---------------------------------------------------------------------------------------
    @staticmethod
    def final_state_head_input(cfg: VLAConfig, backbone) -> str | None:
        """What the final-state head reads ("keypoints", "image_tokens"), or None: no head (the final state, if
        trained at all, is read at the prompt positions)."""
        if cfg.final_state_weight == 0:
            return None
        if cfg.final_state_reads == "image_tokens":
            if not hasattr(backbone, "first_camera_tokens"):
                raise ValueError("final_state_reads=image_tokens reads the embedded model's image tokens; "
                                 f"a {type(backbone).__name__} has none to read (leave it auto)")
            return "image_tokens"
        return "keypoints" if getattr(backbone, "n_keypoints", 0) else None

    @staticmethod
    def token_width(cfg: VLAConfig, action_dim: int) -> int:
        """How many action values one action token holds."""
        return action_dim if cfg.step_tokens else 1

    @staticmethod
    def n_slot_masks(cfg: VLAConfig, action_dim: int) -> int:
        return cfg.chunk_size * action_dim // VLAModel.token_width(cfg, action_dim) if cfg.slot_masks else 0

    @staticmethod
    def n_new_tokens(cfg: VLAConfig, action_dim: int) -> int:
        return (1 + VLAModel.n_slot_masks(cfg, action_dim) + VLAModel.token_width(cfg, action_dim) * cfg.tokenizer.n_bins
                + cfg.state_bins)

    @staticmethod
    def prompt_text(instruction: str) -> str:
        """The text between the image and the state tokens (what a fitted text tokenizer is fitted on)."""
        return f"{instruction.strip().lower()}; state:"

    def text_ids(self, instruction: str) -> list[int]:
        if instruction not in self._text_ids:
            text = self.prompt_text(instruction)
            self._text_ids[instruction] = self.backbone.encode(text)
        return self._text_ids[instruction]

    @torch.no_grad()
    def init_bin_embeddings(self) -> None:
        """Ordinal init for a fresh model: Fourier features of each bin's center for the input embeddings of
        the action and state bins and for the LM-head rows of the action bins.

        With step tokens, each dimension's range gets the same features with its channels in its own order
        (so that a step's mean of D rows still says which dimension has which bin), its input rows scaled by
        sqrt(D) so that the mean has the scale of one row."""
        emb = self.backbone.model.get_input_embeddings().weight
        head = self.backbone.output_weights(self.first_action_id, self.n_action_ids)
        n_a, n_s, g = self.action_tokenizer.n_bins, self.cfg.state_bins, self.values_per_token
        # the features are built on the CPU and copied into rows wherever the backbone lives, so the scales go as floats
        action_emb = ordinal_embedding(n_a, emb.shape[1], emb.std().item())
        action_head = ordinal_embedding(n_a, head.shape[1], head.std().item())
        for i in range(g):
            order = torch.randperm(emb.shape[1], generator=torch.Generator().manual_seed(i)) if i else torch.arange(emb.shape[1])
            rows = slice(self.first_action_id + i * n_a, self.first_action_id + (i + 1) * n_a)
            emb[rows] = action_emb[:, order] * g**0.5
            head[i * n_a : (i + 1) * n_a] = action_head[:, order]
        emb[self.first_state_id : self.first_state_id + n_s] = ordinal_embedding(n_s, emb.shape[1], emb.std().item())

    def build_prefix(self, images: torch.Tensor, states: np.ndarray, tasks: list[str],
                     head_only: bool = False) -> dict[str, torch.Tensor]:
        """images (B, n_cams, H, W, 3) uint8; states (B, D); tasks: B strings -> the backbone's prefix inputs:
        the images, the instruction, the state bins and (`goal_tokens`) the keypoint head's goal bins, laid out
        as the backbone's family lays them out. head_only: a prefix for the keypoint head alone, which reads its
        images and instruction, so its goal tokens are not computed."""
        states = np.asarray(states, np.float32)
        state_ids = self.first_state_id + self.state_tokenizer.to_bins(self.state_tokenizer.normalize(states))
        if self.cfg.state_dropout == 1.0:  # a policy trained without the state never sees it
            state_ids = np.full_like(state_ids, self.mask_id)
        texts = [self.text_ids(t) for t in tasks]
        prefix = self.backbone.prefix(images, texts, state_ids.tolist(), self.text_length)
        if not self.n_goal_tokens or head_only:
            return prefix
        goal_ids = self.first_state_id + self.state_tokenizer.to_bins(self.goals(prefix, states))
        return self.backbone.append(prefix, torch.from_numpy(goal_ids))

    @torch.no_grad()
    def goals(self, prefix: dict[str, torch.Tensor], states: np.ndarray) -> np.ndarray:
        """(B, n_goal_tokens) the keypoint head's predicted final (and keyframe) states, normalized, from a prefix's
        first camera and instruction (`goal_tokens`)."""
        now = self.state_tokenizer.normalize(states)
        predicted = now[:, None] + self.displacement(prefix, states).cpu().numpy().reshape(len(now), -1, now.shape[1])
        if not np.all(np.isfinite(predicted)):  # a NaN would bin to an arbitrary token
            raise FloatingPointError("the keypoint head predicted a non-finite goal")
        return np.clip(predicted, -1.0, 1.0).reshape(len(now), -1)

    def action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, P, hidden) states that predict P action tokens -> (B, P * g, n_bins) logits, one row per value."""
        g, n = self.values_per_token, self.action_tokenizer.n_bins
        weights = self.backbone.output_weights(self.first_action_id, self.n_action_ids)
        if g == 1:
            return hidden @ weights.T
        logits = torch.einsum("bph,gnh->bpgn", hidden, weights.view(g, n, -1))
        return logits.reshape(len(hidden), -1, n)

    def action_ids(self, values: torch.Tensor) -> torch.Tensor:
        """(B, V) normalized values (V a multiple of g) -> (B, V / g, g) the ids of the tokens that hold them."""
        ids = self.first_action_id + self.value_offsets[: values.shape[1]] + self.action_tokenizer.nearest_bin(values)
        return ids.view(len(values), -1, self.values_per_token)

    def masks(self, batch: int, start: int = 0) -> torch.Tensor:
        """(batch, P - start, g) the MASK inputs of the action tokens from `start` on."""
        ids = self.slot_mask_ids[start:, None].expand(-1, self.values_per_token)
        return ids.expand(batch, -1, -1)

    def _model_inputs(self, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """inputs whose last p ids are the placeholders (`ids[..., 0]`) of (B, p, g) action tokens -> what the
        backbone runs. A token of g > 1 values enters as the mean of its g rows of the input embedding, so the
        model then gets `inputs_embeds` instead of ids (every family finds its image tokens in those by their
        embedding); the placeholders have already set the mask and positions."""
        if self.values_per_token == 1:
            return inputs
        embed = self.backbone.model.get_input_embeddings()
        head = inputs["input_ids"][:, : inputs["input_ids"].shape[1] - ids.shape[1]]
        out = {k: v for k, v in inputs.items() if k != "input_ids"}
        out["inputs_embeds"] = torch.cat([embed(head), embed(ids).mean(2)], dim=1)
        return out

    def _run(self, prefix: dict[str, torch.Tensor], action_inputs: torch.Tensor):
        """One pass over prefix + P action tokens (B, P, g ids) -> the backbone's output."""
        return self.backbone(self._model_inputs(self.backbone.append(prefix, action_inputs[..., 0]), action_inputs))

    def _hidden(self, prefix: dict[str, torch.Tensor], action_inputs: torch.Tensor) -> torch.Tensor:
        """The last hidden states (B, L + P, hidden) of `_run`."""
        return self._run(prefix, action_inputs).last_hidden_state

    def _action_logits_at(self, hidden: torch.Tensor, p: int) -> torch.Tensor:
        """Logits (B, P * g, n_bins) at the positions that predict each of the last p (action) tokens."""
        return self.action_logits(hidden[:, -p - 1 : -1]).float()

    def _action_position_logits(self, prefix: dict[str, torch.Tensor], action_inputs: torch.Tensor) -> torch.Tensor:
        return self._action_logits_at(self._hidden(prefix, action_inputs), action_inputs.shape[1])

    def _final_state_logits(self, hidden: torch.Tensor, p: int) -> torch.Tensor:
        """(B, D, state_bins) at the D positions before the state tokens (`final_state_weight`); p action tokens
        follow the prefix."""
        d = self.state_tokenizer.action_dim
        rows = self.backbone.output_weights(self.first_state_id, self.cfg.state_bins)
        return (hidden[:, -p - 1 - d : -p - 1] @ rows.T).float()

    def displacement(self, prefix: dict[str, torch.Tensor], state: np.ndarray) -> torch.Tensor:
        """(B, D) the keypoint head's predicted final state less the current one `state` (B, D), normalized, then
        with `final_state_keyframe` (B, 2D) the same for the keyframe: the image encoder alone runs, not the
        language model."""
        seen = (self.backbone.first_camera_keypoints(prefix) if self.head_reads == "keypoints"
                else self.backbone.first_camera_tokens(prefix))
        now = torch.from_numpy(self.state_tokenizer.normalize(state)).to(seen)
        return self.heads["final_state"](torch.cat([seen, now], 1)).float()

    def keypoint_head_loss(self, prefix: dict[str, torch.Tensor], state: np.ndarray, final_state: np.ndarray,
                           keyframe_state: np.ndarray, final_known: np.ndarray | None = None) -> torch.Tensor:
        """MSE of `displacement` on a batch of episodes' first frames (`final_state_frames`), to the
        demonstration's final state (and with `final_state_keyframe` its keyframe state) less the current one,
        normalized. final_known: (B,) bool, the rows whose final state is a target (False: approach frames,
        `keyframe_approach_batch`, which train the keyframe target only); None: every row."""
        targets = [final_state, keyframe_state] if self.cfg.final_state_keyframe else [final_state]
        now = self.state_tokenizer.normalize(state)
        wanted = torch.from_numpy(np.concatenate([self.state_tokenizer.normalize(t) - now for t in targets], 1))
        predicted = self.displacement(prefix, state)
        squared = (predicted - wanted.to(predicted.device)) ** 2
        if final_known is None:
            return squared.mean()
        d = now.shape[1]
        weight = torch.ones_like(squared)
        weight[:, :d] = torch.from_numpy(np.asarray(final_known, dtype=np.float32))[:, None].to(weight)
        return (squared * weight).sum() / weight.sum()

    # ---- training -------------------------------------------------------------------------------------
    def masked_inputs(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, P) bool: which action tokens are MASK in training. Each token with probability
        `token_dropout`; or, for a sample drawn with probability `prefix_prob`, every token after a real prefix
        of k timesteps (k uniform in [1, H-1]): the layout of generate(given=)."""
        t = self.n_action_tokens
        drop = torch.rand(batch, t, generator=generator) < self.cfg.token_dropout
        if self.cfg.prefix_prob > 0:
            k = torch.randint(1, self.cfg.chunk_size, (batch, 1), generator=generator) * (t // self.cfg.chunk_size)
            as_prefix = torch.rand(batch, 1, generator=generator) < self.cfg.prefix_prob
            drop = torch.where(as_prefix, torch.arange(t)[None] >= k, drop)
        return drop

    def drop_state(self, prefix: dict[str, torch.Tensor], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """The prefix with each sample's state tokens (its last D ids before any goal tokens) all MASK with
        probability `state_dropout`."""
        ids, d = prefix["input_ids"], self.state_tokenizer.action_dim
        end = ids.shape[1] - self.n_goal_tokens
        drop = (torch.rand(len(ids), 1, generator=generator) < self.cfg.state_dropout).to(ids.device)
        state = torch.where(drop, self.mask_id, ids[:, end - d : end])
        return {**prefix, "input_ids": torch.cat([ids[:, : end - d], state, ids[:, end:]], dim=1)}

    def forward(self, prefix: dict[str, torch.Tensor], target, target_mask,
                generator: torch.Generator | None = None, final_state: np.ndarray | None = None,
                first_frames: tuple | None = None,
                ) -> dict[str, torch.Tensor]:
        """Teacher-forced loss with token dropout.

        prefix: `build_prefix`'s inputs; target: (B, H x D) normalized actions in [-1, 1]; target_mask: (B, H x D)
        bool, False on padding. With `final_state_weight` > 0: final_state, (B, D) the state at the end of each
        sample's episode; with a keypoint head instead, first_frames, the (prefix, state, final_state,
        keyframe_state[, final_known]) of a batch of episodes' first frames (`keypoint_head_loss`)."""
        keypoint_head = self.cfg.final_state_weight > 0 and "final_state" in self.heads
        aux = self.cfg.final_state_weight > 0 and not keypoint_head
        if aux and final_state is None:
            raise ValueError("final_state_weight > 0 needs each sample's final_state (at its episode's end)")
        if keypoint_head and first_frames is None:
            raise ValueError("final_state_weight > 0 with a keypoint head needs a batch of first frames")
        noisy = target
        if self.cfg.input_noise > 0:  # the given actions at inference are a plan's, not the expert's
            noisy = (target + self.cfg.input_noise * torch.randn(target.shape, generator=generator).to(target.device)).clamp(-1, 1)
        drop = self.masked_inputs(len(target), generator).to(target.device)
        if 0 < self.cfg.state_dropout < 1:
            prefix = self.drop_state(prefix, generator)
        if self.cfg.self_condition > 0:  # two passes over one prefix: its images encoded once, with gradient
            prefix = self.backbone.encode_images(prefix)
            noisy = self._self_conditioned(prefix, noisy, generator)
        action_ids = self.action_ids(noisy)
        action_ids = torch.where(drop[..., None], self.masks(len(action_ids)), action_ids)
        run = self._run(prefix, action_ids)
        hidden = run.last_hidden_state
        logits = self._action_logits_at(hidden, action_ids.shape[1])
        nll = self.action_tokenizer.soft_nll(logits, target)
        w = target_mask.float()
        loss = (nll * w).sum() / w.sum().clamp(min=1)
        with torch.no_grad():
            err = (self.action_tokenizer.expected_value(logits) - target).abs()
            l1 = (err * w).sum() / w.sum().clamp(min=1)
        out = {"loss": loss, "l1": l1}
        if aux:
            final = torch.from_numpy(self.state_tokenizer.normalize(final_state)).to(hidden.device)
            out["final_state_loss"] = self.state_tokenizer.soft_nll(
                self._final_state_logits(hidden, action_ids.shape[1]), final).mean()
        if keypoint_head:
            out["final_state_loss"] = self.keypoint_head_loss(*first_frames)
        if "final_state_loss" in out:
            out["loss"] = loss + self.cfg.final_state_weight * out["final_state_loss"]
        return out

    def _self_conditioned(self, prefix: dict[str, torch.Tensor], inputs: torch.Tensor,
                          generator: torch.Generator | None) -> torch.Tensor:
        """inputs (B, V) with each sample's values, with probability `self_condition`, replaced by the model's
        own decoded values (`decode`) from one pass of MASK inputs (the parallel decoder's chunk, without gradient),
        in the dimensions `self_condition_dims` (all when empty)."""
        chosen = (torch.rand(len(inputs), 1, generator=generator) < self.cfg.self_condition).to(inputs.device)
        if not chosen.any():
            return inputs
        if self.cfg.self_condition_dims:
            chosen = chosen & self._in_dims(self.cfg.self_condition_dims, inputs.shape[1], device=inputs.device)[None]
        with torch.no_grad():
            own = self._values(self._action_position_logits(prefix, self.masks(len(inputs))))
        return torch.where(chosen, own.to(inputs), inputs)

    # ---- inference ------------------------------------------------------------------------------------
    @staticmethod
    def check_dims(cfg: VLAConfig, action_dim: int) -> None:
        """The config's action-dimension indices name dimensions the action has."""
        for name in ("self_condition_dims", "argmax_dims"):
            if any(i >= action_dim for i in getattr(cfg, name)):
                raise ValueError(f"{name} {getattr(cfg, name)} name dimensions beyond the action's {action_dim}")

    def _values(self, logits: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, n, bins) logits of the chunk's values start..start+n -> (B, n) decoded values."""
        argmax_dims = [] if self.cfg.decode == "argmax" else self.cfg.argmax_dims
        if self.cfg.decode == "expected" and not argmax_dims:
            return self.action_tokenizer.expected_value(logits)
        centers = torch.as_tensor(self.action_tokenizer.bin_centers(), device=logits.device)
        likeliest = centers[logits.argmax(-1)]
        if not argmax_dims:
            return likeliest
        chosen = self._in_dims(argmax_dims, logits.shape[1], start, logits.device)
        return torch.where(chosen, likeliest, self.action_tokenizer.expected_value(logits))

    def _in_dims(self, dims: list[int], n: int, start: int = 0, device=None) -> torch.Tensor:
        """(n,) whether each of a chunk's values start..start+n is of one of `dims`: values are timestep-major,
        value t * D + d is dimension d."""
        of = (start + torch.arange(n, device=device)) % self.action_tokenizer.action_dim
        return torch.isin(of, torch.as_tensor(dims, device=device))

    @torch.no_grad()
    def generate(self, prefix: dict[str, torch.Tensor], n_tokens: int | None = None,
                 given: torch.Tensor | None = None) -> torch.Tensor:
        """Returns (B, n_tokens) normalized actions in [-1, 1], always finite and always n_tokens of them.

        n_tokens (default: the whole chunk, T) lets the autoregressive decoder stop after the actions that
        will actually be executed; parallel decoding computes the whole chunk in one pass either way.
        given: (B, G) normalized values of the first G action tokens (G < T, whole timesteps): they are
        inputs, returned as they were given, and the tokens after them are predicted conditioned on them."""
        n_tokens = self.n_action_values if n_tokens is None else n_tokens
        if not 1 <= n_tokens <= self.n_action_values:
            raise ValueError(f"n_tokens must be in [1, {self.n_action_values}], got {n_tokens}")
        batch, device = len(prefix["input_ids"]), prefix["input_ids"].device
        if given is None:
            given = torch.zeros(batch, 0, device=device)
        d = self.action_tokenizer.action_dim
        if given.ndim != 2 or len(given) != batch or given.shape[1] % d or given.shape[1] >= self.n_action_values:
            raise ValueError(f"given actions must be (batch {batch}, k * {d}) with k < chunk_size "
                             f"{self.cfg.chunk_size}, got {tuple(given.shape)}")
        given = given.to(device).float().clamp(-1, 1)
        given_ids = self.action_ids(given)
        if self.cfg.decoding == "parallel":
            predicted = self._generate_parallel(prefix, given_ids)
        else:
            predicted = self._generate_autoregressive(prefix, given_ids, max(n_tokens - given.shape[1], 0))
        return torch.cat([given, predicted[:, given.shape[1]:]], dim=1)[:, :n_tokens]

    def _generate_parallel(self, prefix, given_ids) -> torch.Tensor:
        inputs = torch.cat([given_ids, self.masks(len(given_ids), given_ids.shape[1]).to(given_ids)], dim=1)
        return self._values(self._action_position_logits(prefix, inputs))

    def _generate_autoregressive(self, prefix, given_ids, n_values: int) -> torch.Tensor:
        """Decodes n_values after the given tokens (which join the prompt), one token (g values) at a time;
        returns placeholders for the given values + the decoded ones."""
        g = self.values_per_token
        inputs = self.backbone.append(prefix, given_ids[..., 0])
        out = self.backbone(self._model_inputs(inputs, given_ids), use_cache=True)
        hidden, cache = out.last_hidden_state[:, -1:], kv_cache(out)
        values = [torch.zeros(len(given_ids), given_ids.shape[1] * g, device=given_ids.device)]  # replaced by the given values
        for step in range(-(-n_values // g)):
            logits = self.action_logits(hidden).float()
            value = self._values(logits, (given_ids.shape[1] + step) * g)  # (B, g)
            values.append(value)
            if (step + 1) * g >= n_values:
                break
            ids = self._fed_back_ids(logits, value)  # (B, 1, g)
            inputs = self.backbone.append(inputs, ids[..., 0])
            out = self.backbone(self._model_inputs(self.backbone.last(inputs, 1), ids), cache=cache, use_cache=True)
            hidden, cache = out.last_hidden_state[:, -1:], kv_cache(out)
        return torch.cat(values, dim=1)

    def _fed_back_ids(self, logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The ids autoregressive decoding feeds back after a step: the decoded value's bin (one place, so that
        benchmarks/probes/greedy_feedback.py can measure feeding back the likeliest bin instead)."""
        return self.action_ids(value)

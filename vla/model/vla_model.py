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
The T = H x D
action tokens are time-major. Logits are only ever computed over the action ids (the rows of the LM head
for them), so training is a distribution over bins and decoding cannot leave the action vocabulary: every
decode yields exactly H x D valid bins, i.e. a well-formed chunk.

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
import torch.nn.functional as F

from vla.model.action_tokenizer import BinActionTokenizer, BinTokenizerConfig
from vla.model.backbone import Backbone, BackboneConfig
from vla.model.ordinal import ordinal_embedding

DECODE_MODES = ("expected", "argmax")
DECODING = ("autoregressive", "parallel")


@dataclass
class VLAConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    tokenizer: BinTokenizerConfig = field(default_factory=BinTokenizerConfig)
    chunk_size: int = 8  # H: actions predicted per inference
    n_action_steps: int = 4  # actions executed from each chunk before replanning
    decode: str = "expected"  # "expected": mean under the bin distribution; "argmax": the likeliest bin
    decoding: str = "parallel"  # or "autoregressive" (one token at a time, KV cache)
    token_dropout: float = 0.5  # training: probability an input action token is replaced by MASK
    state_bins: int = 256  # resolution of the proprioceptive state tokens in the prompt
    input_noise: float = 0.0  # training: std of noise on the real action inputs (normalized units)
    prefix_prob: float = 0.0  # training: probability a sample's inputs are a real prefix then MASK (real-time chunking)
    state_dropout: float = 0.0  # training: probability a sample's state tokens are all MASK; 1.0: never fed the state
    # One MASK id per action slot (timestep x dimension) instead of one for all: a masked slot's input then
    # says which action it stands for, where with a single MASK only the rotary positions tell the slots apart.
    slot_masks: bool = False

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
        for name in ("token_dropout", "prefix_prob", "state_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.input_noise < 0:
            raise ValueError(f"input_noise must be >= 0, got {self.input_noise}")


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
        self.n_action_tokens = cfg.chunk_size * action_tokenizer.action_dim
        # appended ids: MASK, the slot MASKs (slot_masks), the action bins, the state bins
        self.mask_id = backbone.first_new_id
        n_slot = self.n_slot_masks(cfg, action_tokenizer.action_dim)
        slot_ids = torch.arange(1, 1 + n_slot) + self.mask_id if n_slot else torch.full((self.n_action_tokens,), self.mask_id)
        self.register_buffer("slot_mask_ids", slot_ids, persistent=False)  # the MASK input of each action slot
        self.first_action_id = self.mask_id + 1 + n_slot
        self.first_state_id = self.first_action_id + action_tokenizer.n_bins
        self._text_ids: dict[str, list[int]] = {}

    # ---- inputs ---------------------------------------------------------------------------------------
    @staticmethod
    def n_slot_masks(cfg: VLAConfig, action_dim: int) -> int:
        return cfg.chunk_size * action_dim if cfg.slot_masks else 0

    @staticmethod
    def n_new_tokens(cfg: VLAConfig, action_dim: int) -> int:
        return 1 + VLAModel.n_slot_masks(cfg, action_dim) + cfg.tokenizer.n_bins + cfg.state_bins

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
        the action and state bins and for the LM-head rows of the action bins."""
        emb = self.backbone.model.get_input_embeddings().weight
        head = self.backbone.output_weights(self.first_action_id, self.action_tokenizer.n_bins)
        n_a, n_s = self.action_tokenizer.n_bins, self.cfg.state_bins
        emb[self.first_action_id : self.first_action_id + n_a] = ordinal_embedding(n_a, emb.shape[1], emb.std())
        emb[self.first_state_id : self.first_state_id + n_s] = ordinal_embedding(n_s, emb.shape[1], emb.std())
        head.copy_(ordinal_embedding(n_a, head.shape[1], head.std()))

    def build_prefix(self, images: torch.Tensor, states: np.ndarray, tasks: list[str]) -> dict[str, torch.Tensor]:
        """images (B, n_cams, H, W, 3) uint8; states (B, D); tasks: B strings -> the backbone's prefix inputs:
        the images, the instruction and the state bins, laid out as the backbone's family lays them out."""
        state_ids = self.first_state_id + self.state_tokenizer.to_bins(
            self.state_tokenizer.normalize(np.asarray(states, np.float32)))
        if self.cfg.state_dropout == 1.0:  # a policy trained without the state never sees it
            state_ids = np.full_like(state_ids, self.mask_id)
        return self.backbone.prefix(images, [self.text_ids(t) for t in tasks], state_ids.tolist())

    def action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.backbone.output_weights(self.first_action_id, self.action_tokenizer.n_bins).T

    def _action_position_logits(self, prefix: dict[str, torch.Tensor], action_inputs: torch.Tensor) -> torch.Tensor:
        """One pass over prefix + T action inputs; logits at the positions that predict each action token."""
        t = action_inputs.shape[1]
        hidden = self.backbone(self.backbone.append(prefix, action_inputs)).last_hidden_state[:, -t - 1 : -1]
        return self.action_logits(hidden).float()

    # ---- training -------------------------------------------------------------------------------------
    def masked_inputs(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, T) bool: which action inputs are MASK in training. Each token with probability
        `token_dropout`; or, for a sample drawn with probability `prefix_prob`, every token after a real prefix
        of k timesteps (k uniform in [1, H-1]): the layout of generate(given=)."""
        t = self.n_action_tokens
        drop = torch.rand(batch, t, generator=generator) < self.cfg.token_dropout
        if self.cfg.prefix_prob > 0:
            k = torch.randint(1, self.cfg.chunk_size, (batch, 1), generator=generator) * self.action_tokenizer.action_dim
            as_prefix = torch.rand(batch, 1, generator=generator) < self.cfg.prefix_prob
            drop = torch.where(as_prefix, torch.arange(t)[None] >= k, drop)
        return drop

    def drop_state(self, prefix: dict[str, torch.Tensor], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """The prefix with each sample's state tokens (its last D ids) all MASK with probability `state_dropout`."""
        ids, d = prefix["input_ids"], self.state_tokenizer.action_dim
        drop = (torch.rand(len(ids), 1, generator=generator) < self.cfg.state_dropout).to(ids.device)
        tail = torch.where(drop, self.mask_id, ids[:, -d:])
        return {**prefix, "input_ids": torch.cat([ids[:, :-d], tail], dim=1)}

    def forward(self, prefix: dict[str, torch.Tensor], target, target_mask,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Teacher-forced loss with token dropout.

        prefix: `build_prefix`'s inputs; target: (B, T) normalized actions in [-1, 1]; target_mask: (B, T) bool, False on padding."""
        noisy = target
        if self.cfg.input_noise > 0:  # the given actions at inference are a plan's, not the expert's
            noisy = (target + self.cfg.input_noise * torch.randn(target.shape, generator=generator).to(target.device)).clamp(-1, 1)
        action_ids = self.first_action_id + self.action_tokenizer.nearest_bin(noisy)
        drop = self.masked_inputs(len(action_ids), generator)
        action_ids = torch.where(drop.to(action_ids.device), self.slot_mask_ids, action_ids)
        if 0 < self.cfg.state_dropout < 1:
            prefix = self.drop_state(prefix, generator)
        logits = self._action_position_logits(prefix, action_ids)
        nll = -(self.action_tokenizer.soft_targets(target) * F.log_softmax(logits, -1)).sum(-1)
        w = target_mask.float()
        loss = (nll * w).sum() / w.sum().clamp(min=1)
        with torch.no_grad():
            err = (self.action_tokenizer.expected_value(logits) - target).abs()
            l1 = (err * w).sum() / w.sum().clamp(min=1)
        return {"loss": loss, "l1": l1}

    # ---- inference ------------------------------------------------------------------------------------
    def _values(self, logits: torch.Tensor) -> torch.Tensor:
        if self.cfg.decode == "expected":
            return self.action_tokenizer.expected_value(logits)
        centers = torch.as_tensor(self.action_tokenizer.bin_centers(), device=logits.device)
        return centers[logits.argmax(-1)]

    @torch.no_grad()
    def generate(self, prefix: dict[str, torch.Tensor], n_tokens: int | None = None,
                 given: torch.Tensor | None = None) -> torch.Tensor:
        """Returns (B, n_tokens) normalized actions in [-1, 1], always finite and always n_tokens of them.

        n_tokens (default: the whole chunk, T) lets the autoregressive decoder stop after the actions that
        will actually be executed; parallel decoding computes the whole chunk in one pass either way.
        given: (B, G) normalized values of the first G action tokens (G < T, whole timesteps): they are
        inputs, returned as they were given, and the tokens after them are predicted conditioned on them."""
        n_tokens = self.n_action_tokens if n_tokens is None else n_tokens
        if not 1 <= n_tokens <= self.n_action_tokens:
            raise ValueError(f"n_tokens must be in [1, {self.n_action_tokens}], got {n_tokens}")
        batch, device = len(prefix["input_ids"]), prefix["input_ids"].device
        if given is None:
            given = torch.zeros(batch, 0, device=device)
        d = self.action_tokenizer.action_dim
        if given.ndim != 2 or len(given) != batch or given.shape[1] % d or given.shape[1] >= self.n_action_tokens:
            raise ValueError(f"given actions must be (batch {batch}, k * {d}) with k < chunk_size "
                             f"{self.cfg.chunk_size}, got {tuple(given.shape)}")
        given = given.to(device).float().clamp(-1, 1)
        given_ids = self.first_action_id + self.action_tokenizer.nearest_bin(given)
        if self.cfg.decoding == "parallel":
            predicted = self._generate_parallel(prefix, given_ids)
        else:
            predicted = self._generate_autoregressive(prefix, given_ids, max(n_tokens - given.shape[1], 0))
        return torch.cat([given, predicted[:, given.shape[1]:]], dim=1)[:, :n_tokens]

    def _generate_parallel(self, prefix, given_ids) -> torch.Tensor:
        masks = self.slot_mask_ids[given_ids.shape[1]:].to(given_ids).expand(len(given_ids), -1)
        inputs = torch.cat([given_ids, masks], dim=1)
        return self._values(self._action_position_logits(prefix, inputs))

    def _generate_autoregressive(self, prefix, given_ids, n_tokens: int) -> torch.Tensor:
        """Decodes n_tokens after the given ones (which join the prompt); returns given placeholders + them."""
        g = given_ids.shape[1]
        inputs = self.backbone.append(prefix, given_ids)
        out = self.backbone(inputs, use_cache=True)
        hidden, cache = out.last_hidden_state[:, -1], out.past_key_values
        values = [torch.zeros(len(given_ids), g, device=given_ids.device)]  # replaced by the given values
        for step in range(n_tokens):
            value = self._values(self.action_logits(hidden).float())
            values.append(value[:, None])
            if step == n_tokens - 1:
                break
            inputs = self.backbone.append(inputs, (self.first_action_id + self.action_tokenizer.nearest_bin(value))[:, None])
            out = self.backbone(self.backbone.last(inputs, 1), past_key_values=cache, use_cache=True)
            hidden, cache = out.last_hidden_state[:, -1], out.past_key_values
        return torch.cat(values, dim=1)

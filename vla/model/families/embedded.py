"""The embedded default: a tiny SmolVLM built from `BackboneConfig` (random init) with a fitted text tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import ByT5Tokenizer, SmolVLMConfig, SmolVLMForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling

from vla.model import text_tokenizer as bpe
from vla.model.backbone import BackboneConfig, torch_dtype
from vla.model.families.smolvlm import SmolVLMBackbone
from vla.model.ordinal import grid_embedding


def hf_config(cfg: BackboneConfig, text_vocab: int, n_new_tokens: int) -> SmolVLMConfig:
    heads_v, heads_t = cfg.vision_hidden // cfg.head_dim, cfg.text_hidden // cfg.head_dim
    return SmolVLMConfig(
        vision_config=dict(
            hidden_size=cfg.vision_hidden, intermediate_size=4 * cfg.vision_hidden,
            num_hidden_layers=cfg.vision_layers, num_attention_heads=heads_v,
            image_size=cfg.image_size, patch_size=cfg.patch_size,
        ),
        text_config=dict(
            model_type="llama", vocab_size=text_vocab + n_new_tokens, hidden_size=cfg.text_hidden,
            intermediate_size=round(cfg.text_mlp_ratio * cfg.text_hidden), num_hidden_layers=cfg.text_layers,
            num_attention_heads=heads_t, num_key_value_heads=heads_t, max_position_embeddings=1024,
            pad_token_id=0, tie_word_embeddings=False,
        ),
        image_token_id=text_vocab,  # the first appended id
        scale_factor=cfg.scale_factor,
        tie_word_embeddings=False,
    )


def prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def conv_stem(patch_size: int, hidden: int, width: int = 32) -> torch.nn.Sequential:
    """Strided convolutions from pixels to the patch grid, one stage per prime factor of patch_size (12: strides
    2, 2, 3), channels doubling from `width`, then a 1x1 projection to the vision width. A stride-2 stage is a
    3x3 kernel padded by 1 (overlapping); a larger prime p is a p x p kernel, so every stage divides the side
    exactly and the grid matches the patch embedding's."""
    layers, channels = [], 3
    for i, stride in enumerate(prime_factors(patch_size)):
        out = width * 2**i
        kernel, pad = (3, 1) if stride == 2 else (stride, 0)
        layers += [torch.nn.Conv2d(channels, out, kernel, stride, pad), torch.nn.GroupNorm(8, out), torch.nn.GELU()]
        channels = out
    return torch.nn.Sequential(*layers, torch.nn.Conv2d(channels, hidden, 1))


class KeypointConnector(torch.nn.Module):
    """`connector="keypoints"`: each image token is a spatial softmax over the patch grid (Levine et al. 2016;
    robomimic's and Diffusion Policy's from-scratch image encoders end in one) instead of a pixel-shuffled 2x2
    block of patches.

    Token k attends over every patch with its own learned logits; the token is the attention-weighted patch
    feature plus sin-cos features of the expected (x, y) grid coordinate. Where a thing is then enters the
    language model as explicit coordinates, interpolated between patches, rather than as which token holds it
    (16 tokens of 24 pixels each at the default size, where a goal or an object is 3 to 8 pixels wide)."""

    def __init__(self, vision_hidden: int, text_hidden: int, side: int, n_tokens: int, n_freqs: int = 16):
        super().__init__()
        self.attend = torch.nn.Linear(vision_hidden, n_tokens)
        self.feature = torch.nn.Linear(vision_hidden, text_hidden)
        self.where = torch.nn.Linear(4 * n_freqs, text_hidden)
        axis = torch.linspace(-1, 1, side)
        rows, cols = torch.meshgrid(axis, axis, indexing="ij")  # row-major, as the vision tower orders patches
        self.register_buffer("grid", torch.stack([cols.reshape(-1), rows.reshape(-1)], 1), persistent=False)
        self.register_buffer("freqs", torch.logspace(np.log10(0.5), np.log10(side), n_freqs) * torch.pi,
                             persistent=False)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, P, vision_hidden) patch features -> (N, n_tokens, text_hidden) image tokens."""
        return self.tokens_and_points(patches)[0]

    def tokens_and_points(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image tokens and each token's expected (x, y) grid coordinate in [-1, 1], (N, n_tokens, 2)."""
        with torch.autocast(patches.device.type, enabled=False):
            patches = patches.float()
            weights = self.attend(patches).softmax(dim=1).transpose(1, 2)  # (N, K, P): each token's map over patches
            xy = weights @ self.grid
            angles = (xy[..., None] * self.freqs).flatten(2)
            return self.feature(weights @ patches) + self.where(torch.cat([angles.sin(), angles.cos()], -1)), xy


class InstructionFiLM(torch.nn.Module):
    """`film=True`: the instruction scales and shifts every channel of the vision tower after each of its layers
    (FiLM, Perez et al. 2018; RT-1's and BC-Z's image encoders are conditioned on the instruction this way).

    In the plain model the image tokens are computed without the words, and the language model must find the
    named object among 16 pooled tokens per camera. A touch policy trained so reaches an object in most
    episodes, but the named one only as often as chance (README, tabletop). With FiLM, which features matter
    (this color, that shape) is decided per patch, before the patches are pooled into tokens.

    The instruction enters as a bag of its token unigrams and bigrams (fastText's features: a bigram binds
    "red" to "cube" where a bag of words could not tell "the red cube on the blue pad" from its swap), each
    hashed to one of `n_buckets` rows of every layer's (scale, shift), summed. The rows start at zero, so a new
    model starts as the unconditioned one; an n-gram never trained on (a new word, a color-shape pair never
    named) adds nothing. `bigram_dropout` leaves out, in training, the bigrams of that share of the instructions
    (`dropout_per="instruction"`), so that the unigrams learn to pick the object alone where a new pair leaves
    them alone, or that share of each instruction's bigrams, each on its own draw (`"bigram"`), so that the
    training instructions include the held-out case: every bigram but one.

    Measured (benchmarks/probes/encoder_bisect.py): with the FilmCNN's keypoints asked for the named object's
    place, this bag learns it (~1 cm on new scenes in 1000 steps) as a bag of words does, where FiLM from the
    language model's own token embeddings (one transformer layer, mean-pooled, as before) and from their plain
    mean did not move off the mean guess: at their init scale (0.02) the words barely reach the FiLM."""

    def __init__(self, vision_hidden: int, n_layers: int, n_buckets: int = 4096, bigram_dropout: float = 0.0,
                 dropout_per: str = "instruction", factored_rank: int = 0, positional: bool = False,
                 gappy: bool = False):
        super().__init__()
        self.bigram_dropout, self.dropout_per = bigram_dropout, dropout_per
        # Gappy bigrams (`gappy`): each pair of words one word apart adds its own hashed row, in the same table.
        # They say a word's role by its neighbours' neighbours: "move _ green" (the object's color), "to _ red"
        # (the pad's), where a held-out pair's instruction lacks the bigram that says it ("green cylinder") and the
        # other bigrams are ambiguous ("the green"). A color and its shape are adjacent, so no gappy bigram binds a
        # pair: every one a held-out pair's instruction has is trained, and bigram dropout leaves them in.
        self.gappy = gappy
        self.table = torch.nn.EmbeddingBag(n_buckets, 2 * n_layers * vision_hidden, mode="sum")
        torch.nn.init.zeros_(self.table.weight)
        # Factored bigrams (`factored_rank` > 0): each adjacent pair of words adds out(left[w1] * right[w2]), a
        # rank-r bilinear feature where the hashed bigram is a row of its own. A pair never named ("green
        # cylinder") then has a feature built from what "green" did before other shapes and "cylinder" after
        # other colors, where its hashed row is zero. Never dropped (`bigram_dropout` is for the hashed rows).
        self.factored = None
        if factored_rank:
            self.left, self.right = (torch.nn.Embedding(n_buckets, factored_rank) for _ in range(2))
            self.factored = torch.nn.Linear(factored_rank, 2 * n_layers * vision_hidden, bias=False)
            torch.nn.init.zeros_(self.factored.weight)  # a new model starts as the one without them
        # Positional unigrams (`positional`): each word also adds a row for (word, its place in the instruction), in
        # a table of its own (exact for ids below POSITION_BUCKETS / MAX_POSITION, which a fitted tokenizer's are).
        # "red" third says the object is red, "red" seventh that the pad is ("put the red ball on the green pad"),
        # and a color-shape pair never named still has both rows trained: every color is some object's color at
        # that place in training. The hashed bigram is what says so otherwise, and a held-out pair's is untrained.
        self.positional = None
        if positional:
            self.positional = torch.nn.EmbeddingBag(self.POSITION_BUCKETS, 2 * n_layers * vision_hidden, mode="sum")
            torch.nn.init.zeros_(self.positional.weight)
        self.n_layers, self.vision_hidden, self.n_buckets = n_layers, vision_hidden, n_buckets

    POSITION_BUCKETS, MAX_POSITION = 8192, 16

    def forward(self, instruction_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) the prompt's ids, -1 outside the instruction -> (B, n_layers, 2, vision_hidden): each layer's
        scale (less 1) and shift."""
        ids, mask = instruction_ids.clamp(min=0), instruction_ids >= 0
        prev = torch.nn.functional.pad(ids[:, :-1], (1, 0))
        prev_in = torch.nn.functional.pad(mask[:, :-1], (1, 0)) & mask
        pairs = prev_in
        if self.bigram_dropout >= 1.0:  # unigrams only, at inference too: a bigram's hashed row may be a word's
            prev_in = torch.zeros_like(prev_in)
        elif self.training and self.bigram_dropout > 0:
            draws = (len(ids), 1) if self.dropout_per == "instruction" else ids.shape
            prev_in = prev_in & (torch.rand(draws, device=ids.device) >= self.bigram_dropout)
        buckets = [ids % self.n_buckets, (ids * 1000003 + prev * 7919 + 1) % self.n_buckets]
        weights = [mask, prev_in]
        if self.gappy:
            before = torch.nn.functional.pad(ids[:, :-2], (2, 0))
            buckets.append((ids * 999983 + before * 104729 + 2) % self.n_buckets)
            weights.append(torch.nn.functional.pad(mask[:, :-2], (2, 0)) & mask)
        buckets, weights = torch.cat(buckets, 1), torch.cat(weights, 1).to(self.table.weight.dtype)
        film = self.table(buckets, per_sample_weights=weights)
        if self.factored is not None:
            bilinear = self.left(prev % self.n_buckets) * self.right(ids % self.n_buckets) * pairs[..., None]
            film = film + self.factored(bilinear.sum(1))
        if self.positional is not None:
            place = (mask.cumsum(1) - 1).clamp(0, self.MAX_POSITION - 1)  # the word's index in the instruction
            film = film + self.positional((ids * self.MAX_POSITION + place) % self.POSITION_BUCKETS,
                                          per_sample_weights=mask.to(self.positional.weight.dtype))
        return film.view(-1, self.n_layers, 2, self.vision_hidden)


class FilmCNN(torch.nn.Module):
    """`connector="film_cnn"`: image tokens from a small CNN whose every layer is FiLM-conditioned on the
    instruction, pooled by keypoints over its grid (the image encoder of from-scratch language-conditioned
    policies: BC-Z, RT-1's FiLM-EfficientNet, robomimic's spatial softmax).

    A stride-2 5x5 convolution to half the image's side, then 3x3 convolutions at that resolution: an object 6
    pixels wide spans 3 cells of the grid instead of a fraction of one 12-pixel patch, and the words select its
    color and shape per cell before anything is pooled. On the tabletop's touch data, a probe built like it
    (benchmarks/probes/cnn_probe.py) learns where the named object is, to about 1 cm on new scenes within 1500
    steps, where the ViT with FiLM does not. As a policy's encoder it learns it from VLAModel's keypoint head
    (`final_state_weight`), not from the action loss alone (README, tabletop)."""

    def __init__(self, text_hidden: int, image_size: int, n_tokens: int, width: int = 32, layers: int = 4):
        super().__init__()
        self.width = width
        self.convs = torch.nn.ModuleList([torch.nn.Conv2d(3, width, 5, 2, 2)] +
                                         [torch.nn.Conv2d(width, width, 3, 1, 1) for _ in range(layers - 1)])
        # Normalized before each FiLM (conv, norm, FiLM, ReLU: Perez et al.'s block). Without it the scales
        # compound over the layers: measured, FiLM values grew to 150 and activations to 6e6 within 1000 steps,
        # and the keypoints' softmax became a frozen argmax with spiking gradients.
        self.norms = torch.nn.ModuleList([torch.nn.GroupNorm(8, width, affine=False) for _ in range(layers)])
        self.keypoints = KeypointConnector(width, text_hidden, image_size // 2, n_tokens)

    def forward(self, pixels: torch.Tensor, film: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) normalized pixels, (N, layers, 2, width) FiLM -> (N, n_tokens, text_hidden) tokens and
        their keypoints (N, n_tokens, 2)."""
        x = pixels
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(x))
            # in the activations' dtype, one fused kernel: under bf16 autocast an fp32 FiLM promoted every
            # 32x32x48x48 product to fp32 and back, a third of a training step on a CPU (measured)
            scale, shift = (film[:, i, j, :, None, None].to(h.dtype) for j in (0, 1))
            x = torch.relu(torch.addcmul(shift, h, 1 + scale))
        return self.keypoints.tokens_and_points(x.flatten(2).transpose(1, 2))


def mark_batch_dynamic(*tensors: torch.Tensor) -> None:
    """Compile the FiLM CNNs for any batch size (their first dimension), not for the first one they are called
    with. Measured (benchmarks/tabletop_train_speed.py, session 41): the tabletop step, whose scene CNN runs on the
    batch and on as many first frames for the keypoint head, took 0.425 s with the CNNs specialized to batch 32 and
    0.308 s with the batch dynamic, the same work and loss; a head batch of 31 (which makes torch.compile recompile
    with the batch dynamic) 0.33 s in the profile. Why the static kernels are slower is not measured. Everything else stays static:
    compiled with dynamic=True, every dimension symbolic, the backward took twice as long."""
    if not torch.compiler.is_compiling():  # called from eager code around a compiled module
        for tensor in tensors:
            torch._dynamo.maybe_mark_dynamic(tensor, 0)


class EmbeddedBackbone(SmolVLMBackbone):
    """The embedded model: SmolVLM's, with the options of an instruction-conditioned vision tower (`film`) or
    an instruction-conditioned CNN in its place (`connector="film_cnn"`)."""

    def __init__(self, model, text_tokenizer, first_new_id: int, fitted_tokenizer: bool, film: bool,
                 film_cnn: bool = False, n_cameras: int = 1, bigram_dropout: float = 0.0,
                 bigram_dropout_per: str = "instruction", film_only: bool = False, factored_rank: int = 0,
                 film_positional: bool = False, film_cnn_width: int = 32, film_gappy: bool = False):
        super().__init__(model, text_tokenizer, first_new_id, fitted_tokenizer)
        self.film_only = film_only  # BackboneConfig.film_only: the prompt holds no instruction, the FiLM reads it
        vc, tc = model.config.vision_config, model.config.text_config
        # film_cnn: one CNN per camera (as robomimic's and Diffusion Policy's encoders are), each with its own
        # FiLM channels; the vision tower is unused. In the probe of cnn_probe.py, the scene and wrist cameras
        # through one shared CNN had not found the named object after 750 steps (15 cm) where the scene camera
        # alone had (1 cm); with a CNN each, the wrist keypoints still stopped it (VLAModel's head reads the first
        # camera only).
        self.cnns = torch.nn.ModuleList([FilmCNN(tc.hidden_size, vc.image_size, self.image_seq_len, film_cnn_width)
                                         for _ in range(n_cameras if film_cnn else 0)])
        width, layers = ((n_cameras * self.cnns[0].width, len(self.cnns[0].convs)) if film_cnn
                         else (vc.hidden_size, vc.num_hidden_layers))
        self.film = (InstructionFiLM(width, layers, bigram_dropout=bigram_dropout, dropout_per=bigram_dropout_per,
                                     factored_rank=factored_rank, positional=film_positional, gappy=film_gappy)
                     if film or film_cnn else None)
        self.n_keypoints = self.image_seq_len if film_cnn else 0  # per image

    def prefix(self, images, texts, tails, text_length: int = 0) -> dict[str, torch.Tensor]:
        if self.film_only:  # [pad ...] [images] [tail]; the instruction's ids, left-padded with -1, for the FiLM
            inputs = super().prefix(images, [[] for _ in texts], tails)
            width = max(map(len, texts))
            inputs["instruction_ids"] = torch.tensor([[-1] * (width - len(t)) + list(t) for t in texts],
                                                     device=inputs["input_ids"].device)
            return inputs
        inputs = super().prefix(images, texts, tails, text_length)
        if self.film is not None:  # the instruction's ids, -1 elsewhere (the tails are appended ids, after the image id)
            ids = inputs["input_ids"]
            inputs["instruction_ids"] = torch.where((inputs["attention_mask"] == 1) & (ids < self.image_token_id), ids, -1)
        return inputs

    def encode_images(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """With `film`: the instruction-conditioned image tokens in place of the pixels and instruction ids."""
        if self.film is None or "pixel_values" not in inputs:  # the tower without FiLM runs inside the VLM
            return inputs
        inputs = dict(inputs)
        features = self.image_features(inputs.pop("pixel_values"), self.film(inputs.pop("instruction_ids")))
        inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=features)}
        return inputs

    def forward(self, inputs: dict[str, torch.Tensor], cache=None, use_cache: bool = False):
        # no images (a KV-cached step, or images already encoded): the instruction ids have done their work
        inputs = {k: v for k, v in self.encode_images(inputs).items() if k != "instruction_ids"}
        return super().forward(inputs, cache, use_cache)

    def first_camera_keypoints(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """A prefix's (B, tokens * 2) keypoint coordinates in the first camera, from its FiLM CNN alone (what
        VLAModel's keypoint head reads; the other cameras' CNNs are not run)."""
        _, points = self.run_cnn(0, inputs["pixel_values"], self.film(inputs["instruction_ids"]))
        return points.flatten(1)

    def first_camera_tokens(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """A prefix's (B, tokens * hidden) image tokens of the first camera, flattened in grid order, from the image
        encoder alone (what VLAModel's final-state head reads with final_state_reads=image_tokens)."""
        pixels = inputs["pixel_values"]
        film = self.film(inputs["instruction_ids"]) if self.film is not None else None
        tokens = self.run_cnn(0, pixels, film)[0] if self.cnns else self.image_features(pixels[:, :1], film)
        return tokens.reshape(len(pixels), -1)

    def run_cnn(self, camera: int, pixels: torch.Tensor, film: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One camera's FilmCNN on (B, n_cams, 3, H, W) pixels with its channels of the (B, n_layers, 2, V) FiLM."""
        cnn, width = self.cnns[camera], self.cnns[camera].width
        images, own = pixels[:, camera], film[..., camera * width : (camera + 1) * width]
        mark_batch_dynamic(images, own)
        return cnn(images, own)

    def compiled_parts(self) -> list[torch.nn.Module]:
        # The whole model, merge included, as benchmarks/train_speed.py measured it: its Llama embedding is not
        # scaled, so the merge's comparison of embeddings is exact compiled too. The FiLM CNNs run before it
        # (encode_images) and compile on their own: fused, each layer's norm, FiLM and ReLU are one pass over
        # its activations instead of four (benchmarks/tabletop_train_speed.py).
        return [self.model.model, *self.cnns]

    def image_features(self, pixels: torch.Tensor, film: torch.Tensor | None) -> torch.Tensor:
        """(B, n_cams, 3, H, W) pixels and (B, n_layers, 2, V) FiLM -> (B * n_cams * tokens, text_hidden): the
        FilmCNN's tokens, or the vision tower's forward (SmolVLMVisionTransformer's) with each layer's output
        modulated (film None: unmodulated, as the tower runs inside the VLM without `film`)."""
        if self.cnns:
            if pixels.shape[1] != len(self.cnns):
                raise ValueError(f"film_cnn was built for {len(self.cnns)} cameras, got {pixels.shape[1]}")
            features = torch.stack([self.run_cnn(c, pixels, film)[0] for c in range(len(self.cnns))],
                                   1)  # (B, n_cams, tokens, hidden)
        else:
            x = pixels.flatten(0, 1)
            if film is not None:
                film = film.repeat_interleave(pixels.shape[1], 0)  # one row per image, camera-minor as the tokens are
            vision = self.model.model.vision_model
            side = x.shape[-1] // vision.config.patch_size
            h = vision.embeddings(pixel_values=x, patch_attention_mask=torch.ones(len(x), side, side, dtype=torch.bool,
                                                                                   device=x.device))
            for i, layer in enumerate(vision.encoder.layers):
                h = layer(h, attention_mask=None)
                if film is not None:
                    h = h * (1 + film[:, i, 0, None]) + film[:, i, 1, None]
            features = self.model.model.connector(vision.post_layernorm(h))
        return features.reshape(-1, features.shape[-1])


@torch.no_grad()
def init_grid_positions(embeddings) -> None:
    """2-D sin-cos position embeddings for a fresh vision tower, at the scale of its patch embeddings.

    A random init gives each patch position an unrelated vector of std 0.02 beside patch features of std ~0.24,
    so where an object is must be learned position by position from the demonstrations; with the grid's
    coordinates in the embedding from the start, it is a linear read-out (what a policy needs to reach it)."""
    pixels = torch.rand(8, 3, embeddings.image_size, embeddings.image_size) * 2 - 1  # the normalized range
    scale = embeddings.patch_embedding(pixels).std()
    embeddings.position_embedding.weight.copy_(
        grid_embedding(embeddings.num_patches_per_side, embeddings.embed_dim, scale))


def build(cfg: BackboneConfig, n_action_tokens: int, config: dict | None, prompts: list[str] | None,
          checkpoint: Path | None, n_cameras: int = 1) -> SmolVLMBackbone:
    if cfg.text_tokenizer == "byt5":
        tok = ByT5Tokenizer()
    elif checkpoint is not None:
        tok = bpe.load(checkpoint)
    elif prompts:
        tok = bpe.fit_bpe(prompts)
    else:
        raise ValueError('text_tokenizer="bpe" needs the training prompts to fit on')
    hf = SmolVLMConfig(**config) if config else hf_config(cfg, len(tok), 1 + n_action_tokens)
    if hf.image_token_id != len(tok):
        raise ValueError(f"text tokenizer has {len(tok)} ids, the backbone config expects "
                         f"{hf.image_token_id} (the image token comes right after them)")
    model = SmolVLMForConditionalGeneration(hf)
    if cfg.vision_stem == "conv":  # before the weights load: a checkpoint's stem has this module's names
        embeddings = model.model.vision_model.embeddings
        embeddings.patch_embedding = conv_stem(embeddings.patch_size, embeddings.embed_dim)
    if cfg.connector == "keypoints":  # likewise
        side = hf.vision_config.image_size // hf.vision_config.patch_size
        model.model.connector = KeypointConnector(hf.vision_config.hidden_size, hf.text_config.hidden_size, side,
                                                  (side // hf.scale_factor) ** 2)
    if not config:  # a new model (a loaded one's positions come with its weights)
        init_grid_positions(model.model.vision_model.embeddings)
    model = model.to(torch_dtype(cfg.dtype))
    model.set_attn_implementation(cfg.attention)
    backbone = EmbeddedBackbone(model, tok, first_new_id=len(tok) + 1, fitted_tokenizer=cfg.text_tokenizer == "bpe",
                                film=cfg.film, film_cnn=cfg.connector == "film_cnn", n_cameras=n_cameras,
                                bigram_dropout=cfg.film_bigram_dropout, bigram_dropout_per=cfg.film_bigram_dropout_per,
                                film_only=cfg.film_only, factored_rank=cfg.film_factored_rank,
                                film_positional=cfg.film_positional, film_cnn_width=cfg.film_cnn_width,
                                film_gappy=cfg.film_gappy_bigrams)
    backbone.to(model.dtype)
    backbone.instruction_first = cfg.instruction_first
    return backbone

"""Backbone adapters over transformers VLMs: the one place that knows which family runs.

A `Backbone` owns everything family-specific:
- its text tokenizer and how a prompt is framed (BOS, separators);
- the token block that stands for one camera image (image placeholders and the family's special tokens);
- image preprocessing at the family's own resolution and normalization;
- position ids (1-D RoPE positions, PaliGemma's 1-indexed ones, Qwen2.5-VL's 3-D mrope);
- attention extras (PaliGemma's bidirectional prefix);
- which modules are the vision tower (for `finetune="frozen_vision"`).
The VLA model asks it for a prefix (`prefix`), appends its own tokens (`append`), runs it (`forward`), and
never learns the family. Families live in `vla/model/families/`, one file each, registered by `model_type`.

The embedded default is a tiny SmolVLM-architecture model built from a config (random init) whose text
tokenizer needs no vocabulary files: a byte-level BPE fitted on the training prompts and saved in the
checkpoint (`text_tokenizer.py`), or ByT5 bytes. Everything runs offline on a CPU. A pretrained backbone
loads from a local directory (`path=`) with its own tokenizer, which the checkpoint then keeps a copy of,
so a checkpoint loads without the directory it was fine-tuned from.

Either way the adapter appends new token ids after the text vocabulary (an image placeholder for the
embedded model, then whatever the caller asks for: the VLA's MASK, action-bin and state-bin ids);
existing text tokens are never overwritten.
"""

from __future__ import annotations

import functools
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer, ByT5Tokenizer

from vla.model import text_tokenizer as bpe

TEXT_TOKENIZERS = ("bpe", "byt5")
VISION_STEMS = ("patch", "conv")
CONNECTORS = ("shuffle", "keypoints", "film_cnn")
FINETUNE_MODES = ("full", "frozen_vision", "lora")
BIGRAM_DROPOUT_UNITS = ("instruction", "bigram")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PRETRAINED_TOKENIZER_DIR = "tokenizer"  # a pretrained backbone's own tokenizer, copied into the checkpoint


def torch_dtype(name: str) -> torch.dtype:
    """A dtype named in a config ("float32", "bfloat16"); any other name is a ValueError that lists them."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {name!r}")
    return DTYPES[name]


@functools.cache
def cache_argument(model_class: type) -> str:
    """The name a language model class's forward takes its KV cache by (`cache` since transformers 5.24,
    `past_key_values` before it, which 5.40 removes)."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def kv_cache(output):
    """The KV cache a language model's output carries for the next step (`cache` since transformers 5.24,
    `past_key_values` before it; reading the old name there warns)."""
    return output["cache"] if "cache" in output else output["past_key_values"]


@dataclass
class BackboneConfig:
    path: str | None = None  # a local pretrained VLM directory; None: the embedded model
    # The embedded model's architecture (ignored with path=):
    image_size: int = 96
    patch_size: int = 12
    vision_hidden: int = 128
    # 2: at equal loss it trains 1.2x faster than 4 (benchmarks/train_speed.py), and five demo seeds gave it no
    # less success (README, "Training speed").
    vision_layers: int = 2
    text_hidden: int = 256
    text_layers: int = 4
    # The language model's SwiGLU width over text_hidden. 4 was the first default; Llama's own is 8/3, where a
    # gated MLP (three matrices) costs what a 4x ungated one does.
    text_mlp_ratio: float = 4.0
    head_dim: int = 64
    scale_factor: int = 2  # SmolVLM pixel shuffle: image tokens = (image_size / patch_size / scale)^2
    # The embedded model's layout: the instruction before the images, so that in a causal language model every
    # image token can attend to the words (which object is meant) in every layer. False: after them, as a
    # pretrained family's own prompts have it (a pretrained backbone always keeps its family's layout).
    instruction_first: bool = False
    # The embedded model's patch embedding: "patch" projects each patch_size x patch_size patch linearly (ViT);
    # "conv" is a stack of small strided convolutions down to the same grid (Xiao et al. 2021, "Early
    # convolutions help transformers see better"): an object a few pixels wide is seen by overlapping kernels
    # wherever it falls, instead of split across patch borders.
    vision_stem: str = "patch"
    # The embedded model's image tokens: "shuffle" is SmolVLM's pixel shuffle (each token a linear map of a
    # scale_factor x scale_factor block of patch features); "keypoints" makes each token a learned spatial
    # softmax over the patch grid that carries its expected (x, y) coordinate (families/embedded.py). The
    # token count is the same either way. "film_cnn" replaces the vision tower's output: a small CNN at half the
    # image's resolution, each of its layers FiLM-conditioned on the instruction, then the same keypoints over
    # its 48x48 grid (families/embedded.py; implies film=True).
    connector: str = "shuffle"
    # connector=film_cnn: each CNN's channels (a multiple of 8, its GroupNorm's groups). Its 3x3 convolutions cost
    # width squared; they are most of the tabletop's training step (benchmarks/tabletop_train_speed.py).
    film_cnn_width: int = 32
    # The embedded model's vision tower conditioned on the instruction: after each of its layers, every channel
    # is scaled and shifted by a function of the instruction's words (FiLM; families/embedded.py). False: the
    # image tokens are computed without the words, which only the language model then relates to them.
    film: bool = False
    # In training, the share of instructions whose bigrams the FiLM leaves out (families/embedded.py,
    # InstructionFiLM). A color-shape pair never named in training is a bigram never trained: its row is zero,
    # and the unigrams alone must pick the object. Left out half the time, they learn to. 1.0: no bigrams at all,
    # in training or at inference, so that a seen pair is found as a held-out one must be (with film_positional,
    # which tells the object's color from the pad's without them).
    film_bigram_dropout: float = 0.0
    # What film_bigram_dropout leaves out: "instruction", all of an instruction's bigrams at once; "bigram", each
    # bigram on its own draw. A held-out pair's instruction has every bigram but the pair's ("ball on" says the
    # ball is the object, "blue pad" that blue is the pad's color), which only the second shows in training.
    # On the composition probe it found held-out pairs no better (README, tabletop; session 23).
    film_bigram_dropout_per: str = "instruction"
    # The embedded model with FiLM: the instruction reaches the policy only through the FiLM, and the language
    # model's prompt is the images and the state alone (RT-1's and BC-Z's layout: the words condition the image
    # encoder, and the transformer reads only its tokens). ~1.2x the training samples/s (a shorter prompt). On the
    # tabletop (one seed, README) it fit as well and followed the words as well, but did not lift place's held-out
    # pairs (13%): what misses them is the FiLM's localization, not the language model's reading. Off.
    film_only: bool = False
    # The FiLM's factored bigrams (InstructionFiLM): 0 is off, r > 0 their rank. A held-out pair's hashed bigram
    # is a row never trained; its factored bigram is made of its words' factors, each trained with other partners.
    # Better on the encoder probe, worse in the tabletop policy (one seed: held-out compositions 48% against 67%;
    # pairs no training scene shows got an untrained feature that misled; README, tabletop). Off.
    film_factored_rank: int = 0
    # The FiLM's positional unigrams (InstructionFiLM): each word also says where in the instruction it stands,
    # so that a color's role (the object's, the pad's) is known without the hashed bigram a held-out pair lacks.
    # On the tabletop (README) seed 0 reached 72% on held-out compositions (place 40%) against the default's 67%
    # (27%); seed 1 lost its grasps to autoregressive decoding (33%). On 600 lift and place demonstrations (seed 1)
    # it picked the pad-colored object less but lost the pairs no training scene shows on every skill: 52% against
    # 67%. Off.
    film_positional: bool = False
    # The FiLM's gappy bigrams (InstructionFiLM): each pair of words one word apart ("move _ green", "to _ red")
    # adds a row, never dropped. They tell a color's role (the object's, the pad's) from its context, where a
    # held-out pair lacks its bigram: in a held-out place miss the policy read the object's color as the pad's
    # color (session 43). On the tabletop (one seed) the pairs no training scene shows lost on every skill, as with
    # film_positional and film_factored_rank: held-out compositions 43% against 67% (README, tabletop). Off.
    film_gappy_bigrams: bool = False
    # The embedded model's text tokenizer: "bpe" fitted on the training prompts (about a quarter of ByT5's
    # tokens), or "byt5" bytes. A pretrained backbone (path=) always uses its own.
    text_tokenizer: str = "bpe"
    # transformers' attn_implementation. The embedded model's ~60-token sequences train faster on a CPU with
    # eager attention than with SDPA's CPU kernels (benchmarks/train_speed.py measures it); "sdpa" (or
    # "flash_attention_2") is the choice on a GPU and for a pretrained backbone's long sequences.
    attention: str = "eager"
    # Fine-tuning (any backbone; it matters for the large ones):
    # "full" trains every weight; "frozen_vision" freezes the vision encoder (its projector still trains);
    # "lora" trains low-rank adapters on the language model's linear layers (peft) plus the appended tokens'
    # embedding and output rows, and freezes the rest.
    finetune: str = "full"
    lora_rank: int = 16
    lora_alpha: int = 32
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, 30-45% fewer samples/s (measured)
    dtype: str = "float32"  # the weights' dtype; "bfloat16" halves a large backbone's memory (LoRA adapters stay fp32)

    def __post_init__(self) -> None:
        if self.text_tokenizer not in TEXT_TOKENIZERS:
            raise ValueError(f"text_tokenizer must be one of {TEXT_TOKENIZERS}, got {self.text_tokenizer!r}")
        if self.vision_stem not in VISION_STEMS:
            raise ValueError(f"vision_stem must be one of {VISION_STEMS}, got {self.vision_stem!r}")
        if self.connector not in CONNECTORS:
            raise ValueError(f"connector must be one of {CONNECTORS}, got {self.connector!r}")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {self.finetune!r}")
        torch_dtype(self.dtype)
        if not 0.0 <= self.film_bigram_dropout <= 1.0:
            raise ValueError(f"film_bigram_dropout must be in [0, 1], got {self.film_bigram_dropout}")
        if self.film_bigram_dropout_per not in BIGRAM_DROPOUT_UNITS:
            raise ValueError(f"film_bigram_dropout_per must be one of {BIGRAM_DROPOUT_UNITS}, "
                             f"got {self.film_bigram_dropout_per!r}")
        if self.film_only and not (self.film or self.connector == "film_cnn"):
            raise ValueError("film_only needs a FiLM to read the instruction: film=true or connector=film_cnn")
        for name in ("film_positional", "film_gappy_bigrams"):
            if getattr(self, name) and not (self.film or self.connector == "film_cnn"):
                raise ValueError(f"{name} is a feature of the FiLM: it needs film=true or connector=film_cnn")
        if self.film_cnn_width < 8 or self.film_cnn_width % 8:
            raise ValueError(f"film_cnn_width must be a positive multiple of 8, got {self.film_cnn_width}")
        if self.film_factored_rank < 0:
            raise ValueError(f"film_factored_rank must be >= 0, got {self.film_factored_rank}")
        if self.text_mlp_ratio <= 0:
            raise ValueError(f"text_mlp_ratio must be > 0, got {self.text_mlp_ratio}")
        if self.lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1, got {self.lora_rank}")
        if self.path is not None and self.instruction_first:
            raise ValueError("instruction_first is the embedded model's; a pretrained backbone keeps its family's layout")
        if self.path is not None and self.vision_stem != "patch":
            raise ValueError("vision_stem is the embedded model's; a pretrained backbone keeps its own patch embedding")
        if self.path is not None and self.connector != "shuffle":
            raise ValueError("connector is the embedded model's; a pretrained backbone keeps its own projector")
        if self.path is not None and self.film:
            raise ValueError("film is the embedded model's; a pretrained backbone keeps its own vision tower")
        if self.path is not None and self.film_only:
            raise ValueError("film_only is the embedded model's; a pretrained backbone reads its instruction itself")
        if self.path is None:
            grid = self.image_size // self.patch_size
            if self.image_size % self.patch_size or grid % self.scale_factor:
                raise ValueError(
                    f"image_size {self.image_size} must split into patches of {self.patch_size} "
                    f"in a grid divisible by scale_factor {self.scale_factor}"
                )
            for name in ("vision_hidden", "text_hidden"):
                if getattr(self, name) % self.head_dim:
                    raise ValueError(f"{name}={getattr(self, name)} is not a multiple of head_dim={self.head_dim}")


def pretrained_model_type(path: str | Path) -> str:
    """The `model_type` of a local model directory, checked to be a supported family (before any loading)."""
    from vla.model.families import family_of

    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"backbone path {path} has no config.json (a local model directory is needed)")
    model_type = json.loads(config.read_text()).get("model_type")
    family_of(model_type, str(path))
    return model_type


def resize_normalize(images: torch.Tensor, size: tuple[int, int], mean, std) -> torch.Tensor:
    """(B, n_cams, H, W, 3) uint8 -> (B * n_cams, 3, h, w) float, resized and normalized per channel."""
    # contiguous (NCHW): the permuted view is channels-last, which every conv and norm after it keeps; on a CPU
    # GroupNorm's backward runs ~10x slower channels-last (21 ms against 2 at the film_cnn's 32x32x48x48)
    x = images.reshape(-1, *images.shape[2:]).permute(0, 3, 1, 2).contiguous().float() / 255.0
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class Backbone(torch.nn.Module):
    """One VLM family behind the interface the VLA model uses. Subclasses fill in the hooks below."""

    model_types: ClassVar[tuple[str, ...]] = ()
    image_mean: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    image_std: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)

    def __init__(self, model: torch.nn.Module, text_tokenizer, first_new_id: int, fitted_tokenizer: bool = False):
        super().__init__()
        self.model = model
        self.text_tokenizer = text_tokenizer
        self.fitted_tokenizer = fitted_tokenizer  # the embedded model's, saved as text_tokenizer.json
        self.first_new_id = first_new_id
        self.instruction_first = False  # the embedded model's layout option (BackboneConfig.instruction_first)
        self.image_token_id = int(model.config.image_token_id)
        self.pad_token_id = int(text_tokenizer.pad_token_id or 0)

    # ---- family hooks -----------------------------------------------------------------------------------
    def image_block(self, height: int, width: int) -> list[int]:
        """The token ids that stand for one camera image of this resolution."""
        raise NotImplementedError

    def vision_inputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, n_cams, H, W, 3) uint8 -> the keyword arguments the family's model takes for them."""
        raise NotImplementedError

    def vision_tower(self) -> list[torch.nn.Module]:
        """The modules `finetune="frozen_vision"` freezes."""
        raise NotImplementedError

    def frame_text(self, ids: list[int]) -> list[int]:
        """The family's framing of the prompt's text tokens (e.g. a BOS)."""
        return ids

    def positions(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Position ids of a left-padded prefix: 0, 1, ... over the real tokens (RoPE)."""
        mask = inputs["attention_mask"]
        return (mask.cumsum(-1) - 1).clamp(min=0)

    def prefix_extras(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attention extras of a prefix (PaliGemma's token types)."""
        return {}

    # ---- what the VLA model uses ------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.frame_text(self.text_tokenizer(text, add_special_tokens=False).input_ids)

    def prefix(self, images: torch.Tensor, texts: list[list[int]], tails: list[list[int]],
               text_length: int = 0) -> dict[str, torch.Tensor]:
        """images (B, n_cams, H, W, 3) uint8; per sample the text ids (`encode`) and the ids after them ->
        the left-padded prefix [pad ...] [image block per camera] [text] [tail], as model inputs, padded as if
        the longest text had at least `text_length` ids (one shape for every batch, for a compiled model)."""
        block = self.image_block(*images.shape[2:4]) * images.shape[1]
        seqs = [(t + block if self.instruction_first else block + t) + s for t, s in zip(texts, tails, strict=True)]
        length = max(max(map(len, seqs)), len(block) + text_length + max(map(len, tails)))
        device = self.model.device
        input_ids = torch.tensor([[self.pad_token_id] * (length - len(s)) + s for s in seqs], device=device)
        mask = torch.tensor([[0] * (length - len(s)) + [1] * len(s) for s in seqs], device=device)
        inputs = {"input_ids": input_ids, "attention_mask": mask, **self.vision_inputs(images.to(device)),
                  **self.prefix_extras(input_ids)}
        inputs["position_ids"] = self.positions(inputs)
        return inputs

    @staticmethod
    def append(inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """inputs with (B, k) ids appended as causally attending tokens at the next positions."""
        k = ids.shape[1]
        pos = inputs["position_ids"]
        out = dict(inputs)
        out["input_ids"] = torch.cat([inputs["input_ids"], ids.to(inputs["input_ids"])], dim=1)
        out["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(ids)], dim=1)
        out["position_ids"] = torch.cat([pos, pos[..., -1:] + torch.arange(1, k + 1, device=pos.device)], dim=-1)
        if "token_type_ids" in inputs:  # 1: the causal suffix
            out["token_type_ids"] = torch.cat([inputs["token_type_ids"], torch.ones_like(ids)], dim=1)
        return out

    @staticmethod
    def last(inputs: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        """The inputs of a KV-cached step over the last k tokens of `inputs` (the cache holds the rest)."""
        return {"input_ids": inputs["input_ids"][:, -k:], "attention_mask": inputs["attention_mask"],
                "position_ids": inputs["position_ids"][..., -k:]}

    def encode_images(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A prefix whose images have been through the vision side, so that several passes over it (the
        self-conditioned training step) encode them once. A family that cannot take encoded images returns it
        as it is, and each pass encodes them again."""
        return inputs

    def forward(self, inputs: dict[str, torch.Tensor], cache=None, use_cache: bool = False):
        """The language model over `inputs`, continuing `cache` (an earlier output's `kv_cache`) where given."""
        if cache is not None:
            inputs = inputs | {cache_argument(type(self.model.model)): cache}
        return self.model.model(**inputs, use_cache=use_cache)

    def compile(self, training: bool = False, mode: str | None = None) -> None:
        """torch.compile, in place, the stacks that do the work (`compiled_parts`); the state dict is unchanged.
        By default, for inference on a GPU, mode "reduce-overhead" replays CUDA graphs, which removes the
        per-kernel launch cost that dominates a small batch-1 forward; `mode` names another of torch.compile's
        modes. Each new prompt length compiles once (parallel decoding has one shape per instruction length)."""
        if mode is None:
            mode = "reduce-overhead" if self.model.device.type == "cuda" and not training else None
        for part in self.compiled_parts():
            part.compile(mode=mode)

    def compiled_parts(self) -> list[torch.nn.Module]:
        """The language model and the vision tower. The multimodal merge between them stays eager: it finds the
        image tokens by comparing each input embedding with the image token's, and compiled, that comparison
        can come out a bf16 rounding apart (Gemma scales its embedding by sqrt(hidden): PaliGemma-3B's
        placeholder check failed compiled, on a GPU and in `test_compiled_bf16_inference_agrees`)."""
        return [self.model.model.get_decoder(), *self.vision_tower()]

    def output_weights(self, first_id: int, count: int) -> torch.Tensor:
        """Rows of the LM head for ids [first_id, first_id + count): the only logits we ever need."""
        head = self.model.get_output_embeddings()
        adapter = getattr(head, "token_adapter", None)  # LoRA: peft trains the appended rows as a delta
        if adapter is None:
            return head.weight[first_id : first_id + count]
        offset = first_id - self.first_new_id
        return adapter.trainable_tokens_delta[adapter.active_adapters[0]][offset : offset + count]

    def hf_config_dict(self) -> dict:
        return self.model.config.to_dict()

    def save_text_tokenizer(self, directory: Path) -> None:
        if self.fitted_tokenizer:
            bpe.save(self.text_tokenizer, directory)
        elif not isinstance(self.text_tokenizer, ByT5Tokenizer):
            self.text_tokenizer.save_pretrained(directory / PRETRAINED_TOKENIZER_DIR)

    # ---- construction -----------------------------------------------------------------------------------
    @staticmethod
    def build(cfg: BackboneConfig, n_action_tokens: int, hf_config: dict | None = None,
              prompts: list[str] | None = None, checkpoint: Path | None = None, n_cameras: int = 1) -> Backbone:
        """A fresh backbone: random init for the embedded model, pretrained weights for `path`.

        n_action_tokens: how many ids the caller appends after the text vocabulary (and image token).
        n_cameras: the images per observation (the embedded film_cnn has one encoder per camera).
        prompts: the training prompts a "bpe" text tokenizer is fitted on (a new embedded model).
        hf_config and checkpoint (loading a checkpoint) rebuild the exact architecture and the text tokenizer
        from the checkpoint alone; its weights are loaded after (and after `apply_finetune`)."""
        from vla.model.families import embedded, family_of

        if cfg.path is None:
            return embedded.build(cfg, n_action_tokens, hf_config, prompts, checkpoint, n_cameras)
        dtype = torch_dtype(cfg.dtype)
        if hf_config is None:  # a new policy: the pretrained weights and tokenizer from `path`
            pretrained_model_type(cfg.path)
            tok = AutoTokenizer.from_pretrained(cfg.path, local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(cfg.path, local_files_only=True, dtype=dtype,
                                                                attn_implementation=cfg.attention)
            return Backbone.wrap(model, tok, n_action_tokens)
        # loading our checkpoint: architecture and tokenizer from it, `path` is not needed
        family = family_of(hf_config.get("model_type"), f"{checkpoint} backbone_hf_config")
        tok_dir = Path(checkpoint) / PRETRAINED_TOKENIZER_DIR
        if not tok_dir.is_dir():
            raise FileNotFoundError(f"{tok_dir}: the checkpoint's copy of its backbone's tokenizer is missing")
        tok = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        model = AutoModelForImageTextToText.from_config(AutoConfig.for_model(**hf_config), dtype=dtype,
                                                        attn_implementation=cfg.attention)
        return family(model, tok, first_new_id=model.get_input_embeddings().num_embeddings - n_action_tokens)

    @staticmethod
    def wrap(model: torch.nn.Module, tokenizer, n_action_tokens: int) -> Backbone:
        """A pretrained (or random) HF model of a supported family, its vocabulary extended by n_action_tokens."""
        from vla.model.families import family_of

        family = family_of(model.config.model_type, type(model).__name__)
        first_new = model.get_input_embeddings().num_embeddings
        model.resize_token_embeddings(first_new + n_action_tokens, mean_resizing=False)  # rows are set by the caller
        return family(model, tokenizer, first_new_id=first_new)

    def apply_finetune(self, cfg: BackboneConfig) -> None:
        """Freeze, wrap with LoRA and switch on gradient checkpointing as `cfg` says. Called on a new model
        after its appended rows are initialized, and on a loaded one before its weights are read, so that
        the parameter names match the checkpoint's."""
        from vla.model.finetune import apply_finetune

        apply_finetune(self, cfg)

    def merge_lora(self) -> None:
        """Fold LoRA adapters and trainable-token rows into the weights (for inference); see finetune.merge_lora."""
        from vla.model.finetune import merge_lora

        merge_lora(self.model)

"""Backbone adapter over transformers VLMs of the SmolVLM / Idefics3 family.

The embedded default is a tiny SmolVLM-architecture model built from a config (random init) whose text
tokenizer needs no vocabulary files: a byte-level BPE fitted on the training prompts and saved in the
checkpoint (`text_tokenizer.py`), or ByT5 bytes. Everything runs offline on a CPU. A pretrained
SmolVLM / SmolVLM2 / Idefics3 loads from a local directory (`path=`) with its own tokenizer.

Either way the adapter appends new token ids after the text vocabulary (an image placeholder for the
embedded model, then whatever the caller asks for: the VLA's MASK, action-bin and state-bin ids);
existing text tokens are never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoTokenizer,
    ByT5Tokenizer,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
)

from vla.model import text_tokenizer as bpe

SUPPORTED_FAMILIES = ("smolvlm", "idefics3")
TEXT_TOKENIZERS = ("bpe", "byt5")


@dataclass
class BackboneConfig:
    path: str | None = None  # a local pretrained SmolVLM/Idefics3 directory; None: the embedded model
    image_size: int = 96
    patch_size: int = 12
    vision_hidden: int = 128
    vision_layers: int = 4
    text_hidden: int = 256
    text_layers: int = 4
    head_dim: int = 64
    scale_factor: int = 2  # SmolVLM pixel shuffle: image tokens = (image_size / patch_size / scale)^2
    # The embedded model's text tokenizer: "bpe" fitted on the training prompts (about a quarter of ByT5's
    # tokens), or "byt5" bytes. A pretrained backbone (path=) always uses its own.
    text_tokenizer: str = "bpe"
    # transformers' attn_implementation. The embedded model's ~60-token sequences train faster on a CPU with
    # eager attention than with SDPA's CPU kernels (benchmarks/train_speed.py measures it); "sdpa" (or
    # "flash_attention_2") is the choice on a GPU and for a pretrained backbone's long sequences.
    attention: str = "eager"

    def __post_init__(self) -> None:
        if self.text_tokenizer not in TEXT_TOKENIZERS:
            raise ValueError(f"text_tokenizer must be one of {TEXT_TOKENIZERS}, got {self.text_tokenizer!r}")
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


def embedded_hf_config(cfg: BackboneConfig, text_vocab: int, n_new_tokens: int) -> SmolVLMConfig:
    heads_v, heads_t = cfg.vision_hidden // cfg.head_dim, cfg.text_hidden // cfg.head_dim
    return SmolVLMConfig(
        vision_config=dict(
            hidden_size=cfg.vision_hidden, intermediate_size=4 * cfg.vision_hidden,
            num_hidden_layers=cfg.vision_layers, num_attention_heads=heads_v,
            image_size=cfg.image_size, patch_size=cfg.patch_size,
        ),
        text_config=dict(
            model_type="llama", vocab_size=text_vocab + n_new_tokens, hidden_size=cfg.text_hidden,
            intermediate_size=4 * cfg.text_hidden, num_hidden_layers=cfg.text_layers,
            num_attention_heads=heads_t, num_key_value_heads=heads_t, max_position_embeddings=1024,
            pad_token_id=0, tie_word_embeddings=False,
        ),
        image_token_id=text_vocab,  # the first appended id
        scale_factor=cfg.scale_factor,
        tie_word_embeddings=False,
    )


class Backbone(torch.nn.Module):
    """Wraps the HF model; exposes embeddings of the appended tokens and a prefix/step forward."""

    def __init__(self, model: SmolVLMForConditionalGeneration, text_tokenizer, first_new_id: int,
                 fitted_tokenizer: bool = False):
        super().__init__()
        self.model = model
        self.text_tokenizer = text_tokenizer
        self.fitted_tokenizer = fitted_tokenizer  # saved with the checkpoint (a pretrained one lives at `path`)
        self.first_new_id = first_new_id
        vc = model.config.vision_config
        self.image_size = int(vc.image_size)
        self.image_token_id = int(model.config.image_token_id)
        grid = self.image_size // int(vc.patch_size)
        self.image_seq_len = (grid // int(model.config.scale_factor)) ** 2
        self.pad_token_id = int(text_tokenizer.pad_token_id or 0)

    @classmethod
    def build(cls, cfg: BackboneConfig, n_action_tokens: int, hf_config: dict | None = None,
              prompts: list[str] | None = None, checkpoint: Path | None = None) -> Backbone:
        """A fresh backbone: random init for the embedded model, pretrained weights for `path`.

        n_action_tokens: how many ids the caller appends after the text vocabulary (and image token).
        prompts: the training prompts a "bpe" text tokenizer is fitted on (a new model).
        hf_config and checkpoint (loading a checkpoint) rebuild the exact architecture and the fitted text
        tokenizer without touching `path`.
        """
        if cfg.path is None:
            if cfg.text_tokenizer == "byt5":
                tok = ByT5Tokenizer()
            elif checkpoint is not None:
                tok = bpe.load(checkpoint)
            elif prompts:
                tok = bpe.fit_bpe(prompts)
            else:
                raise ValueError('text_tokenizer="bpe" needs the training prompts to fit on')
            config = (SmolVLMConfig(**hf_config) if hf_config
                      else embedded_hf_config(cfg, len(tok), 1 + n_action_tokens))
            if config.image_token_id != len(tok):
                raise ValueError(f"text tokenizer has {len(tok)} ids, the backbone config expects "
                                 f"{config.image_token_id} (the image token comes right after them)")
            model = SmolVLMForConditionalGeneration(config)
            model.set_attn_implementation(cfg.attention)
            return cls(model, tok, first_new_id=len(tok) + 1, fitted_tokenizer=cfg.text_tokenizer == "bpe")
        return cls._pretrained(cfg, n_action_tokens, hf_config)

    def save_text_tokenizer(self, directory: Path) -> None:
        if self.fitted_tokenizer:
            bpe.save(self.text_tokenizer, directory)

    @classmethod
    def _pretrained(cls, cfg: BackboneConfig, n_action_tokens: int, hf_config: dict | None) -> Backbone:
        path = Path(cfg.path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"backbone path {path} has no config.json (a local model directory is needed)")
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if config.model_type not in SUPPORTED_FAMILIES:
            raise ValueError(f"{path}: model_type {config.model_type!r} is not one of {SUPPORTED_FAMILIES}")
        if hf_config is not None:  # loading our checkpoint: architecture from it, weights come after
            model = AutoModelForImageTextToText.from_config(type(config)(**hf_config),
                                                            attn_implementation=cfg.attention)
            first_new = hf_config["text_config"]["vocab_size"] - n_action_tokens
        else:
            model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True,
                                                                attn_implementation=cfg.attention)
            first_new = model.get_input_embeddings().num_embeddings
            model.resize_token_embeddings(first_new + n_action_tokens)
        return cls(model, tok, first_new_id=first_new)

    def hf_config_dict(self) -> dict:
        return self.model.config.to_dict()

    def preprocess_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, n_cams, H, W, 3) uint8 -> (B, n_cams, 3, S, S) float in [-1, 1] at the encoder's size."""
        b, n = images.shape[:2]
        x = images.reshape(b * n, *images.shape[2:]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x.reshape(b, n, 3, self.image_size, self.image_size)

    def forward(self, input_ids, attention_mask, pixel_values=None, past_key_values=None, use_cache=False):
        return self.model.model(
            input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
            past_key_values=past_key_values, use_cache=use_cache,
        )

    def output_weights(self, first_id: int, count: int) -> torch.Tensor:
        """Rows of the LM head for ids [first_id, first_id + count): the only logits we ever need."""
        return self.model.lm_head.weight[first_id : first_id + count]

"""The embedded default: a tiny SmolVLM built from `BackboneConfig` (random init) with a fitted text tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ByT5Tokenizer, SmolVLMConfig, SmolVLMForConditionalGeneration

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
          checkpoint: Path | None) -> SmolVLMBackbone:
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
    if not config:  # a new model (a loaded one's positions come with its weights)
        init_grid_positions(model.model.vision_model.embeddings)
    model = model.to(torch_dtype(cfg.dtype))
    model.set_attn_implementation(cfg.attention)
    backbone = SmolVLMBackbone(model, tok, first_new_id=len(tok) + 1, fitted_tokenizer=cfg.text_tokenizer == "bpe")
    backbone.instruction_first = cfg.instruction_first
    return backbone

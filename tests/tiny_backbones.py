"""Tiny random backbones of each supported family, written as local model directories (no download).

Each directory is laid out as a downloaded model is: `config.json` and `model.safetensors` from
save_pretrained, and a tokenizer (here a byte-level BPE fitted on a few prompts, with the family's special
tokens added), so the `model.backbone.path=` route runs exactly as for a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
)

from vla.model import text_tokenizer as bpe

VOCAB = 600  # the fitted BPE below stays under ~400 ids; the family's special ids sit at the top
TEXT = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=32)
FAMILIES = ("smolvlm", "paligemma", "qwen2_5_vl")
PROMPTS = ["close it; state:", "press the big red button; state:", "do the task; state:"]


def tiny_config(family: str):
    if family == "smolvlm":  # the SmolVLM2 architecture
        return SmolVLMConfig(
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1,
                               image_size=32, patch_size=8),
            text_config=dict(model_type="llama", **TEXT, tie_word_embeddings=False),
            image_token_id=VOCAB - 1, scale_factor=2, tie_word_embeddings=False)
    if family == "paligemma":
        return PaliGemmaConfig(
            vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=1, num_attention_heads=1, image_size=28, patch_size=14,
                               projection_dim=64),
            text_config=dict(model_type="gemma", **TEXT), image_token_index=VOCAB - 1, projection_dim=64)
    if family == "qwen2_5_vl":
        return Qwen2_5_VLConfig(
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=1, out_hidden_size=64,
                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                               fullatt_block_indexes=[1]),
            text_config=dict(**TEXT, rope_scaling=dict(type="mrope", mrope_section=[4, 6, 6]),
                             bos_token_id=None, eos_token_id=None),
            image_token_id=VOCAB - 1, vision_start_token_id=VOCAB - 2, vision_end_token_id=VOCAB - 3)
    raise ValueError(family)


MODEL_CLASSES = {"smolvlm": SmolVLMForConditionalGeneration, "paligemma": PaliGemmaForConditionalGeneration,
                 "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration}


def write_tiny_backbone(family: str, directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    MODEL_CLASSES[family](tiny_config(family)).save_pretrained(directory)
    tok = bpe.fit_bpe(PROMPTS)
    if family == "smolvlm":
        tok.add_special_tokens({"additional_special_tokens": ["<fake_token_around_image>", "<global-img>"]})
    if family == "paligemma":
        tok.add_special_tokens({"bos_token": "<bos>"})
    assert len(tok) < VOCAB - 3
    tok.save_pretrained(directory)
    return directory

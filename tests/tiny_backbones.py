"""Tiny random backbones of each supported family, written as local model directories (no download).

Each directory is laid out as a downloaded model is: `config.json` and `model.safetensors` from
save_pretrained, and a tokenizer (here a byte-level BPE fitted on a few prompts, with the family's special
tokens added), so the `model.backbone.path=` route runs exactly as for a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vla.model import text_tokenizer as bpe
from vla.model.families.reference import TINY, TINY_VOCAB, random_model

FAMILIES = tuple(TINY)
PROMPTS = ["close it; state:", "press the big red button; state:", "do the task; state:"]


def write_tiny_backbone(family: str, directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    random_model(TINY[family]()).save_pretrained(directory)
    tok = bpe.fit_bpe(PROMPTS)
    if family == "smolvlm":
        tok.add_special_tokens({"additional_special_tokens": ["<fake_token_around_image>", "<global-img>"]})
    if family == "paligemma":
        tok.add_special_tokens({"bos_token": "<bos>"})
    assert len(tok) < TINY_VOCAB - 3
    tok.save_pretrained(directory)
    return directory

"""VLM families behind the Backbone interface, registered by the `model_type` of their HF config."""

from __future__ import annotations

from vla.model.backbone import Backbone
from vla.model.families.paligemma import PaliGemmaBackbone
from vla.model.families.qwen2_5_vl import Qwen25VLBackbone
from vla.model.families.smolvlm import SmolVLMBackbone

FAMILIES: dict[str, type[Backbone]] = {t: cls for cls in (SmolVLMBackbone, PaliGemmaBackbone, Qwen25VLBackbone)
                                       for t in cls.model_types}


def family_of(model_type: str | None, where: str) -> type[Backbone]:
    if model_type not in FAMILIES:
        raise ValueError(f"{where}: model_type {model_type!r} is not a supported backbone family; "
                         f"supported: {sorted(FAMILIES)}")
    return FAMILIES[model_type]

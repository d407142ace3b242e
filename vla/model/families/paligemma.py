"""PaliGemma (pi0's VLM): SigLIP at its fixed resolution, Gemma with a bidirectional prefix.

The processor's layout is `<image> x num_image_tokens, <bos>, prompt`, the images normalized to [-1, 1].
Everything up to the state tokens is prefix (token type 0), so it attends both ways, as PaliGemma was
trained; the action tokens the VLA appends are the causal suffix (type 1). Positions are 1-indexed.
"""

from __future__ import annotations

import torch

from vla.model.backbone import Backbone, resize_normalize


class PaliGemmaBackbone(Backbone):
    model_types = ("paligemma",)

    def __init__(self, model, text_tokenizer, first_new_id: int, fitted_tokenizer: bool = False):
        super().__init__(model, text_tokenizer, first_new_id, fitted_tokenizer)
        vc = model.config.vision_config
        self.image_size = int(vc.image_size)
        self.image_seq_len = (self.image_size // int(vc.patch_size)) ** 2
        self.bos = [text_tokenizer.bos_token_id] if text_tokenizer.bos_token_id is not None else []

    def image_block(self, height: int, width: int) -> list[int]:
        return [self.image_token_id] * self.image_seq_len

    def frame_text(self, ids: list[int]) -> list[int]:
        return self.bos + ids

    def vision_inputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = resize_normalize(images, (self.image_size, self.image_size), self.image_mean, self.image_std)
        return {"pixel_values": x.to(self.model.dtype)}  # (B * n_cams, 3, S, S), in token order

    def prefix_extras(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"token_type_ids": torch.zeros_like(input_ids)}

    def positions(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return super().positions(inputs) + 1

    def vision_tower(self) -> list[torch.nn.Module]:
        return [self.model.model.vision_tower]

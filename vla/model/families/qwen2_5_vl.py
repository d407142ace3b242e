"""Qwen2.5-VL: dynamic resolution and 3-D multimodal RoPE (mrope).

Each camera image is resized, keeping its aspect ratio, to the nearest multiple of 28 (patch 14 x merge 2)
within the family's pixel bounds (transformers' `smart_resize`), normalized with the CLIP mean and std, and
cut into 2 x 14 x 14 temporal patches in the order of `Qwen2VLImageProcessor` (tested against it). An image
of h x w pixels costs h * w / 28^2 tokens between `<|vision_start|>` and `<|vision_end|>`. Positions come
from the model's own `get_rope_index` (temporal, height, width for image tokens, shared for text).
"""

from __future__ import annotations

import torch
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from vla.model.backbone import Backbone, resize_normalize

MIN_PIXELS, MAX_PIXELS = 56 * 56, 28 * 28 * 1280  # Qwen2.5-VL's processor defaults
TEMPORAL_PATCH = 2  # a still image is repeated over the temporal patch


class Qwen25VLBackbone(Backbone):
    model_types = ("qwen2_5_vl",)
    image_mean = (0.48145466, 0.4578275, 0.40821073)
    image_std = (0.26862954, 0.26130258, 0.27577711)

    def __init__(self, model, text_tokenizer, first_new_id: int, fitted_tokenizer: bool = False):
        super().__init__(model, text_tokenizer, first_new_id, fitted_tokenizer)
        vc, c = model.config.vision_config, model.config
        self.patch, self.merge = int(vc.patch_size), int(vc.spatial_merge_size)
        self.vision_start, self.vision_end = int(c.vision_start_token_id), int(c.vision_end_token_id)

    def image_shape(self, height: int, width: int) -> tuple[int, int]:
        return smart_resize(height, width, self.patch * self.merge, MIN_PIXELS, MAX_PIXELS)

    def image_block(self, height: int, width: int) -> list[int]:
        h, w = self.image_shape(height, width)
        n = (h // (self.patch * self.merge)) * (w // (self.patch * self.merge))
        return [self.vision_start] + [self.image_token_id] * n + [self.vision_end]

    def vision_inputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = self.image_shape(*images.shape[2:4])
        x = resize_normalize(images, (h, w), self.image_mean, self.image_std)
        return {"pixel_values": self.flatten_patches(x).to(self.model.dtype),
                "image_grid_thw": torch.tensor([[1, h // self.patch, w // self.patch]] * len(x), device=x.device)}

    def flatten_patches(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) normalized -> (N * h/14 * w/14, 3 * 2 * 14 * 14) in the processor's patch order."""
        n, c, h, w = x.shape
        p, m = self.patch, self.merge
        gh, gw = h // p, w // p
        x = x[:, None].expand(n, TEMPORAL_PATCH, c, h, w)
        x = x.reshape(n, TEMPORAL_PATCH, c, gh // m, m, p, gw // m, m, p)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # n, gh/m, gw/m, m, m, c, t, p, p
        return x.reshape(n * gh * gw, c * TEMPORAL_PATCH * p * p)

    def positions(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = inputs["input_ids"]
        position_ids, _ = self.model.model.get_rope_index(
            ids, mm_token_type_ids=(ids == self.image_token_id).int(), image_grid_thw=inputs["image_grid_thw"],
            attention_mask=inputs["attention_mask"])
        return position_ids  # (3, B, L)

    def vision_tower(self) -> list[torch.nn.Module]:
        visual = self.model.model.visual
        return [visual.patch_embed, visual.blocks]  # the merger is the projector: it still trains

    def compiled_parts(self) -> list[torch.nn.Module]:
        # The language model only: the vision blocks split their attention by data-dependent sequence lengths
        # (cu_seqlens), which breaks the graph, and CUDA graphs failed on them on a GPU.
        return [self.model.model.get_decoder()]

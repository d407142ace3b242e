"""SmolVLM, SmolVLM2 and Idefics3 (and the embedded default, a tiny SmolVLM).

One global image per camera at the vision encoder's size, normalized to [-1, 1] as the family's processor
does. SmolVLM's processor would also split a large image into tiles (up to 17 x 64 tokens at 512 px); a
policy at camera resolution keeps the global image only, as lerobot's SmolVLA does, so one camera costs
(image_size / patch_size / scale_factor)^2 tokens. A pretrained tokenizer's `<fake_token_around_image>` and
`<global-img>` frame each image as in the family's own prompts.
"""

from __future__ import annotations

import torch

from vla.model.backbone import Backbone, resize_normalize


class SmolVLMBackbone(Backbone):
    model_types = ("smolvlm", "idefics3")

    def __init__(self, model, text_tokenizer, first_new_id: int, fitted_tokenizer: bool = False):
        super().__init__(model, text_tokenizer, first_new_id, fitted_tokenizer)
        vc = model.config.vision_config
        self.image_size = int(vc.image_size)
        grid = self.image_size // int(vc.patch_size)
        self.image_seq_len = (grid // int(model.config.scale_factor)) ** 2
        vocab = text_tokenizer.get_vocab() if hasattr(text_tokenizer, "get_vocab") else {}
        around, glob = vocab.get("<fake_token_around_image>"), vocab.get("<global-img>")
        self._open = [around, glob] if around is not None and glob is not None else []
        self._close = [around] if self._open else []

    def image_block(self, height: int, width: int) -> list[int]:
        return self._open + [self.image_token_id] * self.image_seq_len + self._close

    def vision_inputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        b, n = images.shape[:2]
        x = resize_normalize(images, (self.image_size, self.image_size), self.image_mean, self.image_std)
        return {"pixel_values": x.reshape(b, n, 3, self.image_size, self.image_size).to(self.model.dtype)}

    def vision_tower(self) -> list[torch.nn.Module]:
        return [self.model.model.vision_model]

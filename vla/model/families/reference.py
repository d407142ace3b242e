"""Reference architectures of each family, to build random-weight backbones without a download.

`PUBLISHED` are the architectures of the released checkpoints (from their config.json on the Hub:
SmolVLM2-500M-Video-Instruct, paligemma-3b-pt-224, Qwen2.5-VL-3B-Instruct), for measuring speed and memory
at the real size (`benchmarks/backbones.py`). `TINY` are the same families scaled down until a test runs in
a second. Random weights are what they are: these say nothing about task success.
"""

from __future__ import annotations

from transformers import AutoModelForImageTextToText, PaliGemmaConfig, PretrainedConfig, Qwen2_5_VLConfig, SmolVLMConfig

from vla.model import text_tokenizer as bpe
from vla.model.backbone import Backbone, torch_dtype

PUBLISHED = {
    "smolvlm2-500m": lambda: SmolVLMConfig(
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "image_size": 512, "patch_size": 16},
        text_config={"model_type": "llama", "vocab_size": 49280, "hidden_size": 960, "intermediate_size": 2560,
                     "num_hidden_layers": 32, "num_attention_heads": 15, "num_key_value_heads": 5,
                     "rope_theta": 100000.0, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
                     "tie_word_embeddings": False},
        image_token_id=49190, scale_factor=4, tie_word_embeddings=False),
    "paligemma-3b": lambda: PaliGemmaConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
                       "num_hidden_layers": 27, "num_attention_heads": 16, "image_size": 224, "patch_size": 14,
                       "projection_dim": 2048},
        text_config={"model_type": "gemma", "vocab_size": 257216, "hidden_size": 2048, "intermediate_size": 16384,
                     "num_hidden_layers": 18, "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 256},
        image_token_index=257152, projection_dim=2048),
    "qwen2.5-vl-3b": lambda: Qwen2_5_VLConfig(
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "hidden_act": "silu"},
        text_config={"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                     "num_attention_heads": 16, "num_key_value_heads": 2, "rope_theta": 1000000.0,
                     "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "tie_word_embeddings": True},
        image_token_id=151655, vision_start_token_id=151652, vision_end_token_id=151653, tie_word_embeddings=True),
}

TINY_VOCAB = 600  # a fitted BPE stays under ~400 ids; the family's special ids sit at the top
_TINY_TEXT = {"vocab_size": TINY_VOCAB, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32}
TINY = {
    "smolvlm": lambda: SmolVLMConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1,
                       "image_size": 32, "patch_size": 8},
        text_config={"model_type": "llama", **_TINY_TEXT, "tie_word_embeddings": False},
        image_token_id=TINY_VOCAB - 1, scale_factor=2, tie_word_embeddings=False),
    "paligemma": lambda: PaliGemmaConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 1, "image_size": 28, "patch_size": 14,
                       "projection_dim": 48},
        # hidden 48: Gemma scales its embedding by sqrt(hidden), and only a scale that is not a power of two rounds
        # in bf16, as the published model's does (compiled inference once failed on that rounding)
        text_config={"model_type": "gemma", **_TINY_TEXT, "hidden_size": 48}, image_token_index=TINY_VOCAB - 1,
        projection_dim=48),
    "qwen2_5_vl": lambda: Qwen2_5_VLConfig(
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 1, "out_hidden_size": 64,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                       "fullatt_block_indexes": [1]},
        text_config={**_TINY_TEXT, "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
                     "bos_token_id": None, "eos_token_id": None},
        image_token_id=TINY_VOCAB - 1, vision_start_token_id=TINY_VOCAB - 2, vision_end_token_id=TINY_VOCAB - 3,
        video_token_id=TINY_VOCAB - 4),  # inside the vocabulary, as the published model's
}


def random_model(config: PretrainedConfig, dtype: str = "float32", attention: str = "sdpa"):
    return AutoModelForImageTextToText.from_config(config, dtype=torch_dtype(dtype), attn_implementation=attention)


def random_backbone(config: PretrainedConfig, n_action_tokens: int, prompts: list[str], dtype: str = "float32",
                    attention: str = "sdpa") -> Backbone:
    """A random-weight backbone of this architecture with a BPE fitted on `prompts` as its tokenizer (its
    ids are a few hundred, all inside any family's vocabulary)."""
    return Backbone.wrap(random_model(config, dtype, attention), bpe.fit_bpe(prompts), n_action_tokens)

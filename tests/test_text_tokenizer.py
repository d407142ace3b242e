import pytest
from conftest import TINY_IMAGE, TINY_INSTRUCTIONS, fake_stats, tiny_model_config
from transformers import ByT5Tokenizer

from vla.model import text_tokenizer
from vla.model.vla_model import VLAModel
from vla.schema import ACTION_KEY, IMAGE_PREFIX, STATE_KEY, Feature, Schema


def camera_schema() -> Schema:
    """One camera at the tiny model's size, without building a simulator."""
    camera = IMAGE_PREFIX + "cam"
    return Schema(observation={camera: Feature(camera, (TINY_IMAGE, TINY_IMAGE, 3), "uint8"),
                               STATE_KEY: Feature(STATE_KEY, (4,), "float32")},
                  action=Feature(ACTION_KEY, (4,), "float32"), fps=10.0)


PROMPTS = [VLAModel.prompt_text(i) for i in ["Pick up a nut and place it onto a peg", "Press a button from the top"]]


def test_fitted_bpe_round_trips_seen_and_unseen_text_and_is_shorter_than_bytes():
    tok = text_tokenizer.fit_bpe(PROMPTS)
    for text in [*PROMPTS, "unseen words, even ünïcode; state:"]:
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.decode(ids).strip() == text
    seen = tok(PROMPTS[0], add_special_tokens=False).input_ids
    assert len(seen) == len(PROMPTS[0].split()) + 2  # a token per word, and ";" "state" ":"
    assert len(seen) < len(ByT5Tokenizer()(PROMPTS[0], add_special_tokens=False).input_ids) / 3
    assert text_tokenizer.fit_bpe(list(reversed(PROMPTS))).get_vocab() == tok.get_vocab()  # order-free


def test_text_tokenizer_is_saved_with_the_checkpoint_and_a_missing_one_is_named(tmp_path):
    from vla.policies.vla_policy import CheckpointError, VLAPolicy

    schema = camera_schema()
    policy = VLAPolicy.create(tiny_model_config(), schema, fake_stats(), TINY_INSTRUCTIONS)
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    for instruction in [*TINY_INSTRUCTIONS, "a paraphrase never seen"]:
        assert loaded.model.text_ids(instruction) == policy.model.text_ids(instruction)
    assert len(policy.model.text_ids("press the big red button")) < len("press the big red button; state:") / 3
    (tmp_path / "ckpt" / text_tokenizer.FILE_NAME).unlink()
    with pytest.raises(CheckpointError, match="text_tokenizer.json: the checkpoint's fitted text tokenizer is missing"):
        VLAPolicy.from_pretrained(tmp_path / "ckpt")


def test_byt5_stays_available_and_needs_no_file(tmp_path):
    from vla.model.backbone import BackboneConfig
    from vla.policies.vla_policy import VLAPolicy

    cfg = tiny_model_config()
    cfg.backbone = BackboneConfig(**{**cfg.backbone.__dict__, "text_tokenizer": "byt5"})
    schema = camera_schema()
    VLAPolicy.create(cfg, schema, fake_stats(), []).save_pretrained(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / text_tokenizer.FILE_NAME).exists()
    ab = [100, 101, 62, 35, 118, 119, 100, 119, 104, 61]  # "ab; state:" as ByT5 bytes (byte value + 3)
    assert VLAPolicy.from_pretrained(tmp_path / "ckpt").model.text_ids("ab") == ab
    with pytest.raises(ValueError, match="text_tokenizer must be one of"):
        BackboneConfig(text_tokenizer="words")

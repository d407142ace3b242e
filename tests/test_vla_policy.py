import json

import numpy as np
import pytest
import torch
from conftest import TINY_IMAGE, TINY_INSTRUCTIONS, fake_stats, tiny_model_config
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from vla.envs.metaworld import metaworld_schema
from vla.policies.protocol import Policy, batch_observation
from vla.policies.vla_policy import CheckpointError, VLAPolicy
from vla.schema import SchemaError

SCHEMA = metaworld_schema(TINY_IMAGE, "corner2")


def make_policy(seed=0, **cfg):
    torch.manual_seed(seed)
    return VLAPolicy.create(tiny_model_config(**cfg), SCHEMA, fake_stats(), TINY_INSTRUCTIONS)


def batch(n, seed=0):
    rng = np.random.default_rng(seed)
    obs = [SCHEMA.fake_observation(rng, task=["close it", "press the big red button"][i % 2]) for i in range(n)]
    return {k: ([o[k] for o in obs] if k == "task" else np.stack([o[k] for o in obs])) for k in obs[0]}


def test_satisfies_the_policy_protocol_and_keeps_a_chunk_queue():
    policy = make_policy()
    assert isinstance(policy, Policy)
    obs = batch(3)
    chunk = policy.predict_chunk(obs)
    assert chunk.shape == (3, 4, 4) and chunk.dtype == np.float32
    policy.reset()
    first, second = policy.select_action(obs), policy.select_action(obs)
    np.testing.assert_allclose(first, chunk[:, 0], rtol=1e-5)
    np.testing.assert_allclose(second, chunk[:, 1], rtol=1e-5)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 1e3, 1e6]),
       decode=st.sampled_from(["expected", "argmax"]), decoding=st.sampled_from(["autoregressive", "parallel"]))
def test_constrained_decoding_never_yields_a_malformed_chunk(seed, scale, decode, decoding):
    """Even a random model with extreme logits decodes exactly H x D in-range actions."""
    policy = make_policy(seed, decode=decode, decoding=decoding)
    with torch.no_grad():
        policy.model.backbone.model.lm_head.weight.mul_(scale)
    chunk = policy.predict_chunk(batch(2, seed))
    assert chunk.shape == (2, 4, 4)
    assert np.all(np.isfinite(chunk))
    assert np.all(chunk >= -1.0 - 1e-6) and np.all(chunk <= 1.0 + 1e-6)


def test_decoding_override_changes_how_the_same_weights_decode_and_refuses_other_policies():
    from types import SimpleNamespace

    from vla.evaluate import override_decoding

    policy = make_policy(2)
    obs = batch(2)
    parallel = policy.predict_chunk(obs)
    assert override_decoding(policy, "autoregressive", 2) is policy
    assert policy.cfg.decoding == policy.model.cfg.decoding == "autoregressive" and policy.n_action_steps == 2
    assert not np.allclose(policy.predict_chunk(obs), parallel)  # each token now sees the ones before it
    assert override_decoding(policy).cfg.decoding == "autoregressive"  # nothing asked: unchanged
    with pytest.raises(ValueError, match="decoding must be one of"):
        override_decoding(policy, "beam")
    with pytest.raises(ValueError, match="runs/act is 'act'"):
        override_decoding(SimpleNamespace(meta={"policy_type": "act"}), "parallel", source="runs/act")


@pytest.mark.parametrize("step_tokens", [False, True])
def test_kv_cached_autoregressive_decoding_equals_a_full_forward_pass(step_tokens):
    """Each cached decode step must see exactly what a teacher-forced pass over its own tokens sees,
    also for left-padded prompts of different lengths in one batch, and with tokens of a whole timestep."""
    policy = make_policy(3, decoding="autoregressive", step_tokens=step_tokens)
    model, tok = policy.model, policy.model.action_tokenizer
    obs = batch(3)
    images = torch.from_numpy(obs["observation.images.corner2"][:, None])
    prefix = model.build_prefix(images, obs["observation.state"], ["a", "press the big red button", "close"])
    assert len(set((prefix["attention_mask"] == 0).sum(1).tolist())) > 1, "the batch must mix pad lengths"
    values = model.generate(prefix)
    with torch.no_grad():
        logits = model._action_position_logits(prefix, model.action_ids(values))
    torch.testing.assert_close(tok.expected_value(logits), values, atol=1e-4, rtol=0)
    # stopping early yields the same first values, and given values are continued from
    torch.testing.assert_close(model.generate(prefix, n_tokens=5), values[:, :5])
    torch.testing.assert_close(model.generate(prefix, given=values[:, :8])[:, 8:], values[:, 8:], atol=1e-4, rtol=0)


@pytest.mark.parametrize("step_tokens", [False, True])
@pytest.mark.parametrize("decoding", ["parallel", "autoregressive"])
def test_argmax_dims_decode_only_those_dimensions_by_their_likeliest_bin(step_tokens, decoding):
    """`argmax_dims=[3]` (the gripper) decodes dimension 3 of every timestep as a bin center and the others as
    expected values; in parallel those are exactly the two pure modes' values, value for value."""
    from dataclasses import replace

    policy = make_policy(5, decoding=decoding, step_tokens=step_tokens)
    model, tok = policy.model, policy.model.action_tokenizer
    obs = batch(3)
    images = torch.from_numpy(obs["observation.images.corner2"][:, None])
    prefix = model.build_prefix(images, obs["observation.state"], ["a", "press the big red button", "close"])

    base = model.cfg

    def decoded(**how):
        model.cfg = replace(base, **how)
        return model.generate(prefix).view(3, 4, 4)

    expected, likeliest, mixed = decoded(), decoded(decode="argmax"), decoded(argmax_dims=[3])
    centers = torch.as_tensor(tok.bin_centers())
    on_a_center = (mixed[..., None] - centers).abs().amin(-1) < 1e-6
    assert on_a_center[..., 3].all() and not on_a_center[..., :3].any()
    # what the first pass decodes (autoregressive: its first token; the later ones follow what was fed back)
    n = 16 if decoding == "parallel" else model.values_per_token
    gripper = torch.arange(n) % 4 == 3
    first = mixed.view(3, 16)[:, :n]
    torch.testing.assert_close(first[:, ~gripper], expected.view(3, 16)[:, :n][:, ~gripper])
    torch.testing.assert_close(first[:, gripper], likeliest.view(3, 16)[:, :n][:, gripper])
    with pytest.raises(ValueError, match="argmax_dims .* beyond the action's 4"):
        model.check_dims(replace(model.cfg, argmax_dims=[4]), tok.action_dim)


def test_step_tokens_hold_a_whole_timestep_in_one_token(tmp_path):
    """A chunk of H timesteps of D values takes H tokens; each dimension has its own bin ids, so the tokens
    of two chunks that differ in one dimension differ, and the checkpoint round-trips."""
    policy = make_policy(step_tokens=True)
    model = policy.model
    assert model.n_action_tokens == 4 and model.n_action_values == 16
    assert model.first_state_id - model.first_action_id == 4 * model.action_tokenizer.n_bins
    values = torch.zeros(1, 16)
    ids = model.action_ids(values)
    assert ids.shape == (1, 4, 4) and len(set(ids[0, 0].tolist())) == 4  # the same value, 4 dimensions, 4 ids
    obs = batch(2)
    chunk = policy.predict_chunk(obs)
    assert chunk.shape == (2, 4, 4) and np.all(np.isfinite(chunk))
    policy.save_pretrained(tmp_path / "ckpt")
    np.testing.assert_array_equal(VLAPolicy.from_pretrained(tmp_path / "ckpt").predict_chunk(obs), chunk)


def test_state_dropout_masks_whole_states_and_at_one_the_state_is_never_seen():
    """The state shortcut: a hand moving from a fixed start toward its goal gives the goal away, so a policy can
    fit its demonstrations from the state and ignore the image (reach-v3: the same first action for every
    goal). state_dropout trains samples whose state tokens are all MASK; at 1.0 the state is never fed."""
    obs = batch(2)
    model = make_policy(state_dropout=0.5).model
    prefix = model.build_prefix(torch.from_numpy(obs["observation.images.corner2"][:, None]),
                                obs["observation.state"], obs["task"])
    many = {k: v.repeat(32, *[1] * (v.ndim - 1)) for k, v in prefix.items()}
    tails = model.drop_state(many, torch.Generator().manual_seed(0))["input_ids"][:, -4:]
    masked = (tails == model.mask_id).all(1)
    assert ((tails == model.mask_id).any(1) == masked).all()  # a sample's state is dropped whole or kept
    assert 0.3 < masked.float().mean() < 0.7
    torch.testing.assert_close(tails[~masked], many["input_ids"][~masked, -4:])

    blind = make_policy(state_dropout=1.0)
    other = dict(obs, **{"observation.state": obs["observation.state"] + 0.3})
    np.testing.assert_array_equal(blind.predict_chunk(obs), blind.predict_chunk(other))
    assert not np.allclose(make_policy().predict_chunk(obs), make_policy().predict_chunk(other))
    with pytest.raises(ValueError, match="state_dropout must be in"):
        tiny_model_config(state_dropout=1.5)


def test_self_conditioning_feeds_the_models_own_chunk_back_as_the_action_inputs(monkeypatch):
    """self_condition: a chosen sample's real action inputs are the bins of the model's own parallel chunk
    (what autoregressive decoding feeds back), not the expert's."""
    obs = batch(2)
    model = make_policy(self_condition=1.0, token_dropout=0.0).model
    prefix = model.build_prefix(torch.from_numpy(obs["observation.images.corner2"][:, None]),
                                obs["observation.state"], obs["task"])
    expert = torch.linspace(-0.9, 0.9, model.n_action_values).repeat(2, 1)
    seen = []
    run = model._run
    monkeypatch.setattr(model, "_run", lambda p, ids: seen.append(ids) or run(p, ids))
    loss = model(prefix, expert, torch.ones_like(expert, dtype=torch.bool))["loss"]
    own = model._values(model._action_position_logits(prefix, model.masks(2)))
    assert len(seen) == 3  # the no-gradient pass of MASKs, the training pass, and the one above
    assert (seen[0] == model.mask_id).all()
    torch.testing.assert_close(seen[1], model.action_ids(own))
    assert not torch.equal(seen[1], model.action_ids(expert))
    loss.backward()  # the training pass has a gradient
    seen.clear()
    model.cfg.self_condition = 0.0  # off: one pass, on the expert's bins
    model(prefix, expert, torch.ones_like(expert, dtype=torch.bool))
    assert len(seen) == 1 and torch.equal(seen[0], model.action_ids(expert))
    seen.clear()
    d = model.action_tokenizer.action_dim
    model.cfg.self_condition, model.cfg.self_condition_dims = 1.0, [d - 1]  # the gripper's own, the arm's the expert's
    model(prefix, expert, torch.ones_like(expert, dtype=torch.bool))
    last = torch.arange(model.n_action_values) % d == d - 1
    torch.testing.assert_close(seen[1], model.action_ids(torch.where(last, own, expert)))
    with pytest.raises(ValueError, match="self_condition must be in"):
        tiny_model_config(self_condition=1.5)
    with pytest.raises(ValueError, match="beyond the action's"):
        make_policy(self_condition=0.5, self_condition_dims=[d])


def test_slot_masks_give_each_action_slot_its_own_mask_input(tmp_path):
    policy = make_policy(slot_masks=True)
    model = policy.model
    ids = model.slot_mask_ids.tolist()
    assert len(set(ids)) == model.n_action_tokens and model.mask_id not in ids
    assert max(ids) < model.first_action_id < model.first_state_id  # appended before the bins, none overwritten
    obs = batch(2)
    chunk = policy.predict_chunk(obs)
    assert chunk.shape == (2, 4, 4) and np.all(np.isfinite(chunk))
    policy.save_pretrained(tmp_path / "ckpt")
    np.testing.assert_array_equal(VLAPolicy.from_pretrained(tmp_path / "ckpt").predict_chunk(obs), chunk)
    assert make_policy().model.slot_mask_ids.unique().tolist() == [make_policy().model.mask_id]  # the default: one


def test_a_checkpoint_from_before_step_tokens_loads_with_one_token_per_value(tmp_path):
    policy = make_policy(step_tokens=False)
    policy.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["config"]["step_tokens"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = VLAPolicy.from_pretrained(tmp_path)
    assert loaded.model.n_action_tokens == loaded.model.n_action_values
    obs = batch(2)
    np.testing.assert_array_equal(loaded.predict_chunk(obs), policy.predict_chunk(obs))


def test_prompts_padded_to_one_text_length_give_the_same_chunk():
    """The trainer's fixed shapes (compile=true): left padding is masked, so it changes no action."""
    policy = make_policy()
    obs = batch(2)
    images = torch.from_numpy(obs["observation.images.corner2"][:, None])
    plain = policy.model.build_prefix(images, obs["observation.state"], obs["task"])
    policy.model.text_length = 20
    padded = policy.model.build_prefix(images, obs["observation.state"], ["a", "press the big red button"])
    assert padded["input_ids"].shape[1] > plain["input_ids"].shape[1]
    assert padded["input_ids"].shape == policy.model.build_prefix(images, obs["observation.state"], ["b", "c"])["input_ids"].shape
    np.testing.assert_allclose(policy.predict_chunk(obs), make_policy().predict_chunk(obs), atol=1e-5)


def test_observation_is_validated_with_the_key_and_shape():
    policy = make_policy()
    obs = batch(1)
    obs["observation.state"] = obs["observation.state"][:, :3]
    with pytest.raises(SchemaError, match=r"'observation.state': expected shape \(4,\), got \(3,\)"):
        policy.predict_chunk(obs)
    obs = batch(1)
    del obs["observation.images.corner2"]
    with pytest.raises(SchemaError, match="missing key 'observation.images.corner2'"):
        policy.predict_chunk(obs)


def test_checkpoint_round_trip(tmp_path):
    policy = make_policy()
    policy.save_pretrained(tmp_path)
    loaded = VLAPolicy.from_pretrained(tmp_path)
    obs = batch_observation(SCHEMA.fake_observation())
    np.testing.assert_array_equal(policy.predict_chunk(obs), loaded.predict_chunk(obs))


@pytest.fixture
def checkpoint(tmp_path):
    make_policy().save_pretrained(tmp_path)
    return tmp_path


def test_missing_weight_is_named(checkpoint):
    weights = load_file(str(checkpoint / "model.safetensors"))
    name = "model.lm_head.weight"
    del weights[name]
    save_file(weights, str(checkpoint / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"missing weight '{name}'"):
        VLAPolicy.from_pretrained(checkpoint)


def test_mismatched_weight_shape_is_named(checkpoint):
    weights = load_file(str(checkpoint / "model.safetensors"))
    name = "model.lm_head.weight"
    weights[name] = weights[name][:, :10].contiguous()
    save_file(weights, str(checkpoint / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"weight '{name}' has shape"):
        VLAPolicy.from_pretrained(checkpoint)


def test_unexpected_weight_is_named(checkpoint):
    weights = load_file(str(checkpoint / "model.safetensors"))
    weights["extra.bias"] = torch.zeros(3)
    save_file(weights, str(checkpoint / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected weight 'extra.bias'"):
        VLAPolicy.from_pretrained(checkpoint)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "norm_stats.json"])
def test_missing_file_is_named(checkpoint, missing):
    (checkpoint / missing).unlink()
    with pytest.raises(CheckpointError, match=f"checkpoint file {missing} is missing"):
        VLAPolicy.from_pretrained(checkpoint)


def test_missing_config_key_and_stats_key_are_named(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    stats = json.loads((checkpoint / "norm_stats.json").read_text())
    del stats["action"]["q99"]
    (checkpoint / "norm_stats.json").write_text(json.dumps(stats))
    with pytest.raises(CheckpointError, match=r"norm_stats.json: normalization stats for 'action' lack \['q99'\]"):
        VLAPolicy.from_pretrained(checkpoint)
    del config["schema"]
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing key 'schema'"):
        VLAPolicy.from_pretrained(checkpoint)


def test_missing_action_tokenizer_is_named(checkpoint):
    (checkpoint / "action_tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no fitted action tokenizer"):
        VLAPolicy.from_pretrained(checkpoint)


def test_pretrained_backbone_loads_from_a_local_directory(tmp_path):
    """The `path=` route, on a directory laid out like a downloaded SmolVLM: weights and config from
    save_pretrained, and a byte-level BPE tokenizer.json (what SmolVLM ships; here our fitted one)."""
    from vla.model.backbone import Backbone, BackboneConfig

    source = Backbone.build(tiny_model_config().backbone, n_action_tokens=0,
                            prompts=["press the button", "close the drawer"])
    source.model.save_pretrained(tmp_path)
    source.text_tokenizer.save_pretrained(tmp_path)

    loaded = Backbone.build(BackboneConfig(path=str(tmp_path)), n_action_tokens=16)
    vocab = source.model.get_input_embeddings().num_embeddings
    assert loaded.first_new_id == vocab
    assert loaded.model.get_input_embeddings().num_embeddings == vocab + 16
    torch.testing.assert_close(loaded.model.lm_head.weight[:vocab], source.model.lm_head.weight)
    assert loaded.text_tokenizer("close the drawer").input_ids  # its own tokenizer, loaded offline
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        Backbone.build(BackboneConfig(path=str(tmp_path / "none")), 16)


def test_load_policy_dispatches_on_the_checkpoints_policy_type(checkpoint, tmp_path):
    from vla.policies.registry import load_policy, policy_type

    policy = load_policy(checkpoint)
    assert isinstance(policy, VLAPolicy) and policy_type(checkpoint) == "vla"
    assert (policy.chunk_size, policy.n_action_steps) == (4, 2)  # the protocol carries them
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "policy_type": "pi0"}))
    with pytest.raises(CheckpointError, match="policy type 'pi0' has no loader; known: \\['lerobot', 'vla'\\]"):
        load_policy(checkpoint)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_policy(tmp_path / "nothing")

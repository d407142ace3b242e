"""Every supported VLM family, at a tiny random configuration written as a local model directory."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import fake_stats
from peft.tuners.tuners_utils import BaseTunerLayer
from tiny_backbones import FAMILIES, write_tiny_backbone

from vla.envs.metaworld import metaworld_schema
from vla.model.backbone import Backbone, BackboneConfig
from vla.model.families.embedded import InstructionFiLM
from vla.model.finetune import trainable_parameters
from vla.model.vla_model import VLAConfig
from vla.policies.protocol import batch_observation
from vla.policies.vla_policy import CheckpointError, VLAPolicy
from vla.train import TrainConfig, train

SCHEMA = metaworld_schema(32, "corner2")
TASKS = ["close it", "press the big red button"]


@pytest.fixture(scope="module", params=FAMILIES)
def backbone_dir(request, tmp_path_factory):
    return write_tiny_backbone(request.param, tmp_path_factory.mktemp(request.param))


def make_policy(path, seed=0, decoding="parallel", step_tokens=False, **backbone):
    torch.manual_seed(seed)
    cfg = VLAConfig(backbone=BackboneConfig(path=str(path), **backbone), chunk_size=4, n_action_steps=2,
                    decoding=decoding, step_tokens=step_tokens)
    return VLAPolicy.create(cfg, SCHEMA, fake_stats(), TASKS)


def observations(n=2, seed=0):
    rng = np.random.default_rng(seed)
    obs = [batch_observation(SCHEMA.fake_observation(rng, task=TASKS[i % 2])) for i in range(n)]
    return {k: ([t for o in obs for t in o[k]] if k == "task" else np.concatenate([o[k] for o in obs])) for k in obs[0]}


def test_each_family_trains_saves_loads_and_infers(backbone_dir, tiny_store, tmp_path):
    """The user's route: vla-train with model.backbone.path=<a local model directory>, then from_pretrained."""
    cfg = TrainConfig(dataset=str(tiny_store), out=str(tmp_path / "run"), steps=2, batch_size=2, save_every=2,
                      model=VLAConfig(backbone=BackboneConfig(path=str(backbone_dir)), chunk_size=4, n_action_steps=2))
    out = train(cfg)
    policy = VLAPolicy.from_pretrained(out)
    rng = np.random.default_rng(0)
    obs = batch_observation(policy.schema.fake_observation(rng, task="close the drawer"))
    chunk = policy.predict_chunk(obs)
    assert chunk.shape == (1, 4, policy.schema.action_dim) and np.all(np.isfinite(chunk))
    low, high = policy.stats["action"]["q01"], policy.stats["action"]["q99"]
    assert np.all(chunk >= low - 1e-5) and np.all(chunk <= high + 1e-5)


def test_lora_trains_only_adapters_and_new_tokens_and_round_trips(backbone_dir, tmp_path):
    policy = make_policy(backbone_dir, finetune="lora", lora_rank=4)
    model = policy.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "trainable_tokens_delta" in n for n in trainable), sorted(trainable)[:5]
    adapted = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
    assert len(adapted) == 7 * 2 and all(".language_model." in n or ".text_model." in n for n in adapted), adapted
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    obs = observations()
    prefix = model.build_prefix(torch.from_numpy(obs["observation.images.corner2"][:, None]), obs["observation.state"],
                                obs["task"])
    target = torch.rand(2, model.n_action_values) * 2 - 1
    for _ in range(2):
        loss = model(prefix, target, torch.ones_like(target, dtype=torch.bool))["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, value in model.named_parameters():
        if name in frozen:
            torch.testing.assert_close(value, frozen[name], rtol=0, atol=0)

    before = policy.predict_chunk(obs)
    policy.save_pretrained(tmp_path / "ckpt")
    files = {p.suffix for p in (tmp_path / "ckpt").rglob("*") if p.is_file()}
    assert files <= {".json", ".safetensors"}, files  # nothing pickled, no peft side files
    moved = shutil.move(backbone_dir, tmp_path / "elsewhere")  # the checkpoint needs only itself
    try:
        loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt", merge_lora=False)  # as training resumes it
        merged = VLAPolicy.from_pretrained(tmp_path / "ckpt")  # for inference: adapters folded in
    finally:
        shutil.move(moved, backbone_dir)
    np.testing.assert_array_equal(loaded.predict_chunk(obs), before)
    assert trainable_parameters(loaded.model) == trainable_parameters(model)
    np.testing.assert_allclose(merged.predict_chunk(obs), before, atol=1e-5)
    assert not any(isinstance(m, BaseTunerLayer) or hasattr(m, "token_adapter") for m in merged.model.modules())
    assert merged.cfg.backbone.finetune == "full"  # what it now is: saved again, it loads as a full model
    merged.save_pretrained(tmp_path / "merged")
    np.testing.assert_allclose(VLAPolicy.from_pretrained(tmp_path / "merged").predict_chunk(obs), before, atol=1e-5)


def test_frozen_vision_freezes_the_encoder_only(backbone_dir):
    policy = make_policy(backbone_dir, finetune="frozen_vision")
    encoder = {id(p) for m in policy.model.backbone.vision_tower() for p in m.parameters()}
    for p in policy.model.parameters():
        assert p.requires_grad == (id(p) not in encoder)
    assert encoder and trainable_parameters(policy.model)[0] > 0


@pytest.mark.parametrize("step_tokens", [False, True])
def test_kv_cached_decoding_equals_a_full_pass(backbone_dir, step_tokens):
    """Positions and masks of the cached steps (mrope, PaliGemma's 1-indexed prefix) match a full forward
    pass over the same tokens, for left-padded prompts of different lengths; with step tokens the family
    takes embeddings instead of ids and still finds its image tokens."""
    policy = make_policy(backbone_dir, seed=1, decoding="autoregressive", step_tokens=step_tokens)
    model = policy.model
    obs = observations(3)
    prefix = model.build_prefix(torch.from_numpy(obs["observation.images.corner2"][:, None]), obs["observation.state"],
                                ["a", "press the big red button now", "close"])
    assert len(set((prefix["attention_mask"] == 0).sum(1).tolist())) > 1
    values = model.generate(prefix)
    with torch.no_grad():
        logits = model._action_position_logits(prefix, model.action_ids(values))
    torch.testing.assert_close(model.action_tokenizer.expected_value(logits), values, atol=1e-4, rtol=0)


def test_two_cameras_give_two_image_blocks(backbone_dir):
    policy = make_policy(backbone_dir)
    images = torch.zeros(1, 2, 32, 32, 3, dtype=torch.uint8)
    one = policy.model.backbone.prefix(images[:, :1], [[5]], [[7]])
    two = policy.model.backbone.prefix(images, [[5]], [[7]])
    block = policy.model.backbone.image_block(32, 32)
    assert two["input_ids"].shape[1] - one["input_ids"].shape[1] == len(block)
    assert (two["input_ids"] == policy.model.backbone.image_token_id).sum() == 2 * block.count(
        policy.model.backbone.image_token_id)
    with torch.no_grad():
        assert torch.isfinite(policy.model.backbone(two).last_hidden_state).all()


def test_an_unsupported_family_is_refused_with_its_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError, match="model_type 'llava' is not a supported backbone family"):
        Backbone.build(BackboneConfig(path=str(tmp_path)), 16)


def test_a_checkpoint_without_its_backbone_tokenizer_is_named(tmp_path):
    write_tiny_backbone("paligemma", tmp_path / "pg")
    make_policy(tmp_path / "pg").save_pretrained(tmp_path / "ckpt")
    shutil.rmtree(tmp_path / "ckpt" / "tokenizer")
    with pytest.raises(CheckpointError, match="tokenizer: the checkpoint's copy of its backbone's tokenizer is missing"):
        VLAPolicy.from_pretrained(tmp_path / "ckpt")


def test_qwen_patches_match_the_hf_image_processor(tmp_path):
    from transformers import Qwen2VLImageProcessor

    policy = make_policy(write_tiny_backbone("qwen2_5_vl", tmp_path / "qwen"))
    backbone = policy.model.backbone
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 1, 56, 84, 3), dtype=np.uint8))
    ours = backbone.vision_inputs(images)
    reference = Qwen2VLImageProcessor(do_resize=False)(images=[im[0].numpy() for im in images], return_tensors="pt")
    torch.testing.assert_close(ours["image_grid_thw"], reference["image_grid_thw"])
    torch.testing.assert_close(ours["pixel_values"], reference["pixel_values"].float(), atol=1e-5, rtol=1e-5)


def test_bf16_and_compiled_inference_agree_with_fp32(tmp_path):
    """The GPU path's inference options, run here on the CPU: bf16 weights, and a torch.compile'd forward."""
    write_tiny_backbone("smolvlm", tmp_path / "smol")
    make_policy(tmp_path / "smol").save_pretrained(tmp_path / "ckpt")
    obs = observations()
    reference = VLAPolicy.from_pretrained(tmp_path / "ckpt").predict_chunk(obs)
    bf16 = VLAPolicy.from_pretrained(tmp_path / "ckpt", dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    np.testing.assert_allclose(bf16.predict_chunk(obs), reference, atol=0.1)
    compiled = VLAPolicy.from_pretrained(tmp_path / "ckpt", compile=True)
    np.testing.assert_allclose(compiled.predict_chunk(obs), reference, atol=1e-4)
    with pytest.raises(ValueError, match="dtype must be one of"):
        VLAPolicy.from_pretrained(tmp_path / "ckpt", dtype="fp8")


@pytest.mark.parametrize("family", ["paligemma", "qwen2_5_vl"])
def test_compiled_bf16_inference_agrees(family, tmp_path):
    """Compiled as a GPU serves it: bf16 weights, step tokens (each enters as a mean of embedding rows, so the
    model gets `inputs_embeds` and finds its image tokens by comparing embeddings)."""
    write_tiny_backbone(family, tmp_path / "backbone")
    make_policy(tmp_path / "backbone", step_tokens=True).save_pretrained(tmp_path / "ckpt")
    obs = observations()
    eager = VLAPolicy.from_pretrained(tmp_path / "ckpt", dtype="bfloat16").predict_chunk(obs)
    compiled = VLAPolicy.from_pretrained(tmp_path / "ckpt", dtype="bfloat16", compile=True).predict_chunk(obs)
    np.testing.assert_allclose(compiled, eager, atol=0.02)


def test_lora_fine_tuning_through_the_trainer_resumes(tiny_store, tmp_path):
    """vla-train's loop with finetune=lora: AdamW holds only the trained parameters, and a resumed run
    restores that optimizer state and continues."""
    directory = write_tiny_backbone("qwen2_5_vl", tmp_path / "qwen")
    model = VLAConfig(backbone=BackboneConfig(path=str(directory), finetune="lora", lora_rank=4), chunk_size=4,
                      n_action_steps=2)
    out = tmp_path / "run"
    train(TrainConfig(dataset=str(tiny_store), out=str(out), steps=2, batch_size=2, save_every=2, model=model))
    train(TrainConfig(dataset=str(tiny_store), out=str(out), steps=4, batch_size=2, save_every=2, model=model,
                      resume=True))
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    policy = VLAPolicy.from_pretrained(out, merge_lora=False)  # the adapters as trained
    assert policy.cfg.backbone.finetune == "lora"
    assert 0 < trainable_parameters(policy.model)[0] < trainable_parameters(policy.model)[1] / 2


def test_a_fresh_embedded_vision_tower_starts_with_grid_positions():
    """Patch position embeddings start as 2-D sin-cos of the patch's row and column (row-major, as the
    SmolVLM embeddings number patches), so nearer patches start nearer and both axes count alike."""
    backbone = Backbone.build(BackboneConfig(), 1, prompts=["touch the red cube; state:"])
    embeddings = backbone.model.model.vision_model.embeddings
    side = embeddings.num_patches_per_side
    dist = torch.cdist(*[embeddings.position_embedding.weight.detach()] * 2)
    right, down, far = dist[0, 1], dist[0, side], dist[0, side * side - 1]
    torch.testing.assert_close(right, down)
    assert right < dist[0, 2] < dist[0, side - 1] < far
    assert 0.5 < embeddings.position_embedding.weight.std() / embeddings.patch_embedding(
        torch.rand(4, 3, 96, 96) * 2 - 1).std() < 2  # a signal as strong as the patches', not 0.02 beside 0.24


def tiny_embedded_policy(**backbone):
    cfg = VLAConfig(backbone=BackboneConfig(image_size=32, patch_size=8, vision_hidden=32, vision_layers=1,
                                            text_hidden=64, text_layers=2, head_dim=32, **backbone),
                    chunk_size=4, n_action_steps=2)
    return VLAPolicy.create(cfg, SCHEMA, fake_stats(), TASKS)


def reloaded_predicts_alike(policy, directory, obs):
    """The policy saved to and loaded from `directory`, checked to predict what the policy predicts."""
    policy.save_pretrained(directory)
    loaded = VLAPolicy.from_pretrained(directory)
    np.testing.assert_array_equal(loaded.predict_chunk(obs), policy.predict_chunk(obs))
    return loaded


def test_instruction_first_puts_the_words_before_the_images_and_is_kept_by_the_checkpoint(tmp_path):
    policy = tiny_embedded_policy(instruction_first=True)
    obs = observations()
    model = policy.model
    prefix = model.build_prefix(torch.from_numpy(obs["observation.images.corner2"][:, None]), obs["observation.state"],
                                obs["task"])
    ids = prefix["input_ids"][0][prefix["attention_mask"][0].bool()].tolist()
    words = model.text_ids(obs["task"][0])
    assert ids[: len(words)] == words and ids[len(words)] == model.backbone.image_token_id
    assert reloaded_predicts_alike(policy, tmp_path / "ckpt", obs).model.backbone.instruction_first
    with pytest.raises(ValueError, match="instruction_first is the embedded model's"):
        BackboneConfig(path=str(tmp_path), instruction_first=True)


def test_a_conv_stem_keeps_the_patch_grid_and_is_kept_by_the_checkpoint(tmp_path):
    policy = tiny_embedded_policy(vision_stem="conv")
    stem = policy.model.backbone.model.model.vision_model.embeddings.patch_embedding
    assert isinstance(stem, torch.nn.Sequential)
    assert stem(torch.rand(2, 3, 32, 32)).shape == (2, 32, 4, 4)  # the 8-pixel patches' grid, three stride-2 stages
    reloaded_predicts_alike(policy, tmp_path / "ckpt", observations())
    with pytest.raises(ValueError, match="vision_stem must be one of"):
        BackboneConfig(vision_stem="resnet")
    with pytest.raises(ValueError, match="vision_stem is the embedded model's"):
        BackboneConfig(path=str(tmp_path), vision_stem="conv")


def test_a_keypoint_connector_gives_each_image_token_a_map_over_the_patches_and_is_kept_by_the_checkpoint(tmp_path):
    from vla.model.families.embedded import KeypointConnector

    policy = tiny_embedded_policy(connector="keypoints")
    connector = policy.model.backbone.model.model.connector
    assert isinstance(connector, KeypointConnector)
    side, hidden = 4, connector.attend.in_features
    patches = torch.zeros(1, side * side, hidden)
    patches[0, side * side - 1] = 1.0  # only the bottom-right patch stands out
    with torch.no_grad():
        connector.attend.weight.fill_(50.0)  # every token attends to the patch with the largest features
        connector.attend.bias.zero_()
        weights = connector.attend(patches).softmax(1)
    assert connector(patches).shape == (1, policy.model.backbone.image_seq_len, connector.feature.out_features)
    assert torch.allclose(weights[0].T @ connector.grid, torch.tensor([1.0, 1.0]), atol=1e-3)  # x, y of that patch
    reloaded_predicts_alike(policy, tmp_path / "ckpt", observations())
    with pytest.raises(ValueError, match="connector must be one of"):
        BackboneConfig(connector="perceiver")
    with pytest.raises(ValueError, match="connector is the embedded model's"):
        BackboneConfig(path=str(tmp_path), connector="keypoints")


def test_film_conditions_the_vision_tower_on_the_instruction_and_is_kept_by_the_checkpoint(tmp_path):
    policy = tiny_embedded_policy(film=True)
    backbone, obs = policy.model.backbone, observations()
    film = backbone.film
    expected = policy.predict_chunk(obs)
    backbone.film = None  # the plain SmolVLM forward: a new FiLM (zero scale and shift) must change nothing
    np.testing.assert_allclose(policy.predict_chunk(obs), expected, atol=1e-5)
    backbone.film = film
    with torch.no_grad():
        film.table.weight.normal_(std=0.5)
    prefix = policy.model.build_prefix(torch.from_numpy(obs["observation.images.corner2"][:, None]),
                                       obs["observation.state"], [TASKS[0], TASKS[0]])
    ids = prefix["instruction_ids"]
    assert ids[ids >= 0].tolist() == policy.model.text_ids(TASKS[0]) * 2  # the instruction and nothing else
    pixels = prefix["pixel_values"][:1]
    by_task = [backbone.image_features(pixels, film(ids[:1])),
               backbone.image_features(pixels, film(torch.full_like(ids[:1], -1)))]
    assert not torch.allclose(*by_task)  # the same image, other words: other image tokens
    loaded = reloaded_predicts_alike(policy, tmp_path / "ckpt", obs)
    assert loaded.model.backbone.film is not None
    policy.cfg = policy.model.cfg = dataclasses.replace(policy.cfg, decoding="autoregressive")  # the KV-cached path
    assert np.isfinite(policy.predict_chunk(obs)).all()
    with pytest.raises(ValueError, match="film is the embedded model's"):
        BackboneConfig(path=str(tmp_path), film=True)


def test_film_cnn_makes_the_image_tokens_with_an_instruction_conditioned_cnn_and_is_kept_by_the_checkpoint(tmp_path):
    policy = tiny_embedded_policy(connector="film_cnn")
    backbone, obs = policy.model.backbone, observations()
    cnn = backbone.cnns[0]  # one per camera
    assert len(backbone.cnns) == 1 and backbone.film.table.embedding_dim == 2 * len(cnn.convs) * cnn.width
    with torch.no_grad():
        backbone.film.table.weight.normal_(std=0.5)
    prefix = policy.model.build_prefix(torch.from_numpy(obs["observation.images.corner2"][:, None]),
                                       obs["observation.state"], obs["task"])
    film = backbone.film(prefix["instruction_ids"])
    tokens = backbone.image_features(prefix["pixel_values"], film)
    points = backbone.first_camera_keypoints(prefix)
    assert tokens.shape == (2 * backbone.image_seq_len, backbone.model.config.text_config.hidden_size)
    assert points.shape == (2, backbone.n_keypoints * 2) and points.abs().max() <= 1  # grid coordinates
    same_image = backbone.image_features(prefix["pixel_values"][:1].expand(2, -1, -1, -1, -1), film).view(2, -1)
    assert not torch.allclose(same_image[0], same_image[1])  # two instructions, one image: other tokens
    assert len(reloaded_predicts_alike(policy, tmp_path / "ckpt", obs).model.backbone.cnns) == 1


def test_film_cnn_width_sets_every_cnns_channels_and_the_checkpoint_keeps_it(tmp_path):
    policy = tiny_embedded_policy(connector="film_cnn", film_cnn_width=16)
    backbone = policy.model.backbone
    assert {conv.out_channels for conv in backbone.cnns[0].convs} == {16}
    assert backbone.film.table.embedding_dim == 2 * len(backbone.cnns[0].convs) * 16  # the FiLM fits them
    loaded = reloaded_predicts_alike(policy, tmp_path / "ckpt", observations())
    assert loaded.model.backbone.cnns[0].width == 16
    with pytest.raises(ValueError, match="film_cnn_width must be a positive multiple of 8, got 12"):
        BackboneConfig(connector="film_cnn", film_cnn_width=12)


def test_film_only_keeps_the_instruction_out_of_the_prompt_and_in_the_film(tmp_path):
    policy = tiny_embedded_policy(connector="film_cnn", film_only=True)
    model, obs = policy.model, observations()
    with torch.no_grad():
        model.backbone.film.table.weight.normal_(std=0.5)
    images = torch.from_numpy(obs["observation.images.corner2"][:, None])
    prefix = model.build_prefix(images, obs["observation.state"], obs["task"])
    shown = prefix["input_ids"][prefix["attention_mask"].bool()]
    assert not torch.isin(shown, torch.tensor(model.text_ids(obs["task"][1]))).any()  # no word reaches the prompt
    ids = prefix["instruction_ids"]
    assert ids[1][ids[1] >= 0].tolist() == model.text_ids(obs["task"][1])  # the FiLM reads all of it
    same = {k: v for k, v in obs.items()}
    same["task"] = [obs["task"][0]] * 2
    other = dict(same, task=[obs["task"][1]] * 2)
    assert not np.allclose(policy.predict_chunk(same), policy.predict_chunk(other))  # the words still steer it
    assert reloaded_predicts_alike(policy, tmp_path / "ckpt", obs).model.backbone.film_only
    policy.cfg = policy.model.cfg = dataclasses.replace(policy.cfg, decoding="autoregressive")  # the KV-cached path
    assert np.isfinite(policy.predict_chunk(obs)).all()
    with pytest.raises(ValueError, match="film_only needs a FiLM"):
        BackboneConfig(film_only=True)


def test_film_cnn_runs_nchw_and_in_bf16_under_autocast():
    """The layout and dtype its CPU training speed rests on: channels-last pixels (the permuted HWC view) made
    GroupNorm's backward ~10x slower, and an fp32 FiLM promoted every activation to fp32 and back (README,
    tabletop: the training step went from 1.07 to 0.56 s)."""
    policy = tiny_embedded_policy(connector="film_cnn")
    backbone, obs = policy.model.backbone, observations()
    prefix = policy.model.build_prefix(torch.from_numpy(obs["observation.images.corner2"][:, None]),
                                       obs["observation.state"], obs["task"])
    assert prefix["pixel_values"].is_contiguous()
    seen = []
    for conv in backbone.cnns[0].convs:
        conv.register_forward_hook(lambda m, inputs, out: seen.append((inputs[0].is_contiguous(), inputs[0].dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        backbone.image_features(prefix["pixel_values"], backbone.film(prefix["instruction_ids"]))
    assert all(contiguous for contiguous, _ in seen)
    assert [dtype for _, dtype in seen[1:]] == [torch.bfloat16] * (len(seen) - 1)  # after the first conv


def test_a_compiled_film_cnn_policy_compiles_its_cnns_and_predicts_as_the_eager_one(tmp_path):
    """compile=true compiles the FiLM CNNs too, not only the language model: they run before it (encode_images),
    and eager they were most of a tabletop training step (benchmarks/tabletop_train_speed.py)."""
    policy = tiny_embedded_policy(connector="film_cnn")
    with torch.no_grad():
        policy.model.backbone.film.table.weight.normal_(std=0.5)  # words that change the CNN's activations
    policy.save_pretrained(tmp_path / "ckpt")
    obs = observations()
    reference = VLAPolicy.from_pretrained(tmp_path / "ckpt").predict_chunk(obs)
    compiled = VLAPolicy.from_pretrained(tmp_path / "ckpt", compile=True)
    assert all(cnn._compiled_call_impl is not None for cnn in compiled.model.backbone.cnns)
    np.testing.assert_allclose(compiled.predict_chunk(obs), reference, atol=1e-4)


def test_a_self_conditioned_step_encodes_its_images_once_and_trains_the_encoder():
    """self_condition runs the language model twice over one prefix (its own chunk without gradient, then the
    training pass); the FiLM CNN, about half the second pass's cost on a CPU (measured), runs once, with gradient."""
    policy = tiny_embedded_policy(connector="film_cnn")
    model, obs = policy.model, observations()
    model.cfg.self_condition = 1.0
    prefix = model.build_prefix(torch.from_numpy(obs["observation.images.corner2"][:, None]),
                                obs["observation.state"], obs["task"])
    encoded = model.backbone.encode_images(prefix)
    assert "pixel_values" not in encoded and "instruction_ids" not in encoded
    model.eval()  # no bigram dropout: the encoded prefix runs as the raw one does
    torch.testing.assert_close(model._hidden(encoded, model.masks(2)), model._hidden(prefix, model.masks(2)))
    model.train()
    calls = []
    model.backbone.cnns[0].register_forward_hook(lambda *args: calls.append(1))
    target = torch.zeros(2, model.n_action_values)
    model(prefix, target, torch.ones_like(target, dtype=torch.bool))["loss"].backward()
    assert len(calls) == 1
    assert model.backbone.cnns[0].convs[0].weight.grad.abs().sum() > 0


def test_film_bigram_dropout_leaves_out_some_instructions_bigrams_in_training_only():
    film = InstructionFiLM(vision_hidden=4, n_layers=1, bigram_dropout=0.5)
    with torch.no_grad():
        film.table.weight.normal_()
    ids = torch.tensor([[5, 6, 7, -1]] * 64)  # one instruction: 3 unigrams, 2 bigrams
    unigrams_only = InstructionFiLM(vision_hidden=4, n_layers=1)
    unigrams_only.table.weight = film.table.weight
    unigrams = unigrams_only(torch.tensor([[5, -1, 6, -1, 7]]))  # the same unigrams, no pair adjacent
    torch.manual_seed(0)
    trained = film.train()(ids)
    dropped = torch.isclose(trained, unigrams).flatten(1).all(1)
    assert 10 < dropped.sum() < 54  # about half, with no other change
    assert torch.allclose(trained[~dropped], film.eval()(ids)[~dropped])  # the rest keep their bigrams
    assert not torch.allclose(film.eval()(ids)[0], unigrams[0])
    # 1.0: unigrams only, at inference as in training (a bigram's hashed row may be a trained word's)
    film.bigram_dropout = 1.0
    assert all(torch.allclose(film.train(mode)(ids), unigrams) for mode in (True, False))
    with pytest.raises(ValueError, match="film_bigram_dropout must be in"):
        BackboneConfig(film_bigram_dropout=1.5)


def test_film_factored_bigrams_start_at_zero_read_word_order_and_are_never_dropped():
    film = InstructionFiLM(vision_hidden=4, n_layers=1, bigram_dropout=0.9, factored_rank=3)
    pair, swapped = torch.tensor([[5, 7]]), torch.tensor([[7, 5]])
    assert film(pair).abs().sum() == 0  # a new model is the one without them
    with torch.no_grad():
        film.factored.weight.normal_()
    assert not torch.allclose(film(pair), film(swapped))  # a pair, not a bag: unigrams alone are zero here
    expected = film.eval()(pair)
    film.train()
    assert all(torch.equal(film(pair), expected) for _ in range(5))  # bigram dropout leaves them in
    with pytest.raises(ValueError, match="film_factored_rank must be >= 0"):
        BackboneConfig(film_factored_rank=-1)


def test_film_positional_unigrams_tell_a_word_by_its_place_in_the_instruction():
    film = InstructionFiLM(vision_hidden=4, n_layers=1, bigram_dropout=0.9, positional=True)
    first, second = torch.tensor([[-1, 5, 7]]), torch.tensor([[7, 5, -1]])  # the same bag, in another order
    assert film(first).abs().sum() == 0  # a new model is the one without them
    with torch.no_grad():
        film.positional.weight.normal_()
    assert not torch.allclose(film(first), film(second))
    # the place counts words of the instruction, not of the prompt: padding before it moves nothing
    assert torch.allclose(film(torch.tensor([[5, 7]])), film(first))
    with pytest.raises(ValueError, match="film_positional is a feature of the FiLM"):
        BackboneConfig(film_positional=True)


def test_film_gappy_bigrams_read_words_one_apart_and_are_never_dropped():
    film = InstructionFiLM(vision_hidden=4, n_layers=1, bigram_dropout=1.0, gappy=True)
    with torch.no_grad():
        film.table.weight.normal_()
    plain = InstructionFiLM(vision_hidden=4, n_layers=1, bigram_dropout=1.0)
    plain.table.weight = film.table.weight
    gap, adjacent = torch.tensor([[5, 6, 7]]), torch.tensor([[6, 5, 7]])
    apart = torch.tensor([[5, -1, -1, 6, -1, -1, 7]])  # no two words one apart
    # 5 and 7 one word apart add a row of their own; with no bigrams and nothing one apart, only unigrams remain
    assert not torch.allclose(film(gap), plain(gap))
    assert torch.allclose(film(apart), plain(apart))
    assert not torch.allclose(film(gap), film(adjacent))  # the same bag, another pair one apart
    # bigram dropout leaves them in: with every bigram dropped, training and inference still read them
    assert torch.equal(film.train()(gap), film.eval()(gap))
    with pytest.raises(ValueError, match="film_gappy_bigrams is a feature of the FiLM"):
        BackboneConfig(film_gappy_bigrams=True)


def test_film_bigram_dropout_per_bigram_draws_each_bigram_on_its_own():
    film = InstructionFiLM(vision_hidden=4, n_layers=1, bigram_dropout=0.5, dropout_per="bigram")
    with torch.no_grad():
        film.table.weight.normal_()
    film.eval()
    unigrams = film(torch.tensor([[5, -1, 6, -1, 7, -1, 8]]))  # no pair adjacent
    # each bigram's own row: the pair less its two unigrams
    bigrams = [film(torch.tensor([[a, b]])) - film(torch.tensor([[a, -1, b]])) for a, b in ((5, 6), (6, 7), (7, 8))]
    subsets = [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    expected = torch.cat([unigrams + sum(keep * row for keep, row in zip(s, bigrams, strict=True)) for s in subsets])
    torch.manual_seed(0)
    trained = film.train()(torch.tensor([[5, 6, 7, 8, -1]] * 256))
    match = torch.isclose(trained[:, None], expected[None], atol=1e-5).flatten(2).all(2)  # (256, 8)
    assert (match.sum(1) == 1).all()  # every row is the unigrams plus some subset of the bigrams
    counts = match.sum(0)
    assert (counts > 10).all(), counts  # all eight subsets, the partial ones included
    with pytest.raises(ValueError, match="film_bigram_dropout_per must be one of"):
        BackboneConfig(film_bigram_dropout_per="word")


def test_text_mlp_ratio_sets_the_language_models_width_and_is_kept_by_the_checkpoint(tmp_path):
    loaded = reloaded_predicts_alike(tiny_embedded_policy(text_mlp_ratio=2.5), tmp_path / "ckpt", observations())
    assert loaded.model.backbone.model.config.text_config.intermediate_size == 160
    with pytest.raises(ValueError, match="text_mlp_ratio must be > 0"):
        BackboneConfig(text_mlp_ratio=0)

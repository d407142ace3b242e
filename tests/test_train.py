import dataclasses
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_IMAGE, tiny_model_config
from safetensors.torch import load_file, save_file

from vla.cpu_memory import keep_freed_memory
from vla.datasets.chunk_dataset import ChunkDataset, gripper_keyframes, open_source
from vla.model.vla_model import VLAModel
from vla.policies.vla_policy import CheckpointError, VLAPolicy
from vla.schema import ACTION_KEY, STATE_KEY, TASK_KEY
from vla.train import TrainConfig, train


def config(store, out, steps, **kw):
    kw = {"batch_size": 4, "save_every": 2, "warmup_steps": 1, **kw}
    return TrainConfig(dataset=str(store), out=str(out), steps=steps, model=tiny_model_config(), **kw)


def test_train_two_steps_save_resume_gives_identical_state(tiny_store, tmp_path):
    train(config(tiny_store, tmp_path / "straight", 4))
    train(config(tiny_store, tmp_path / "resumed", 2))
    with pytest.raises(FileExistsError, match="resume=true"):
        train(config(tiny_store, tmp_path / "resumed", 4))
    train(config(tiny_store, tmp_path / "resumed", 4, resume=True))
    for name in ("model.safetensors", "optimizer.safetensors"):
        a = load_file(str(tmp_path / "straight/checkpoints/step_000004" / name))
        b = load_file(str(tmp_path / "resumed/checkpoints/step_000004" / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key} differs after resume"
    state = json.loads((tmp_path / "resumed/checkpoints/step_000004/trainer_state.json").read_text())
    first = json.loads((tmp_path / "resumed/checkpoints/step_000002/trainer_state.json").read_text())
    assert state["step"] == 4
    assert state["train_s"] > first["train_s"] > 0  # counted over both sittings
    assert (tmp_path / "resumed/loss.png").stat().st_size > 0
    rows = [json.loads(r) for r in (tmp_path / "resumed/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_old_checkpoints_are_pruned_but_the_newest_and_every_keep_every_stay(tiny_store, tmp_path):
    train(config(tiny_store, tmp_path / "run", 6, save_every=1, keep_last=2, keep_every=3))
    kept = sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir())
    assert kept == ["step_000003", "step_000005", "step_000006"]
    train(config(tiny_store, tmp_path / "run", 7, save_every=1, keep_last=2, keep_every=3, resume=True))
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir()) == ["step_000003", "step_000006",
                                                                               "step_000007"]
    with pytest.raises(ValueError, match="keep_last must be >= 1"):
        config(tiny_store, tmp_path / "bad", 2, keep_last=0)


def test_loss_decreases_when_overfitting_a_few_batches(tiny_store, tmp_path):
    out = tmp_path / "fit"
    train(config(tiny_store, out, 40, lr=3e-3, shift_pixels=0, save_every=40))
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    first = sum(r["loss"] for r in rows[:5]) / 5
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_final_state_loss_learns_where_each_episode_ends(tiny_store, tmp_path):
    """model.final_state_weight: the prompt also predicts the state at the end of the sample's episode."""
    source = open_source(tiny_store)
    batch = ChunkDataset(source, 4).get_batch(np.array([0, source.episode_ends[0] - 1, source.episode_ends[0]]))
    state = np.asarray(source.array("observation.state")[:])
    ends = source.episode_ends
    np.testing.assert_array_equal(batch["final_state"], state[[ends[0] - 1, ends[0] - 1, ends[1] - 1]])
    out = tmp_path / "aux"
    train(dataclasses.replace(config(tiny_store, out, 30, lr=3e-3, shift_pixels=0, save_every=30),
                              model=tiny_model_config(final_state_weight=1.0)))
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["final_state_loss"] for r in rows[-5:]) < 0.8 * sum(r["final_state_loss"] for r in rows[:5])
    with pytest.raises(ValueError, match="final_state_weight must be >= 0"):
        tiny_model_config(final_state_weight=-1.0)


def test_gripper_keyframes_are_each_episodes_first_gripper_change():
    action = np.zeros((8, 4), np.float32)
    action[:, 3] = [-1, -1, 1, 1, -1, -1, -1, -1]  # episode 0 closes at frame 2; episode 1 (4-7) never changes
    starts, ends = np.array([0, 4]), np.array([4, 8])
    names = ("dx", "dy", "dz", "gripper")
    assert gripper_keyframes(action, names, starts, ends).tolist() == [2, 7]  # 1's first frame differs from 0's last
    assert gripper_keyframes(action, ("a", "b", "c", "d"), starts, ends).tolist() == [3, 7]  # no gripper: the end
    with pytest.raises(ValueError, match="final_state_keyframe is a target of the keypoint head"):
        tiny_model_config(final_state_keyframe=True)
    with pytest.raises(ValueError, match="final_state_reads=image_tokens chooses the final-state head's input"):
        tiny_model_config(final_state_reads="image_tokens")
    with pytest.raises(ValueError, match="final_state_reads must be one of"):
        tiny_model_config(final_state_weight=1.0, final_state_reads="pixels")


@pytest.mark.parametrize("connector,reads,keyframe", [("film_cnn", "auto", False), ("film_cnn", "auto", True),
                                                      ("shuffle", "image_tokens", True)])
def test_final_state_head_learns_and_is_kept_by_the_checkpoint(tiny_store, tmp_path, connector, reads, keyframe):
    """With a keypoint encoder (connector=film_cnn), final_state_weight trains an MLP on the keypoints'
    coordinates, and with final_state_reads=image_tokens on the first camera's image tokens, on a batch of
    episodes' first frames (with final_state_keyframe, toward the gripper keyframe too); the checkpoint keeps it
    under "heads." and names it when it is missing."""
    out = tmp_path / "heads"
    model = tiny_model_config(final_state_weight=1.0, final_state_keyframe=keyframe, final_state_reads=reads)
    model.backbone.connector = connector
    train(dataclasses.replace(config(tiny_store, out, 2, shift_pixels=0, save_every=2), model=model))
    assert "final_state_loss" in json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    policy = VLAPolicy.from_pretrained(out)
    dataset = ChunkDataset(open_source(tiny_store), 4)
    starts = np.flatnonzero(np.arange(len(dataset)) == dataset.episode_start)
    assert set(dataset.first_frames(2)) == set(starts) | set(starts + 1)  # each episode's first two frames
    batch = dataset.get_batch(dataset.first_frames(2))
    prefix = policy.model.build_prefix(torch.from_numpy(batch["images"]), batch[STATE_KEY], batch[TASK_KEY])
    target = torch.from_numpy(policy.model.action_tokenizer.normalize(batch[ACTION_KEY]).reshape(len(prefix["input_ids"]), -1))
    optimizer, losses = torch.optim.Adam(policy.model.parameters(), 1e-3), []
    with pytest.raises(ValueError, match="needs a batch of first frames"):
        policy.model(prefix, target, torch.ones_like(target, dtype=torch.bool))
    for _ in range(20):  # the head fits where the demonstration still goes, from the keypoints and the state
        loss = policy.model(prefix, target, torch.ones_like(target, dtype=torch.bool),
                            first_frames=(prefix, batch[STATE_KEY], batch["final_state"],
                                          batch["keyframe_state"]))["final_state_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    weights = load_file(str(out / "model.safetensors"))
    assert {k for k in weights if k.startswith("heads.")} == {f"heads.final_state.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    head = VLAPolicy.from_pretrained(out).model.heads["final_state"]
    assert head[2].out_features == (2 if keyframe else 1) * batch[STATE_KEY].shape[1]
    torch.testing.assert_close(head[2].weight, weights["heads.final_state.2.weight"])
    save_file({k: v for k, v in weights.items() if k != "heads.final_state.0.bias"}, str(out / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing weight 'heads.final_state.0.bias'"):
        VLAPolicy.from_pretrained(out)


def test_final_state_batch_sets_how_many_first_frames_the_head_learns_from_a_step(tiny_store, tmp_path, monkeypatch):
    drawn = []
    get_batch = ChunkDataset.get_batch
    monkeypatch.setattr(ChunkDataset, "get_batch", lambda self, idx: drawn.append(len(idx)) or get_batch(self, idx))
    model = tiny_model_config(final_state_weight=1.0, final_state_batch=3)
    model.backbone.connector = "film_cnn"
    cfg = config(tiny_store, tmp_path / "run", 2, shift_pixels=0, save_every=2)
    train(dataclasses.replace(cfg, model=model))
    assert drawn.count(3) == 2 and drawn.count(cfg.batch_size) >= 2  # each step: its batch and the head's 3
    with pytest.raises(ValueError, match="final_state_batch must be >= 0"):
        tiny_model_config(final_state_batch=-1)


@pytest.fixture(scope="module")
def grasp_store(tmp_path_factory):
    """A real tabletop store with one episode that grasps (lift) and one that never does (touch)."""
    from vla.record import RecordConfig, record

    out = tmp_path_factory.mktemp("grasp") / "demos.zarr"
    # one worker: the test reads touch as episode 0 and lift as episode 1, an order two workers do not keep
    record(RecordConfig(tasks=["tabletop-touch", "tabletop-lift"], episodes=1, out=str(out), image_size=TINY_IMAGE,
                        workers=1))
    return out


def test_keyframe_approach_batch_trains_the_keyframe_target_on_the_way_to_the_grasp(grasp_store, tmp_path,
                                                                                    monkeypatch):
    """model.keyframe_approach_batch: each step the head also learns, for the keyframe target only, from frames
    past the first final_state_frames and before each episode's first gripper change."""
    source = open_source(grasp_store)
    dataset = ChunkDataset(source, 4)
    ends = source.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    keyframes = gripper_keyframes(dataset.action, source.schema.action.names, starts, ends)
    assert keyframes[0] == ends[0] - 1 and keyframes[1] < ends[1] - 1  # touch never grasps, lift does
    assert dataset.approach_frames(2).tolist() == list(range(starts[1] + 2, keyframes[1]))

    model = tiny_model_config(final_state_weight=1.0, final_state_keyframe=True, final_state_batch=3,
                              keyframe_approach_batch=2)
    model.backbone.connector = "film_cnn"
    drawn, loss_rows = [], []
    get_batch, head_loss = ChunkDataset.get_batch, VLAModel.keypoint_head_loss
    monkeypatch.setattr(ChunkDataset, "get_batch", lambda self, idx: drawn.append(idx) or get_batch(self, idx))
    monkeypatch.setattr(VLAModel, "keypoint_head_loss",
                        lambda self, *a: loss_rows.append(a[-1]) or head_loss(self, *a))
    cfg = config(grasp_store, tmp_path / "run", 2, shift_pixels=0, save_every=2)
    train(dataclasses.replace(cfg, model=model))
    heads = [rows for rows in drawn if len(rows) == 5]
    assert cfg.batch_size != 5 and len(heads) == 2  # each step: 3 first frames, then 2 on the way to the grasp
    assert all(set(rows[:3]) <= set(dataset.first_frames(5)) for rows in heads)
    assert all(set(rows[3:]) <= set(dataset.approach_frames(5)) for rows in heads)
    assert [known.tolist() for known in loss_rows] == [[True] * 3 + [False] * 2] * 2

    # the final state of an approach frame is no target: changing it leaves the loss as it is
    policy = VLAPolicy.from_pretrained(tmp_path / "run")
    batch = dataset.get_batch(dataset.approach_frames(2)[:4])
    prefix = policy.model.build_prefix(torch.from_numpy(batch["images"]), batch[STATE_KEY], batch[TASK_KEY],
                                       head_only=True)
    known = np.array([True, True, False, False])
    args = (prefix, batch[STATE_KEY], batch["final_state"], batch["keyframe_state"])
    with torch.no_grad():
        loss = policy.model.keypoint_head_loss(*args, known)
        final = batch["final_state"].copy()
        final[~known] += 5.0
        moved = policy.model.keypoint_head_loss(prefix, batch[STATE_KEY], final, batch["keyframe_state"], known)
        every = policy.model.keypoint_head_loss(*args, np.ones(4, bool))
        plain = policy.model.keypoint_head_loss(*args)
    torch.testing.assert_close(loss, moved)
    torch.testing.assert_close(every, plain)
    with pytest.raises(ValueError, match="keyframe_approach_batch trains the keyframe target"):
        tiny_model_config(final_state_weight=1.0, keyframe_approach_batch=2)


def test_final_state_renamed_asks_the_head_for_other_objects_of_the_scene(grasp_store, tiny_store, tmp_path,
                                                                         monkeypatch):
    """model.final_state_renamed: that share of the head's first frames name another object of their scene (the
    suite's renamings), their final state and keyframe moved with it; the action batch is untouched."""
    from vla.datasets.renamings import EpisodeRenamings
    from vla.envs.tabletop import TabletopSuite

    source = open_source(grasp_store)
    renamings = EpisodeRenamings(source)
    dataset = ChunkDataset(source, 4)
    rows = np.repeat(dataset.first_frames(1), 20)  # each episode's first frame, 20 times
    batch = dataset.get_batch(rows)
    renamed = renamings.apply(batch, dataset.episode_of_frame[rows], 1.0, np.random.default_rng(0))
    for e in (0, 1):
        own = renamings.per_episode[e]
        mine = dataset.episode_of_frame[rows] == e
        assert {batch[TASK_KEY][i] for i in np.flatnonzero(mine)} == {source.episode_tasks()[e]}
        assert {renamed[TASK_KEY][i] for i in np.flatnonzero(mine)} == {r.instruction for r in own}  # all drawn
        for i in np.flatnonzero(mine):
            r = next(r for r in own if r.instruction == renamed[TASK_KEY][i])
            np.testing.assert_allclose(renamed["final_state"][i], batch["final_state"][i] + r.final_shift)
            np.testing.assert_allclose(renamed["keyframe_state"][i], batch["keyframe_state"][i] + r.keyframe_shift)
    untouched = renamings.apply(batch, dataset.episode_of_frame[rows], 0.0, np.random.default_rng(0))
    assert untouched[TASK_KEY] == batch[TASK_KEY]

    applied = []
    apply = EpisodeRenamings.apply
    monkeypatch.setattr(EpisodeRenamings, "apply", lambda self, b, e, share, rng: applied.append((len(e), share))
                        or apply(self, b, e, share, rng))
    model = tiny_model_config(final_state_weight=1.0, final_state_keyframe=True, final_state_batch=3,
                              final_state_renamed=0.5)
    model.backbone.connector = "film_cnn"
    cfg = dataclasses.replace(config(grasp_store, tmp_path / "run", 2, shift_pixels=0, save_every=2), model=model)
    train(cfg)
    assert applied == [(3, 0.5)] * 2  # each step, the head's first frames
    # a store no suite can rename, a head that does not read first frames, a share out of range: named
    with pytest.raises(ValueError, match="needs episodes that a suite can rename"):
        train(dataclasses.replace(cfg, dataset=str(tiny_store), out=str(tmp_path / "metaworld")))
    plain_head = tiny_model_config(final_state_weight=1.0, final_state_renamed=1.0)
    with pytest.raises(ValueError, match="it needs a keypoint head"):
        train(dataclasses.replace(cfg, out=str(tmp_path / "no_head"), model=plain_head))
    with pytest.raises(ValueError, match="final_state_renamed must be in \\[0, 1\\]"):
        tiny_model_config(final_state_weight=1.0, final_state_renamed=1.5)
    with pytest.raises(ValueError, match="final_state_renamed relabels the keypoint head's frames"):
        tiny_model_config(final_state_renamed=1.0)
    # a store whose episodes its suite now draws otherwise is refused, not relabelled with another scene's objects
    drawn_otherwise = TabletopSuite.renamings
    monkeypatch.setattr(TabletopSuite, "renamings", lambda self, task, seed: [
        dataclasses.replace(r, instruction=r.instruction + " now") for r in drawn_otherwise(self, task, seed)])
    with pytest.raises(ValueError, match="episode 0 \\(tabletop-touch, seed 0\\) was given .* no longer gives"):
        EpisodeRenamings(source)


def test_goal_tokens_are_the_keypoint_heads_prediction_after_the_state(tiny_store, tmp_path):
    """model.goal_tokens: the prompt ends with the keypoint head's predicted final and keyframe states as state
    bins, after the state tokens (which state_dropout masks, not the goals); the policy decodes with them."""
    out = tmp_path / "goals"
    model = tiny_model_config(final_state_weight=1.0, final_state_keyframe=True, goal_tokens=True, state_dropout=0.5)
    model.backbone.connector = "film_cnn"
    train(dataclasses.replace(config(tiny_store, out, 2, shift_pixels=0, save_every=2), model=model))
    policy = VLAPolicy.from_pretrained(out)
    m = policy.model.eval()
    batch = ChunkDataset(open_source(tiny_store), 4).get_batch(np.arange(3))
    images, state = torch.from_numpy(batch["images"]), batch[STATE_KEY]
    d = state.shape[1]
    assert m.n_goal_tokens == 2 * d
    head_only = m.build_prefix(images, state, batch[TASK_KEY], head_only=True)
    prefix = m.build_prefix(images, state, batch[TASK_KEY])
    assert prefix["input_ids"].shape[1] == head_only["input_ids"].shape[1] + 2 * d
    torch.testing.assert_close(prefix["input_ids"][:, : -2 * d], head_only["input_ids"])
    now = m.state_tokenizer.normalize(state)
    with torch.no_grad():
        predicted = np.tile(now, 2) + m.displacement(head_only, state).numpy()
    expected = m.first_state_id + m.state_tokenizer.to_bins(np.clip(predicted, -1, 1))
    np.testing.assert_array_equal(prefix["input_ids"][:, -2 * d :].numpy(), expected)
    with torch.no_grad():  # the goals move with the head's output
        m.heads["final_state"][2].bias += 0.5
    assert not torch.equal(m.build_prefix(images, state, batch[TASK_KEY])["input_ids"][:, -2 * d :],
                           prefix["input_ids"][:, -2 * d :])
    dropped = m.drop_state(prefix, torch.Generator().manual_seed(0))["input_ids"]
    masked = (dropped[:, -3 * d : -2 * d] == m.mask_id).all(1)
    assert masked.any() and not masked.all()  # some samples' states are MASK (p = 0.5, 3 samples)
    torch.testing.assert_close(dropped[:, -2 * d :], prefix["input_ids"][:, -2 * d :])  # goals never
    obs = {k: batch[k] for k in (STATE_KEY, TASK_KEY)} | {
        key: batch["images"][:, i] for i, key in enumerate(policy.schema.image_keys)}
    assert np.isfinite(policy.predict_chunk(obs)).all()
    with pytest.raises(ValueError, match="goal_tokens are the keypoint head's predictions: they need final_state_weight"):
        tiny_model_config(goal_tokens=True)
    with pytest.raises(ValueError, match="connector=film_cnn"):
        VLAPolicy.create(tiny_model_config(final_state_weight=1.0, goal_tokens=True), policy.schema, policy.stats, ["a"])


def test_resume_without_checkpoint_fails_clearly(tiny_store, tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        train(config(tiny_store, tmp_path / "none", 2, resume=True))


def test_two_cpu_processes_with_accelerate_launch(tiny_store, tmp_path):
    """DDP over gloo: the command a user would run on several GPUs, here with two CPU processes."""
    cfg = config(tiny_store, tmp_path / "ddp", 2)
    m = asdict(cfg.model)
    overrides = [f"dataset={tiny_store}", f"out={tmp_path / 'ddp'}", "steps=2", "batch_size=4", "save_every=2"]
    overrides += [f"model.backbone.{k}={v}" for k, v in m["backbone"].items() if v is not None]
    overrides += [f"model.chunk_size={m['chunk_size']}", f"model.n_action_steps={m['n_action_steps']}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "vla.cli.train", *overrides]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(r) for r in (tmp_path / "ddp/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2, "only the main process logs"
    assert rows[-1]["samples_per_s"] > 0
    assert Path(tmp_path / "ddp/model.safetensors").is_file()


def test_compiled_training_pads_prompts_to_one_length_and_learns_the_same(tiny_store, tmp_path):
    """compile=true pads every prompt to the longest training instruction (one graph for every batch); the
    padding is masked, so the first step's loss is the uncompiled one's."""
    runs = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        train(config(tiny_store, tmp_path / name, 2, compile=compiled))
        runs[name] = [json.loads(r) for r in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert abs(runs["compiled"][0]["loss"] - runs["eager"][0]["loss"]) < 2e-2, runs


def test_cpu_training_keeps_freed_memory_unless_the_user_tuned_malloc(monkeypatch):
    """glibc only (elsewhere nothing to tune); a user's own MALLOC_* settings win."""
    for key in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(key)
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert keep_freed_memory() is False


RELEASE_CHECK = """
import numpy as np
from vla.cpu_memory import keep_freed_memory, release_freed_memory
def rss_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
keep_freed_memory()
blocks = [np.ones(2**20 // 8) for _ in range(300)]  # 300 MiB in 1 MiB blocks: in the heap, below the threshold
del blocks
kept = rss_mb()
assert release_freed_memory()
print(kept - rss_mb())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_memory_freed_under_kept_memory_goes_back_to_the_os_when_released():
    """What training kept (keep_freed_memory never trims) is released when train() ends (release_freed_memory),
    so a benchmark that evaluates in the process it trained in does not hold its training data's memory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", RELEASE_CHECK], capture_output=True, text=True, env=env, check=True)
    assert float(done.stdout) > 250, done.stdout  # MiB handed back of the 300 freed

import numpy as np
import pytest

from vla.datasets.chunk_dataset import ChunkDataset
from vla.datasets.episode_store import EpisodeStore, StoreError
from vla.datasets.stats import HIST_BINS, compute_stats, store_stats
from vla.envs.metaworld import metaworld_schema
from vla.schema import SchemaError

SCHEMA = metaworld_schema(16, "corner2")


def episode(n, value=0.0):
    rng = np.random.default_rng(n)
    return {
        "observation.images.corner2": rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8),
        "observation.state": np.full((n, 4), value, np.float32),
        "action": np.arange(n * 4, dtype=np.float32).reshape(n, 4) + value,
    }


def test_append_iterate_and_reopen_read_only(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    eps = [episode(5, 0), episode(3, 1), episode(7, 2)]
    for i, ep in enumerate(eps):
        assert store.add_episode(ep, task=f"task {i % 2}", seed=10 + i, success=True, env_task=f"t{i % 2}-v3") == i
    ro = EpisodeStore.open(tmp_path / "s.zarr")
    assert ro.num_episodes == 3 and ro.num_frames == 15
    assert ro.episode_ends.tolist() == [5, 8, 15]
    assert ro.episode_tasks() == ["task 0", "task 1", "task 0"]
    assert ro.env_tasks == {"task 0": "t0-v3", "task 1": "t1-v3"}
    for ep, got in zip(eps, ro.iter_episodes(), strict=True):
        for key in ep:
            np.testing.assert_array_equal(ep[key], got[key])
    assert ro.episode(1)["seed"] == 11
    with pytest.raises(PermissionError):
        ro.add_episode(eps[0], task="x", seed=0, success=True)


def test_two_env_tasks_that_share_an_instruction_stay_apart(tmp_path):
    """Meta-World's push-v3 and push-back-v3 share "Push the puck to a goal": a resumed recording and the
    training metadata must still count each task's own episodes."""
    from vla.record import stored_progress

    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    for i, env_task in enumerate(["push-v3", "push-v3", "push-back-v3"]):
        store.add_episode(episode(3, i), task="Push the puck to a goal", seed=i, success=True, env_task=env_task)
    assert store.episode_env_tasks() == ["push-v3", "push-v3", "push-back-v3"]
    assert stored_progress(store, 0) == ({"push-v3": (2, 2), "push-back-v3": (1, 3)},
                                         {"push-v3": {"unknown"}, "push-back-v3": {"unknown"}})
    store = store.drop_episodes([0])
    assert store.episode_env_tasks() == ["push-v3", "push-back-v3"]


def test_uncommitted_tail_is_invisible_and_repair_trims_it(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    store.add_episode(episode(4), task="a", seed=0, success=True)
    # simulate a crash after the data arrays grew but before episode_ends committed the episode
    for key in store.keys:
        arr = store.array(key)
        arr.resize((9, *arr.shape[1:]))
    reopened = EpisodeStore.open(tmp_path / "s.zarr", "a")
    assert reopened.num_episodes == 1 and reopened.num_frames == 4
    with pytest.raises(StoreError, match="uncommitted tail.*repair"):
        reopened.add_episode(episode(2), task="a", seed=1, success=True)
    trimmed = reopened.repair()
    assert any("9 frames > 4" in t for t in trimmed)
    reopened.add_episode(episode(2), task="a", seed=1, success=True)
    assert EpisodeStore.open(tmp_path / "s.zarr").episode_ends.tolist() == [4, 6]


def test_a_reader_opening_while_a_writer_commits_sees_a_consistent_store(tmp_path, monkeypatch):
    """The writer commits an episode between the reader's read of episode_ends and of the array lengths.

    This is the race CI hit (a store opened while `vla-record` appends): the reader must judge the
    lengths against the marker it read, not re-read the marker after them."""
    writer = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    writer.add_episode(episode(4), task="a", seed=0, success=True)
    real_ends, reads = EpisodeStore.episode_ends.fget, []

    def ends_moving_after_the_first_read(self):
        if not self.writable:
            reads.append(1)
            if len(reads) == 2:  # the reader has read the marker and the lengths; the writer commits now
                writer.add_episode(episode(6), task="a", seed=1, success=True)
        return real_ends(self)

    monkeypatch.setattr(EpisodeStore, "episode_ends", property(ends_moving_after_the_first_read))
    reader = EpisodeStore.open(tmp_path / "s.zarr")
    assert reader.num_episodes == 2 and reader.episode(1)["seed"] == 1


def test_bad_episodes_are_rejected_with_the_key_and_nothing_is_lost(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    store.add_episode(episode(3), task="a", seed=0, success=True)
    bad = episode(3)
    bad["action"] = bad["action"].astype(np.float64)
    with pytest.raises(SchemaError, match="'action': expected dtype float32, got float64"):
        store.add_episode(bad, task="a", seed=1, success=True)
    bad = episode(3)
    del bad["observation.state"]
    with pytest.raises(SchemaError, match="missing key 'observation.state'"):
        store.add_episode(bad, task="a", seed=1, success=True)
    bad = episode(3)
    bad["action"] = bad["action"][:2]
    with pytest.raises(SchemaError, match="different lengths"):
        store.add_episode(bad, task="a", seed=1, success=True)
    assert store.num_episodes == 1 and store.repair() == []


def test_truncated_array_and_bad_paths_fail_clearly(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    store.add_episode(episode(6), task="a", seed=0, success=True)
    store.array("action").resize((4, 4))
    with pytest.raises(StoreError, match="data/action has 4 frames but meta/episode_ends says 6"):
        EpisodeStore.open(tmp_path / "s.zarr")
    with pytest.raises(FileNotFoundError, match="no episode store here"):
        EpisodeStore.open(tmp_path / "missing.zarr")
    with pytest.raises(FileExistsError):
        EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)


def test_chunks_pad_at_episode_ends(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    store.add_episode(episode(3, 0), task="a", seed=0, success=True)
    store.add_episode(episode(4, 100), task="b", seed=1, success=True)
    ds = ChunkDataset(store, chunk_size=3)
    assert len(ds) == 7
    item = ds[1]  # frames 1, 2 of episode 0, then padding with its last action
    assert item["task"] == "a"
    assert item["action_is_pad"].tolist() == [False, False, True]
    np.testing.assert_array_equal(item["action"][2], item["action"][1])
    assert ds[3]["action"][0, 0] == 100  # episode 1 starts fresh
    with pytest.raises(ValueError, match="no episodes"):
        ChunkDataset(EpisodeStore.create(tmp_path / "empty.zarr", SCHEMA), 3)


def test_streaming_stats_match_numpy(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10_000, 3)).astype(np.float32) * [1, 5, 0.1]
    stats = compute_stats(x[i : i + 777] for i in range(0, len(x), 777))
    np.testing.assert_allclose(stats["mean"], x.mean(0), atol=1e-4)
    np.testing.assert_allclose(stats["std"], x.std(0), rtol=1e-4)
    # one pass: the histogram's range grew from the first chunk's by doublings, so a bin is at most
    # 4 x range / HIST_BINS wide here
    tolerance = 4 * (x.max(0) - x.min(0)) / HIST_BINS
    for name, q in (("q01", 0.01), ("q99", 0.99)):
        exact = np.quantile(x, q, axis=0, method="inverted_cdf")  # the smallest x with CDF >= q
        assert np.all(np.abs(stats[name] - exact) <= tolerance), (name, stats[name], exact)
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    store.add_episode(episode(5), task="a", seed=0, success=True)
    assert store_stats(store, ["action"])["action"]["max"].tolist() == [16, 17, 18, 19]


def test_missing_or_retyped_arrays_are_named(tmp_path):
    import shutil

    import zarr

    for name in ("retyped", "missing"):
        EpisodeStore.create(tmp_path / name, SCHEMA).add_episode(episode(3), task="a", seed=0, success=True)
    root = zarr.open_group(str(tmp_path / "retyped"), mode="a")
    del root["data/observation.state"]
    root["data"].create_array("observation.state", shape=(3, 4), dtype="float64")
    with pytest.raises(StoreError, match=r"data/observation.state is float64 \(4,\), the schema says float32"):
        EpisodeStore.open(tmp_path / "retyped")
    shutil.rmtree(tmp_path / "missing" / "data" / "action")
    with pytest.raises(StoreError, match="array data/action is missing"):
        EpisodeStore.open(tmp_path / "missing")


def test_interrupted_commit_reads_as_a_tail(tmp_path):
    """episode_ends grown (new shape written) but its chunk not yet: the last entry is the fill value 0."""
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    store.add_episode(episode(3), task="a", seed=0, success=True)
    for key in store.keys:
        arr = store.array(key)
        arr.resize((5, *arr.shape[1:]))
    store._root["meta/episode_ends"].resize((2,))
    reopened = EpisodeStore.open(tmp_path / "s.zarr", "a")
    assert reopened.episode_ends.tolist() == [3] and reopened.num_frames == 3
    assert any("meta/episode_ends: 2 > 1" in t for t in reopened.repair())
    reopened.add_episode(episode(2), task="a", seed=1, success=True)
    assert EpisodeStore.open(tmp_path / "s.zarr").episode_ends.tolist() == [3, 5]


def test_drop_episodes_keeps_the_rest(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    for i, n in enumerate([3, 4, 5]):
        store.add_episode(episode(n, i), task=f"t{i}", seed=i, success=bool(i % 2), source=f"src{i}")
    store = store.drop_episodes([1])
    assert store.episode_ends.tolist() == [3, 8] and store.episode_tasks() == ["t0", "t2"]
    np.testing.assert_array_equal(store.episode(1)["action"], episode(5, 2)["action"])
    assert [store.episode(i)["source"] for i in range(2)] == ["src0", "src2"]
    assert not (tmp_path / "s.zarr.old").exists() and not (tmp_path / "s.zarr.new").exists()
    with pytest.raises(IndexError, match=r"episodes \[7\] out of range"):
        store.drop_episodes([7])


def test_streamed_and_in_memory_loading_agree_and_workers_do_not_change_batches(tmp_path):
    from vla.datasets.chunk_dataset import StepBatches, step_loader

    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    for i, n in enumerate([70, 90, 5]):  # spans several 64-frame image chunks
        store.add_episode(episode(n, i), task=f"t{i}", seed=i, success=True)
    in_memory, streamed = ChunkDataset(store, 4), ChunkDataset(store, 4, max_memory_gb=0)
    assert in_memory.in_memory and not streamed.in_memory
    idx = np.array([150, 3, 3, 100, 0, 164])
    a, b = in_memory.get_batch(idx), streamed.get_batch(idx)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])

    def steps(dataset, workers):
        batches = StepBatches(dataset, batch_size=8, seed=3, shift_pixels=2)
        return list(step_loader(batches, start=5, stop=11, num_workers=workers))

    single, multi = steps(in_memory, 0), steps(streamed, 2)
    assert len(single) == len(multi) == 6
    for x, y in zip(single, multi, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert not np.array_equal(single[0]["images"], single[1]["images"])  # steps draw different batches


def test_episode_sampling_weighs_every_demonstration_alike(tmp_path):
    from vla.train import TrainConfig

    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    for i, n in enumerate([2, 50, 8]):
        store.add_episode(episode(n, i), task=f"t{i}", seed=i, success=True)
    dataset = ChunkDataset(store, 4)
    rng = np.random.default_rng(0)
    share = {by: np.bincount(dataset.episode_of_frame[dataset.sample(rng, 30000, by)], minlength=3) / 30000
             for by in ("frame", "episode")}
    np.testing.assert_allclose(share["frame"], [2 / 60, 50 / 60, 8 / 60], atol=0.02)
    np.testing.assert_allclose(share["episode"], [1 / 3] * 3, atol=0.02)
    assert set(dataset.sample(rng, 5000, "episode").tolist()) == set(range(60))  # every frame, none outside
    with pytest.raises(ValueError, match="sampling must be one of"):
        dataset.sample(rng, 1, "task")
    with pytest.raises(ValueError, match="sampling must be one of"):
        TrainConfig(sampling="task")


def test_structured_goals_are_kept_and_a_store_older_than_them_still_opens(tmp_path):
    import shutil

    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    lift = {"skill": "lift", "color": "red", "shape": "cube"}
    store.add_episode(episode(3), task="lift the red cube", seed=0, success=True, goal=lift)
    store.add_episode(episode(4), task="close it", seed=1, success=True)
    store.add_episode(episode(2), task="pick up the red cube", seed=2, success=True, goal=dict(lift))
    ro = EpisodeStore.open(tmp_path / "s.zarr")
    assert ro.episode_goals() == [lift, None, lift] and ro.goals == [lift]  # one table entry per distinct goal
    assert ro.episode(2)["goal"] == lift
    kept = store.drop_episodes([0])
    assert kept.episode_goals() == [None, lift]

    # a store written before goals existed: read-only it reads as goal-less, opened to append it gains the array
    shutil.rmtree(tmp_path / "s.zarr" / "meta" / "episode_goal_index")
    assert EpisodeStore.open(tmp_path / "s.zarr").episode_goals() == [None, None]
    assert EpisodeStore.open(tmp_path / "s.zarr").episode(1)["goal"] is None
    old = EpisodeStore.open(tmp_path / "s.zarr", "a")
    old.add_episode(episode(2), task="lift the red cube", seed=3, success=True, goal=lift)
    assert EpisodeStore.open(tmp_path / "s.zarr").episode_goals() == [None, None, lift]

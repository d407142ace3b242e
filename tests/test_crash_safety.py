"""SIGKILL while recording: the store reopens with every committed episode intact and readable."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from vla.datasets.episode_store import EpisodeStore

WRITER = """
import sys, numpy as np
from pathlib import Path
from vla.datasets.episode_store import EpisodeStore
from vla.envs.metaworld import metaworld_schema
sys.path.insert(0, {tests!r})
from test_crash_safety import synthetic_episode
path = Path({path!r})
store = EpisodeStore.open(path, "a") if path.exists() else EpisodeStore.create(path, metaworld_schema(32, "corner2"))
store.repair()
i = store.num_episodes
while True:
    store.add_episode(synthetic_episode(i), task=f"task {{i % 3}}", seed=i, success=True)
    i += 1
"""


def synthetic_episode(i: int) -> dict:
    n = 20 + (i * 37) % 90  # lengths vary so episodes straddle the 64-frame image chunks
    rng = np.random.default_rng(i)
    return {"observation.images.corner2": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            "observation.state": rng.standard_normal((n, 4)).astype(np.float32),
            "action": rng.standard_normal((n, 4)).astype(np.float32)}


def wait_for_episodes(path, n: int, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            if EpisodeStore.open(path).num_episodes >= n:
                return
        except (FileNotFoundError, KeyError):
            pass  # not created yet
        time.sleep(0.05)
    raise TimeoutError(f"{path}: fewer than {n} episodes after {timeout} s")


def kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_write_loses_nothing_committed(tmp_path):
    """A writer that does nothing but append is killed at random moments, so most kills land mid-write."""
    path, rng = tmp_path / "s.zarr", np.random.default_rng(0)
    script = WRITER.format(tests=os.path.dirname(__file__), path=str(path))
    committed = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
        wait_for_episodes(path, committed + 2, proc)
        time.sleep(rng.uniform(0.0, 0.05))
        kill(proc)
        store = EpisodeStore.open(path)  # opens without repair
        assert store.num_episodes >= committed + 2
        committed = store.num_episodes
        for i in range(committed):
            ep, want = store.episode(i), synthetic_episode(i)
            assert (ep["seed"], ep["task"]) == (i, f"task {i % 3}")
            for key, value in want.items():
                np.testing.assert_array_equal(ep[key], value, err_msg=f"episode {i} {key}")
    EpisodeStore.open(path, "a").repair()
    assert EpisodeStore.open(path, "a")._tail_report() == []


def test_sigkill_during_vla_record_keeps_saved_episodes(tmp_path):
    """Kill `vla-record` in the middle of an episode; the saved ones replay exactly from their seeds."""
    from vla.envs.metaworld import MetaWorldExpert
    from vla.envs.registry import make_env
    from vla.record import run_episode

    path = tmp_path / "demos.zarr"
    cmd = [sys.executable, "-m", "vla.cli.record", "tasks=[drawer-close-v3]", "episodes=40", f"out={path}",
           "image_size=32", "max_episode_steps=150"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_episodes(path, 2, proc, timeout=240)
    time.sleep(0.3)  # an episode takes ~1 s to roll out: this lands inside the next one
    kill(proc)
    store = EpisodeStore.open(path)
    assert store.num_episodes >= 2
    env = make_env("drawer-close-v3", image_size=32, max_episode_steps=150)
    for i in range(store.num_episodes):
        saved = store.episode(i)
        replay, success, _ = run_episode(env, MetaWorldExpert(env), saved["seed"])
        assert success and saved["success"]
        for key in store.keys:
            np.testing.assert_array_equal(saved[key], replay[key], err_msg=f"episode {i} {key}")
    # vla-record trims the killed run's tail and resumes: one more demonstration, from the next seed
    n, seeds = store.num_episodes, store.episode_meta("episode_seed").tolist()
    subprocess.run([*cmd[:4], f"episodes={n + 1}", *cmd[5:]], check=True, capture_output=True)
    resumed = EpisodeStore.open(path)
    assert resumed.num_episodes == n + 1
    assert resumed.episode_meta("episode_seed").tolist()[:n] == seeds
    assert resumed.episode_meta("episode_seed")[n] > max(seeds)

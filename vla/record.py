"""Record scripted-expert demonstrations into an episode store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla.datasets.episode_store import EpisodeStore
from vla.envs import make_env
from vla.policies.protocol import batch_observation
from vla.policies.scripted import MetaWorldExpert
from vla.schema import TASK_KEY


@dataclass
class RecordConfig:
    tasks: list[str] = field(default_factory=lambda: ["drawer-close-v3"])
    episodes: int = 30  # attempts per task; failed attempts are dropped and counted
    out: str = "data/demos.zarr"
    image_size: int = 96
    camera: str = "corner2"
    max_episode_steps: int = 500
    seed: int = 0  # episode i of a task uses seed `seed + i`

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if not self.tasks:
            raise ValueError("tasks must name at least one task")


def run_episode(env, policy, seed: int) -> tuple[dict, bool]:
    obs, _ = env.reset(seed=seed)
    policy.reset()
    frames: dict[str, list] = {k: [] for k in obs if k != TASK_KEY}
    frames["action"] = []
    success = False
    while True:
        action = policy.select_action(batch_observation(obs))[0]
        for k in obs:
            if k != TASK_KEY:
                frames[k].append(obs[k])
        frames["action"].append(action)
        obs, _, terminated, truncated, info = env.step(action)
        success = bool(info["is_success"])
        if terminated or truncated:
            break
    return {k: np.stack(v) for k, v in frames.items()}, success


def record(cfg: RecordConfig) -> dict:
    out = Path(cfg.out)
    store = None
    report: dict[str, dict[str, int]] = {}
    bar = tqdm(total=len(cfg.tasks) * cfg.episodes, desc="recording", unit="ep")
    for task in cfg.tasks:
        env = make_env(task, image_size=cfg.image_size, camera=cfg.camera, max_episode_steps=cfg.max_episode_steps)
        if store is None:
            store = EpisodeStore.open(out, "a") if out.exists() else EpisodeStore.create(out, env.schema)
            for trimmed in store.repair():  # what an interrupted earlier run left uncommitted
                print(f"{out}: trimmed the uncommitted tail of an interrupted run: {trimmed}")
            env.schema.require_compatible(store.schema, f"store {out}")
        expert = MetaWorldExpert(env)
        kept = failed = 0
        for i in range(cfg.episodes):
            episode, success = run_episode(env, expert, cfg.seed + i)
            if success:
                store.add_episode(episode, task=env.instruction, seed=cfg.seed + i, success=True, env_task=task,
                                  source="sim:metaworld")
                kept += 1
            else:
                failed += 1
            bar.update(1)
            bar.set_postfix(task=task, kept=kept, failed=failed)
        env.close()
        report[task] = {"kept": kept, "failed": failed}
    bar.close()
    return {"store": str(out), "tasks": report, **store.summary()}

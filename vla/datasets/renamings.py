"""The keypoint head's first frames given another object's name (VLAConfig.final_state_renamed).

A tabletop scene holds four objects, and its demonstration names one. Its first frames, given an instruction
naming another object of the same scene in the same template, would have been followed by a hand that ends and
grasps that much farther along (Suite.renamings computes both from the scene its seed draws). Relabelled so,
each scene is asked for every object it trains as a target: the same color word meets both shapes, and the shape
word both colors, in one image. Labels only; what the policy sees is unchanged.
"""

from __future__ import annotations

import numpy as np

from vla.envs import suites_by_task
from vla.envs.suite import Renaming
from vla.schema import TASK_KEY


class EpisodeRenamings:
    """Each episode's renamings (its own instruction among them), from its simulator task and seed."""

    def __init__(self, source):
        seeds, suite_of_task = source.episode_meta("episode_seed").tolist(), suites_by_task()
        self.per_episode: list[list[Renaming]] = []
        for e, (env_task, instruction, seed) in enumerate(zip(source.episode_env_tasks(), source.episode_tasks(),
                                                              seeds, strict=True)):
            # none without a seed or a task of a suite here (a LeRobotDataset's)
            suite = suite_of_task.get(env_task) if seed >= 0 else None
            renamings = suite.renamings(env_task, int(seed)) if suite is not None else []
            if renamings and instruction not in {r.instruction for r in renamings}:
                raise ValueError(f"{source.path}: episode {e} ({env_task}, seed {seed}) was given {instruction!r}, "
                                 "which its suite no longer gives that seed: the store was recorded under other "
                                 "splits or scenes, and its renamings would be another scene's")
            self.per_episode.append(renamings)
        if not any(self.per_episode):
            raise ValueError(f"{source.path}: model.final_state_renamed needs episodes that a suite can rename "
                             "(simulated, with their seeds, in scenes of several objects: tabletop); none here can")

    def instructions(self) -> list[str]:
        """Every instruction a renaming gives (the compiled prompt length must hold them)."""
        return sorted({r.instruction for renamings in self.per_episode for r in renamings})

    def apply(self, batch: dict, episodes: np.ndarray, share: float, rng: np.random.Generator) -> dict:
        """A first-frame batch (ChunkDataset.get_batch) of these episodes with that share of its rows renamed:
        each to one of its episode's renamings drawn uniformly (its own among them), instruction and targets."""
        batch = {**batch, TASK_KEY: list(batch[TASK_KEY]), "final_state": batch["final_state"].copy(),
                 "keyframe_state": batch["keyframe_state"].copy()}
        for row, e in enumerate(episodes):
            renamings = self.per_episode[e]
            if not renamings or rng.random() >= share:
                continue
            r = renamings[rng.integers(len(renamings))]
            batch[TASK_KEY][row] = r.instruction
            batch["final_state"][row] += r.final_shift
            batch["keyframe_state"][row] += r.keyframe_shift
        return batch

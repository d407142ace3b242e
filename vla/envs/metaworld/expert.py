"""Scripted experts from `metaworld.policies`. They read privileged simulator state, which is allowed for
demonstrators and never for learned policies."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from vla.envs.metaworld.env import MetaWorldEnv, expert_policy_class


# Tasks whose success is the fingers' center (tcp_center) within reach of the goal. Meta-World's experts for them
# steer the hand to the goal, which leaves the fingers ~4.5 cm below it: the last frame of a demonstration (it ends
# at the first success) is on the edge of the 5-cm success ball, and one continued after it (RecordConfig.after_success)
# settles with the fingers 4-4.5 cm off, so a policy imitating it has almost no margin (README, MT10). These experts
# see the goal moved up by the hand's offset from the fingers, and bring the fingers to it.
FINGERS_TO_GOAL = ("reach-v3", "reach-wall-v3")
# Tasks whose success is the carried object within reach of the goal. Meta-World's experts for them steer the hand
# to the goal with the object held ~4 cm below it: run on past their first success they settle with the object
# 1.4 to 5.8 cm from the goal (pick-place's success distance is 7 cm), and their demonstrations head for a point
# that far off. These experts see the goal moved by the hand's offset from the object, and bring the object to
# it (0.1 to 0.8 cm; `benchmarks/probes/expert_settle.py`). The goal is read only once the object is grasped.
OBJECT_TO_GOAL = ("pick-place-v3", "pick-place-wall-v3", "pick-out-of-hole-v3")


class MetaWorldExpert:
    chunk_size = n_action_steps = 1  # decides every step from the simulator state
    accepts_prefix = False
    meta: ClassVar[dict] = {}

    def __init__(self, env: MetaWorldEnv):
        self.env = env
        self.schema = env.schema
        self._expert = expert_policy_class(env.task)()

    def reset(self) -> None:
        pass

    def select_action(self, obs: dict) -> np.ndarray:
        """A batch of one (the expert drives the one env it reads): -> (1, 4)."""
        state = self.env.privileged_observation()
        if self.env.task in FINGERS_TO_GOAL + OBJECT_TO_GOAL:
            state = state.copy()
            aimed = self.env.fingers_center() if self.env.task in FINGERS_TO_GOAL else state[4:7]  # the object
            state[-3:] += state[:3] - aimed
        action = self._expert.get_action(state)
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)[None]

    def predict_chunk(self, obs: dict) -> np.ndarray:
        return self.select_action(obs)[:, None]

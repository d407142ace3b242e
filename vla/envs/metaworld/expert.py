"""Scripted experts from `metaworld.policies`. They read privileged simulator state, which is allowed for
demonstrators and never for learned policies."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from vla.envs.metaworld.env import MetaWorldEnv, expert_policy_class


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
        action = self._expert.get_action(self.env.privileged_observation())
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)[None]

    def predict_chunk(self, obs: dict) -> np.ndarray:
        return self.select_action(obs)[:, None]

"""The one Policy protocol that the evaluator and the robot runtime serve.

`predict_chunk(obs)` returns the next H actions for a batch of observations; `select_action(obs)` keeps
a queue of them, replanning when it runs dry; `reset()` clears the queue at an episode start. Every policy
says how long its chunks are (`chunk_size`), how many of them it executes before replanning
(`n_action_steps`), and what it knows of its training (`meta`: e.g. the simulator tasks it trained on), so the
server and the controller read them instead of probing.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from vla.schema import Schema


@runtime_checkable
class Policy(Protocol):
    schema: Schema
    chunk_size: int
    n_action_steps: int
    meta: dict

    def reset(self) -> None: ...

    def select_action(self, obs: dict) -> np.ndarray: ...

    def predict_chunk(self, obs: dict) -> np.ndarray:
        """obs: a batch (leading dim B on arrays, list of str for `task`). Returns (B, H, action_dim)."""
        ...


def batch_observation(obs: dict) -> dict:
    """One observation -> a batch of one."""
    return {k: ([v] if isinstance(v, str) else np.asarray(v)[None]) for k, v in obs.items()}

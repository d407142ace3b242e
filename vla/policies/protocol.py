"""The one Policy protocol that the evaluator and the robot runtime serve.

`predict_chunk(obs)` returns the next H actions for a batch of observations; `select_action(obs)` keeps
a queue of them, replanning when it runs dry; `reset()` clears the queue at an episode start. Every policy
says how long its chunks are (`chunk_size`), how many of them it executes before replanning
(`n_action_steps`), whether it can condition a chunk on given first actions (`accepts_prefix`, for
real-time chunking), and what it knows of its training (`meta`: e.g. the simulator tasks it trained on), so
the server and the controller read them instead of probing.
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
    accepts_prefix: bool
    meta: dict

    def reset(self) -> None: ...

    def select_action(self, obs: dict) -> np.ndarray: ...

    def predict_chunk(self, obs: dict, prefix: np.ndarray | None = None) -> np.ndarray:
        """obs: a batch (leading dim B on arrays, list of str for `task`). Returns (B, H, action_dim).

        prefix (only where `accepts_prefix`): (B, k, action_dim), the chunk's first k actions, given."""
        ...


def batch_observation(obs: dict) -> dict:
    """One observation -> a batch of one."""
    return {k: ([v] if isinstance(v, str) else np.asarray(v)[None]) for k, v in obs.items()}


def check_prefix(prefix, batch: int, chunk_size: int, action_dim: int) -> np.ndarray:
    """A prefix of given actions as (batch, k, action_dim) float32 with k < chunk_size, all finite, or a
    ValueError naming what is wrong."""
    prefix = np.asarray(prefix, np.float32)
    if prefix.ndim != 3 or prefix.shape[0] != batch or prefix.shape[2] != action_dim or not prefix.shape[1] < chunk_size:
        raise ValueError(f"prefix must be (batch {batch}, k < {chunk_size}, {action_dim}) actions, got "
                         f"shape {prefix.shape}")
    if not np.all(np.isfinite(prefix)):
        raise ValueError("prefix holds a non-finite action")
    return prefix

"""The observation/action schema: one description of the keys a policy consumes and produces.

Envs, datasets, policies and the runtime validate against it and fail with a message that names the key,
the expected and the received shape/dtype. Key names follow LeRobot's (`observation.images.<camera>`,
`observation.state`, `action`, `task`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
TASK_KEY = "task"


class SchemaError(ValueError):
    """A sample does not match the schema; the message names the key and both shapes/dtypes."""


@dataclass(frozen=True)
class Feature:
    key: str
    shape: tuple[int, ...]
    dtype: str
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))
            if len(self.names) != self.shape[-1]:
                raise SchemaError(f"feature {self.key!r}: {len(self.names)} names for last dim {self.shape[-1]}")
        np.dtype(self.dtype)  # raises on an unknown dtype name

    def check(self, value: Any, batched: bool = False) -> None:
        arr = np.asarray(value)
        shape = arr.shape[1:] if batched else arr.shape
        if shape != self.shape:
            raise SchemaError(f"{self.key!r}: expected shape {self.shape}, got {shape}")
        if arr.dtype != np.dtype(self.dtype):
            raise SchemaError(f"{self.key!r}: expected dtype {self.dtype}, got {arr.dtype}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise SchemaError(f"{self.key!r}: contains NaN or inf")

    def to_json(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["names"] = list(self.names) if self.names is not None else None
        return d


@dataclass(frozen=True)
class Schema:
    """Observation features (images, state), the action feature, and whether a task string is required."""

    observation: dict[str, Feature]
    action: Feature
    has_task: bool = True
    fps: float = 80.0
    extra: dict = field(default_factory=dict)

    @property
    def image_keys(self) -> list[str]:
        return [k for k in self.observation if k.startswith(IMAGE_PREFIX)]

    @property
    def features(self) -> dict[str, Feature]:
        """Every array feature, observation and action, by key."""
        return {**self.observation, ACTION_KEY: self.action}

    @property
    def state_dim(self) -> int:
        return self.observation[STATE_KEY].shape[0]

    @property
    def action_dim(self) -> int:
        return self.action.shape[0]

    def validate_observation(self, obs: dict, batched: bool = False) -> None:
        for key, feat in self.observation.items():
            if key not in obs:
                raise SchemaError(f"observation is missing key {key!r} (has {sorted(obs)})")
            feat.check(obs[key], batched=batched)
        if self.has_task:
            if TASK_KEY not in obs:
                raise SchemaError(f"observation is missing key {TASK_KEY!r} (the instruction)")
            tasks = obs[TASK_KEY] if batched else [obs[TASK_KEY]]
            if not all(isinstance(t, str) for t in tasks):
                raise SchemaError(f"{TASK_KEY!r}: expected str, got {type(tasks[0]).__name__}")

    def validate_action(self, action: Any, batched: bool = False) -> None:
        self.action.check(action, batched=batched)

    def fake_observation(self, rng: np.random.Generator | None = None, task: str = "do the task") -> dict:
        rng = rng or np.random.default_rng(0)
        obs: dict[str, Any] = {}
        for key, feat in self.observation.items():
            if np.dtype(feat.dtype) == np.uint8:
                obs[key] = rng.integers(0, 256, feat.shape, dtype=np.uint8)
            else:
                obs[key] = rng.standard_normal(feat.shape).astype(feat.dtype)
        if self.has_task:
            obs[TASK_KEY] = task
        return obs

    def to_json(self) -> dict:
        return {
            "observation": {k: f.to_json() for k, f in self.observation.items()},
            "action": self.action.to_json(),
            "has_task": self.has_task,
            "fps": self.fps,
        }

    @classmethod
    def from_json(cls, d: dict) -> Schema:
        try:
            obs = {k: Feature(**f) for k, f in d["observation"].items()}
            return cls(observation=obs, action=Feature(**d["action"]), has_task=d["has_task"], fps=d["fps"])
        except KeyError as e:
            raise SchemaError(f"schema JSON is missing key {e.args[0]!r}") from None

    def require_compatible(self, other: Schema, what: str) -> None:
        """Fail naming the first key on which `other` (e.g. a dataset) differs from this (e.g. a policy)."""
        for key, feat in self.observation.items():
            got = other.observation.get(key)
            if got is None:
                raise SchemaError(f"{what} has no {key!r}; it has {sorted(other.observation)}")
            if (got.shape, got.dtype) != (feat.shape, feat.dtype):
                raise SchemaError(
                    f"{what} {key!r}: expected {feat.shape} {feat.dtype}, got {got.shape} {got.dtype}"
                )
        if (other.action.shape, other.action.dtype) != (self.action.shape, self.action.dtype):
            raise SchemaError(
                f"{what} {ACTION_KEY!r}: expected {self.action.shape} {self.action.dtype}, "
                f"got {other.action.shape} {other.action.dtype}"
            )

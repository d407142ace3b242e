"""The suite contract: what a family of simulated tasks gives everything else in the package.

Recording, evaluation, the sim robot and the benchmarks reach an env only through a Suite, so a new suite is
one folder under `vla/envs/` and nothing outside it is special-cased (diffusion_policy's task side, an env
runner and a task config per task family, is the model).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from vla.schema import IMAGE_PREFIX, Schema


@dataclass(frozen=True)
class ActionLimits:
    """What the safety guard needs to know of a suite's robot: command range, and per dimension whether a stop
    holds the last command (a gripper) or goes to `rest` (a displacement goes to 0)."""

    low: np.ndarray
    high: np.ndarray
    hold: np.ndarray
    rest: np.ndarray


@dataclass(frozen=True)
class Renaming:
    """An episode's first frames given another instruction: one naming another object of the same scene, and where
    the demonstration's state would then end (`final_shift`) and first change its gripper (`keyframe_shift`), as
    offsets from where it did (state dimensions). A training-time relabel for the keypoint head's targets
    (VLAConfig.final_state_renamed); the policy's inputs stay the image, the state and the instruction."""

    instruction: str
    final_shift: np.ndarray
    keyframe_shift: np.ndarray


class Suite(ABC):
    """A family of tasks. Its envs report `info["is_success"]` every step, and may report `info["outcome"]`, a
    short category of how the episode is going (tabletop: which object the hand went to); evaluation counts
    each episode's last outcome per task beside its success rate."""

    name: str  # also the episode store's source tag: "sim:<name>"
    max_episode_steps: int  # the suite's own episode limit, used when a caller gives none
    cameras: tuple[str, ...]  # every camera an env of the suite can render
    default_cameras: tuple[str, ...]  # those its default schema has
    # The hand starts at one fixed point (Meta-World): its envs take reset(options={"start_noise": m}), which
    # recording uses to draw the start per episode (RecordConfig.start_noise). False for a suite that draws it
    # per episode itself (tabletop).
    fixed_start: bool = False

    @abstractmethod
    def tasks(self) -> list[str]:
        """Every env task name of the suite."""

    @abstractmethod
    def groups(self) -> dict[str, list[str]]:
        """Named task lists (benchmark splits, difficulty groups): usable wherever a task list is."""

    @abstractmethod
    def default_schema(self, image_size: int = 96, cameras: tuple[str, ...] | None = None) -> Schema:
        """The observation/action schema an env of this suite produces at `image_size` with `cameras`
        (default: `default_cameras`)."""

    def check_cameras(self, cameras: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
        """`cameras` (None: the default ones), each known to the suite; raises naming the unknown."""
        if cameras is None:
            return self.default_cameras
        return require_known_cameras(tuple(cameras), self.cameras, f"{self.name} renders", "asked for")

    @abstractmethod
    def make_env(self, task: str, schema: Schema | None = None, max_episode_steps: int | None = None) -> gym.Env:
        """An env of `task` that produces `schema` (default: `default_schema()`); raises naming what does not fit."""

    @abstractmethod
    def make_expert(self, env: gym.Env):
        """The scripted expert (a Policy) for an env of this suite; it may read privileged simulator state."""

    @abstractmethod
    def limits(self, env: gym.Env) -> ActionLimits:
        """The robot's command limits for the safety guard, and which dimensions hold on a stop."""

    @abstractmethod
    def instructions(self, task: str) -> list[str]:
        """Every instruction an episode of `task` can be given (one for a Meta-World task, many for a
        grounding task whose episodes each draw their own)."""

    def expert_tag(self, task: str) -> str:
        """A short name for the expert `task` is recorded with, where it differs from the one the suite's earlier
        stores were recorded with, or "": it joins the store's source tag, so a resumed recording cannot mix the two."""
        return ""

    def renamings(self, task: str, seed: int) -> list[Renaming]:
        """The instructions an episode of `task` at `seed` could have been given in the same scene, each naming an
        object that the task trains as a target (its own goal's among them), with the keypoint head's targets
        moved to it (`Renaming`); [] for a suite whose scenes hold one object per task (Meta-World)."""
        return []

    def episode_goal(self, task: str, seed: int) -> dict | None:
        """The structured goal (as `reset`'s `info["goal"]`) an episode of `task` is given at `seed`, computed without
        an env, or None for a suite whose tasks have no per-episode goal. Recording checks a resumed store's episodes
        against it, so a store recorded under other splits is refused, not trained on."""
        return None


def checked_action(action, dim: int) -> np.ndarray:
    """An env's action as float32 clipped to [-1, 1]; raises naming a wrong shape or a NaN/inf (never clipped
    into a number)."""
    action = np.asarray(action, dtype=np.float32)
    if action.shape != (dim,):
        raise ValueError(f"action: expected shape ({dim},), got {action.shape}")
    if not np.all(np.isfinite(action)):
        raise ValueError(f"action contains NaN or inf: {action}")
    return np.clip(action, -1.0, 1.0)


def displacement_limits(space) -> ActionLimits:
    """Limits of an arm commanded by end-effector displacements plus a gripper (Meta-World's action space): a
    stop sends zero displacement and holds the gripper's last command."""
    hold = np.zeros(space.shape, bool)
    hold[-1] = True
    return ActionLimits(low=space.low, high=space.high, hold=hold, rest=np.zeros(space.shape))


def cameras_of(schema: Schema, known: tuple[str, ...], build, env: str) -> tuple[int, tuple[str, ...]]:
    """(image_size, cameras) of a schema that an env rendering `known` cameras can produce, `build(image_size,
    cameras)` being that env's schema; raises naming what does not fit."""
    cameras = require_known_cameras(tuple(k.removeprefix(IMAGE_PREFIX) for k in schema.image_keys), known,
                                    f"{env} renders", "the schema asks for")
    image_size = schema.observation[schema.image_keys[0]].shape[0]
    schema.require_compatible(build(image_size, cameras), env)
    return image_size, cameras


def require_known_cameras(cameras: tuple[str, ...], known: tuple[str, ...], who: str, asking: str) -> tuple[str, ...]:
    """`cameras` if there is at least one and each is in `known`; else a ValueError naming both."""
    if not cameras or any(c not in known for c in cameras):
        raise ValueError(f"{who} cameras {list(known)}; {asking} {list(cameras)}")
    return cameras

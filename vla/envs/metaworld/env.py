"""Meta-World v3 tasks as gymnasium envs that speak the vla schema.

Observations: one camera image rendered at the model's resolution, proprioception (end-effector xyz and
gripper opening, as lerobot's `agent_pos`), and the instruction. The simulator's object and goal poses stay
inside: only the scripted expert may read them, through `privileged_observation()`.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from vla.envs.render import FastRenderer
from vla.envs.suite import checked_action
from vla.schema import ACTION_KEY, IMAGE_PREFIX, STATE_KEY, TASK_KEY, Feature, Schema

STATE_NAMES = ("ee_x", "ee_y", "ee_z", "gripper")
ACTION_NAMES = ("dx", "dy", "dz", "gripper")
CONTROL_HZ = 80.0  # Meta-World: frame_skip 5 x timestep 0.0025 s


@functools.cache
def _metaworld():
    # Imported lazily: metaworld builds its task tables at import time (~1 s).
    import metaworld
    from lerobot.envs.metaworld import TASK_DESCRIPTIONS, TASK_POLICY_MAPPING
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return metaworld, ALL_V3_ENVIRONMENTS, TASK_DESCRIPTIONS, TASK_POLICY_MAPPING


def task_names() -> list[str]:
    return sorted(_metaworld()[1])


def instruction(task: str) -> str:
    return _metaworld()[2][task]


@functools.cache
def _task_spec(task: str):
    metaworld = _metaworld()[0]
    return metaworld.MT1(task, seed=42).train_tasks[0]


def metaworld_schema(image_size: int, camera: str) -> Schema:
    return Schema(
        observation={
            IMAGE_PREFIX + camera: Feature(IMAGE_PREFIX + camera, (image_size, image_size, 3), "uint8"),
            STATE_KEY: Feature(STATE_KEY, (4,), "float32", STATE_NAMES),
        },
        action=Feature(ACTION_KEY, (4,), "float32", ACTION_NAMES),
        fps=CONTROL_HZ,
    )


def schema_camera(schema: Schema) -> tuple[int, str]:
    """(image_size, camera) of a schema that a Meta-World env can produce (the inverse of `metaworld_schema`);
    raises naming what does not fit."""
    if len(schema.image_keys) != 1:
        raise ValueError(f"Meta-World renders one camera; the schema has {schema.image_keys}")
    key = schema.image_keys[0]
    image_size, camera = schema.observation[key].shape[0], key.removeprefix(IMAGE_PREFIX)
    schema.require_compatible(metaworld_schema(image_size, camera), "the Meta-World env")
    return image_size, camera


class MetaWorldEnv(gym.Env):
    """One Meta-World v3 task. `reset(seed=s)` decides the task variation (object and goal placement)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(
        self,
        task: str,
        image_size: int = 96,
        camera: str = "corner2",
        max_episode_steps: int = 500,
        fast_render: bool = True,
    ):
        _, envs, descriptions, _ = _metaworld()
        if task not in envs:
            raise KeyError(f"unknown Meta-World task {task!r}; known: {sorted(envs)}")
        self.task = task
        self.instruction = descriptions[task]
        self.camera = camera
        self.image_key = IMAGE_PREFIX + camera
        self.max_episode_steps = max_episode_steps
        self.schema = metaworld_schema(image_size, camera)

        env = envs[task]()
        env.set_task(_task_spec(task))
        env._freeze_rand_vec = False  # sample a new variation at each reset ...
        env.seeded_rand_vec = True  # ... from env.np_random, so the reset seed decides it
        env.max_path_length = max_episode_steps
        if camera == "corner2":
            # The camera position lerobot uses for Meta-World, so our frames match its datasets.
            env.model.cam_pos[env.model.camera("corner2").id] = [0.75, 0.075, 0.7]
        self._env = env
        self._renderer = FastRenderer(env.model, image_size, image_size, camera, fast=fast_render)
        self._raw_obs: np.ndarray | None = None
        self._steps = 0

        self.observation_space = gym.spaces.Dict(
            {
                self.image_key: gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
                STATE_KEY: gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
                TASK_KEY: gym.spaces.Text(max_length=256),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    def _observation(self) -> dict[str, Any]:
        image = self._renderer.render(self._env.data)
        if self.camera == "corner2":
            image = np.ascontiguousarray(image[::-1, ::-1])  # this camera renders upside down
        state = self._raw_obs[:4].astype(np.float32)
        return {self.image_key: image, STATE_KEY: state, TASK_KEY: self.instruction}

    def privileged_observation(self) -> np.ndarray:
        """The full 39-d Meta-World state (object and goal poses). For scripted experts only."""
        assert self._raw_obs is not None, "reset() first"
        return self._raw_obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
        self._raw_obs, _ = self._env.reset()
        # Meta-World re-places its target sites only in step(); without this the first frame shows the
        # previous episode's sites and the same seed would render differently.
        for site in self._env._target_site_config:
            self._env._set_pos_site(*site)
        self._steps = 0
        return self._observation(), {"is_success": False, "seed": seed}

    def step(self, action: np.ndarray):
        self._raw_obs, reward, _, _, info = self._env.step(checked_action(action, 4))
        self._steps += 1
        success = bool(info.get("success", 0.0))
        truncated = self._steps >= self.max_episode_steps
        return self._observation(), float(reward), success, truncated, {"is_success": success}

    def render(self) -> np.ndarray:
        return self._observation()[self.image_key]

    def close(self) -> None:
        self._renderer.close()
        self._env.close()


def expert_policy_class(task: str):
    return _metaworld()[3][task]

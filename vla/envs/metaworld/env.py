"""Meta-World v3 tasks as gymnasium envs that speak the vla schema.

Observations: the images of one or more cameras rendered at the model's resolution, proprioception (end-effector xyz and
gripper opening, as lerobot's `agent_pos`), and the instruction. The simulator's object and goal poses stay
inside: only the scripted expert may read them, through `privileged_observation()`.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from vla.envs.render import FastRenderer
from vla.envs.suite import cameras_of, checked_action
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


# The cameras of Meta-World's Sawyer scene. corner2 is the one lerobot and the published MT50 rows use; from it
# alone a goal site's depth along the camera ray is not in the image (reach and pick-place draw goal heights from
# 5 to 30 cm). gripperPOV rides on the hand (a wrist camera); behindGripper follows the hand from 0.5 m behind
# and above it; topview, corner and corner3 are fixed.
CAMERAS = ("corner2", "gripperPOV", "behindGripper", "topview", "corner", "corner3")


def metaworld_schema(image_size: int, cameras: str | tuple[str, ...] = "corner2") -> Schema:
    cameras = (cameras,) if isinstance(cameras, str) else tuple(cameras)
    images = {IMAGE_PREFIX + c: Feature(IMAGE_PREFIX + c, (image_size, image_size, 3), "uint8") for c in cameras}
    return Schema(
        observation={**images, STATE_KEY: Feature(STATE_KEY, (4,), "float32", STATE_NAMES)},
        action=Feature(ACTION_KEY, (4,), "float32", ACTION_NAMES),
        fps=CONTROL_HZ,
    )


def schema_cameras(schema: Schema) -> tuple[int, tuple[str, ...]]:
    """(image_size, cameras) of a schema the Meta-World env can produce; raises naming what does not fit."""
    return cameras_of(schema, CAMERAS, metaworld_schema, "the Meta-World env")


class MetaWorldEnv(gym.Env):
    """One Meta-World v3 task. `reset(seed=s)` decides the task variation (object and goal placement), and
    `reset(seed=s, options={"start_noise": m})` also moves the hand's start, Meta-World's one fixed point, by a
    uniform draw within +-m metres per axis (`vla.record.RecordConfig.start_noise`)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(
        self,
        task: str,
        image_size: int = 96,
        cameras: str | tuple[str, ...] = "corner2",
        max_episode_steps: int = 500,
        fast_render: bool = True,
    ):
        _, envs, descriptions, _ = _metaworld()
        if task not in envs:
            raise KeyError(f"unknown Meta-World task {task!r}; known: {sorted(envs)}")
        self.task = task
        self.instruction = descriptions[task]
        self.schema = metaworld_schema(image_size, cameras)
        _, self.cameras = schema_cameras(self.schema)
        self.image_key = self.schema.image_keys[0]  # what render() shows
        self.max_episode_steps = max_episode_steps

        env = envs[task]()
        env.set_task(_task_spec(task))
        env._freeze_rand_vec = False  # sample a new variation at each reset ...
        env.seeded_rand_vec = True  # ... from env.np_random, so the reset seed decides it
        env.max_path_length = max_episode_steps
        # The corner2 position lerobot uses for Meta-World, so our frames match its datasets.
        env.model.cam_pos[env.model.camera("corner2").id] = [0.75, 0.075, 0.7]
        self._env = env
        self._hand_start = np.array(env.hand_init_pos, dtype=float)  # the task's own; a reset without noise uses it
        self._renderers = {c: FastRenderer(env.model, image_size, image_size, c, fast=fast_render)
                           for c in self.cameras}
        self._raw_obs: np.ndarray | None = None
        self._task_info: dict | None = None  # Meta-World's own info at the last step
        self._steps = 0

        self.observation_space = gym.spaces.Dict(
            {
                **{key: gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8) for key in self.schema.image_keys},
                STATE_KEY: gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
                TASK_KEY: gym.spaces.Text(max_length=256),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    def _observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = {}
        for camera, renderer in self._renderers.items():
            image = renderer.render(self._env.data)
            if camera == "corner2":
                image = np.ascontiguousarray(image[::-1, ::-1])  # this camera renders upside down
            obs[IMAGE_PREFIX + camera] = image
        return {**obs, STATE_KEY: self._raw_obs[:4].astype(np.float32), TASK_KEY: self.instruction}

    def privileged_observation(self) -> np.ndarray:
        """The full 39-d Meta-World state (object and goal poses). For scripted experts only."""
        assert self._raw_obs is not None, "reset() first"
        return self._raw_obs

    def fingers_center(self) -> np.ndarray:
        """Where Meta-World measures the gripper for success (its tcp_center, between the finger pads): ~4.5 cm
        below the hand that the state and the experts' targets use. For scripted experts only."""
        return np.array(self._env.tcp_center, dtype=float)

    def object_to_goal(self) -> float:
        """The distance, in m, that Meta-World judged the task's success by at the last step (its own
        `obj_to_target`: the object to the goal; for peg-insert-side the peg's head, y and z doubled). For probes."""
        assert self._task_info is not None, "step() first"
        return float(self._task_info["obj_to_target"])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
        noise = float((options or {}).get("start_noise", 0.0))
        if not noise >= 0:
            raise ValueError(f"options['start_noise'] must be >= 0 metres, got {noise}")
        # drawn from the env's own generator, which the reset seed decides: a seed gives one start
        self._env.hand_init_pos = self._hand_start + (self.np_random.uniform(-noise, noise, 3) if noise else 0.0)
        self._raw_obs, _ = self._env.reset()
        # Meta-World re-places its target sites only in step(); without this the first frame shows the
        # previous episode's sites and the same seed would render differently.
        for site in self._env._target_site_config:
            self._env._set_pos_site(*site)
        self._steps, self._task_info = 0, None
        return self._observation(), {"is_success": False, "seed": seed}

    def step(self, action: np.ndarray):
        self._raw_obs, reward, _, _, info = self._env.step(checked_action(action, 4))
        self._steps, self._task_info = self._steps + 1, info
        success = bool(info.get("success", 0.0))
        truncated = self._steps >= self.max_episode_steps
        return self._observation(), float(reward), success, truncated, {"is_success": success}

    def render(self) -> np.ndarray:
        return self._observation()[self.image_key]

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._env.close()


def expert_policy_class(task: str):
    return _metaworld()[3][task]

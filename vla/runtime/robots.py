"""Robots the controller drives: `sim` (a MuJoCo env stepped in real time), `lerobot` (any LeRobot Robot
built from its config, imported only when used) and `mock` (for tests).

A robot has a `schema` (what it observes and accepts), `limits` (for the safety guard, read from the
robot itself: the env's ctrl range, the LeRobot motors' normalization range), and
connect / observe / act / disconnect.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from vla.runtime.guard import Limits
from vla.schema import STATE_KEY, TASK_KEY, Schema


class Robot(Protocol):
    schema: Schema
    limits: Limits

    def connect(self) -> None: ...

    def observe(self) -> dict: ...

    def act(self, command: np.ndarray) -> None: ...

    def disconnect(self) -> None: ...


class SimRobot:
    """A task of any registered suite as a robot: `act` steps the simulation once (the controller paces it in
    real time). The suite says the command limits and which dimensions hold on a stop (Meta-World: xyz
    displacements go to 0, the gripper keeps its last command)."""

    def __init__(self, task: str, seed: int, schema: Schema, max_episode_steps: int | None = None,
                 max_delta: float = 1.0, end_on_success: bool = True):
        from vla.envs import suite_of

        suite = suite_of(task)
        self.task, self.seed, self.end_on_success = task, seed, end_on_success
        self.env = suite.make_env(task, schema, max_episode_steps)
        self.schema = self.env.schema
        limits = suite.limits(self.env)
        self.limits = Limits(low=limits.low, high=limits.high, max_delta=max_delta, hold=limits.hold,
                             rest=limits.rest)
        self.success = self.done = False
        self.steps = 0

    def connect(self) -> None:
        self._obs, _ = self.env.reset(seed=self.seed)
        self.success = self.done = False
        self.steps = 0

    def observe(self) -> dict:
        return self._obs

    def act(self, command: np.ndarray) -> None:
        if self.done:
            return
        self._obs, _, _, truncated, info = self.env.step(np.asarray(command, np.float32))
        self.steps += 1
        self.success = self.success or bool(info["is_success"])
        self.done = truncated or (self.success and self.end_on_success)  # the env terminates only on success

    def disconnect(self) -> None:
        pass


class MockRobot:
    """Observations from the schema's fake_observation; records every command with its time."""

    def __init__(self, schema: Schema, limits: Limits, task: str = "do the task"):
        self.schema, self.limits, self.task = schema, limits, task
        self.commands: list[np.ndarray] = []
        self.times: list[float] = []
        self.connected = False
        self.done = False
        self._rng = np.random.default_rng(0)

    def connect(self) -> None:
        self.connected = True

    def observe(self) -> dict:
        return self.schema.fake_observation(self._rng, task=self.task)

    def act(self, command: np.ndarray) -> None:
        self.commands.append(np.array(command))
        self.times.append(time.perf_counter())

    def disconnect(self) -> None:
        self.connected = False


class LeRobotRobot:
    """Any LeRobot `Robot` (SO-101 follower, Koch, ...) built with `make_robot_from_config`.

    The state is the motors' `.pos` readings in the robot's order, the cameras are resized to the
    policy's image shape, and the action is one target per motor. Limits come from each motor's
    normalization mode (range_m100_100, range_0_100 or degrees); the per-tick change defaults to the
    config's `max_relative_target` when it sets one."""

    RANGES = {"range_m100_100": (-100.0, 100.0), "range_0_100": (0.0, 100.0), "degrees": (-180.0, 180.0)}

    def __init__(self, robot_type: str, policy_schema: Schema, task: str, max_delta: float = 5.0, **config):
        from lerobot.robots import RobotConfig, make_robot_from_config

        self.robot = make_robot_from_config(RobotConfig.get_choice_class(robot_type)(**config))
        self.motors = [k.removesuffix(".pos") for k, v in self.robot.action_features.items() if v is float]
        self.cameras = [k for k, v in self.robot.observation_features.items() if isinstance(v, tuple)]
        self.schema, self.task = policy_schema, task
        if policy_schema.action_dim != len(self.motors):
            raise ValueError(f"{robot_type}: {len(self.motors)} motors {self.motors}, the policy's action "
                             f"has {policy_schema.action_dim} dimensions")
        if len(policy_schema.image_keys) != len(self.cameras):
            raise ValueError(f"{robot_type}: cameras {self.cameras}, the policy wants {policy_schema.image_keys}")
        modes = [self.robot.bus.motors[m].norm_mode.value for m in self.motors]
        low, high = np.array([self.RANGES[m] for m in modes]).T
        relative = getattr(self.robot.config, "max_relative_target", None)
        if isinstance(relative, dict):
            relative = [relative.get(m, max_delta) for m in self.motors]
        self.limits = Limits(low=low, high=high, max_delta=max_delta if relative is None else relative)

    def connect(self) -> None:
        self.robot.connect()
        self.limits.rest = self.observe()[STATE_KEY].astype(np.float64)  # hold where the arm is

    def observe(self) -> dict:
        import torch

        raw = self.robot.get_observation()
        obs = {STATE_KEY: np.array([raw[f"{m}.pos"] for m in self.motors], np.float32), TASK_KEY: self.task}
        for key, cam in zip(self.schema.image_keys, self.cameras, strict=True):
            h, w, _ = self.schema.observation[key].shape
            image = torch.from_numpy(np.ascontiguousarray(raw[cam])).permute(2, 0, 1)[None].float()
            resized = torch.nn.functional.interpolate(image, size=(h, w), mode="area")
            obs[key] = resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        return obs

    def act(self, command: np.ndarray) -> None:
        self.robot.send_action({f"{m}.pos": float(v) for m, v in zip(self.motors, command, strict=True)})

    def disconnect(self) -> None:
        self.robot.disconnect()

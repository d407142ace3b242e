"""Scripted experts for the tabletop skills. They read privileged state (object and pad positions, the goal),
which demonstrators may and learned policies never do.

Each skill is a list of phases: a point for the fingertip center (tcp) and a gripper command. A phase ends when
the tcp is within `tol` of its point (or after `hold` steps for the gripper phases); the action is a clipped
proportional step toward the point, as Meta-World's own experts do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from vla.envs.tabletop.env import TabletopEnv
from vla.envs.tabletop.language import DIRECTIONS
from vla.envs.tabletop.scene import OBJECT_HALF, TABLE_Z

OPEN, CLOSED = -1.0, 1.0
GAIN = 25.0  # action per metre of tcp error; saturates at 4 cm
CLEAR = 0.12  # tcp height that clears every object
PUSH_HEIGHT = TABLE_Z + OBJECT_HALF  # push at the object's middle
PUSH_BACKOFF, PUSH_THROUGH = 0.06, 0.13


@dataclass
class Phase:
    point: np.ndarray
    grip: float
    tol: float = 0.01
    hold: int = 0  # steps to stay after arriving (the gripper closing or opening)


def plan(env: TabletopEnv) -> list[Phase]:
    goal, obj = env.goal, env.target_pos()
    over = lambda xy, z: np.array([xy[0], xy[1], z])
    if goal.skill == "touch":
        return [Phase(over(obj, CLEAR), CLOSED), Phase(over(obj, obj[2] + OBJECT_HALF + 0.004), CLOSED, 0.006)]
    if goal.skill == "push":
        u = np.array(DIRECTIONS[goal.direction])
        start, end = obj[:2] - u * PUSH_BACKOFF, obj[:2] + u * PUSH_THROUGH
        return [Phase(over(env.sim.tcp(), CLEAR), CLOSED), Phase(over(start, CLEAR), CLOSED),
                Phase(over(start, PUSH_HEIGHT), CLOSED), Phase(over(end, PUSH_HEIGHT), CLOSED)]
    grasp = [Phase(over(obj, CLEAR), OPEN), Phase(over(obj, obj[2] - 0.005), OPEN, 0.008),
             Phase(over(obj, obj[2] - 0.005), CLOSED, 1.0, hold=12)]
    if goal.skill == "lift":
        return [*grasp, Phase(over(obj, obj[2] + 0.15), CLOSED)]
    pad = env.pad_xy(goal.pad)
    return [*grasp, Phase(over(obj, CLEAR), CLOSED), Phase(over(pad, CLEAR), CLOSED),
            Phase(over(pad, obj[2] + 0.01), CLOSED, 0.008), Phase(over(pad, obj[2] + 0.01), OPEN, 1.0, hold=8),
            Phase(over(pad, CLEAR), OPEN)]


class TabletopExpert:
    chunk_size = n_action_steps = 1  # decides every step from the simulator state
    accepts_prefix = False
    meta: ClassVar[dict] = {}

    def __init__(self, env: TabletopEnv):
        self.env = env
        self.schema = env.schema
        self._phases: list[Phase] | None = None

    def reset(self) -> None:
        self._phases, self._held = None, 0

    def select_action(self, obs: dict) -> np.ndarray:
        """A batch of one (the expert drives the one env it reads): -> (1, 4)."""
        if self._phases is None:  # planned on the first observation of an episode, once the scene is set
            self._phases = plan(self.env)
        tcp = self.env.sim.tcp()
        while len(self._phases) > 1:
            phase = self._phases[0]
            arrived = np.linalg.norm(phase.point - tcp) <= phase.tol
            if arrived and self._held >= phase.hold:
                self._phases.pop(0)
                self._held = 0
                continue
            self._held += arrived
            break
        phase = self._phases[0]
        move = np.clip((phase.point - tcp) * GAIN, -1.0, 1.0)
        return np.array([[*move, phase.grip]], dtype=np.float32)

    def predict_chunk(self, obs: dict) -> np.ndarray:
        return self.select_action(obs)[:, None]

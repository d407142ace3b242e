"""The tabletop env: one shared scene per episode, where only the instruction says which object to act on and how.

Observations: a fixed scene camera and a wrist camera, proprioception (hand xyz and gripper opening, as in
Meta-World) and the instruction. Actions: Meta-World's, end-effector displacement (1 cm per unit) and a gripper
command. `reset(seed=s)` decides the scene, the goal and the instruction; `info["goal"]` and `info["scene"]` give
them structured, `info["is_success"]` judges the goal of the instruction the policy was given, and
`info["outcome"]` says which object the hand has gone to: the named one, another, or none.

Task names are `tabletop-<skill>` (the seen split) and `tabletop-<skill>-<variant>`, where the variant is a
held-out split (`heldout-compositions`, `heldout-paraphrases`, `heldout-words`: see language.py) or an ablation:
- `blind`: a seen episode with the instruction blanked (success is still judged against its goal);
- `swapped`: the scene of the seen episode of the same seed, with an instruction naming another of its objects;
or a training variant that names the target by one attribute, in a scene where it alone picks the target
(`by-shape`, `by-color`: language.attribute_scene_objects).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from vla.envs.render import FastRenderer
from vla.envs.suite import cameras_of, checked_action
from vla.envs.tabletop.language import (
    ATTRIBUTE_VARIANTS,
    DIRECTIONS,
    HELDOUT_PAIRS,
    SKILLS,
    Goal,
    attribute_scene_objects,
    draw_goal,
    naming_of,
    scene_objects,
    seen_pairs,
    target_pairs,
)
from vla.envs.tabletop.scene import (
    COLORS,
    HAND_HIGH,
    HAND_LOW,
    MOCAP_HIGH,
    MOCAP_LOW,
    N_PADS,
    OBJECT_HALF,
    PAD_RADIUS,
    TABLE_Z,
    Scene,
    SceneModel,
    SceneObject,
    sample_positions,
)
from vla.schema import ACTION_KEY, IMAGE_PREFIX, STATE_KEY, TASK_KEY, Feature, Schema

STATE_NAMES = ("ee_x", "ee_y", "ee_z", "gripper")
ACTION_NAMES = ("dx", "dy", "dz", "gripper")
CAMERAS = ("scene", "wrist")
FRAME_SKIP = 5
CONTROL_HZ = 1 / (FRAME_SKIP * 0.0025)  # 80 Hz: Meta-World's frame skip and timestep, which the arm model keeps
ACTION_SCALE = 0.01  # m of mocap motion per unit of action per step, as Meta-World
HELDOUT_SPLITS = ("heldout-compositions", "heldout-paraphrases", "heldout-words")
VARIANTS = (*HELDOUT_SPLITS, "blind", "swapped", *ATTRIBUTE_VARIANTS)
# the variants that draw their own scenes and goals (the others are the seen split's, ablated)
SPLITS = ("seen", *HELDOUT_SPLITS, *ATTRIBUTE_VARIANTS)

# Success thresholds (m)
PUSH_DISTANCE = 0.08
LIFT_HEIGHT = 0.08
TOUCH_RADIUS = 0.025
# info["outcome"]: the object the hand acted on: the one moved farthest, if any moved this far (xy) ...
MOVED_DISTANCE = 0.02
# ... else the one whose center the hand came nearest to (xy) over the episode, if within this
REACH_RADIUS = 0.03
OUTCOMES = ("named object", "other object", "no object")  # what the hand acted on


def task_names() -> list[str]:
    return [f"tabletop-{skill}" + (f"-{v}" if v else "") for v in ("", *VARIANTS) for skill in SKILLS]


def parse_task(task: str) -> tuple[str, str]:
    """`tabletop-<skill>[-<variant>]` -> (skill, variant or "seen"); raises naming the known tasks."""
    for skill in SKILLS:
        base = f"tabletop-{skill}"
        if task == base:
            return skill, "seen"
        if task.startswith(base + "-") and task[len(base) + 1:] in VARIANTS:
            return skill, task[len(base) + 1:]
    raise KeyError(f"unknown tabletop task {task!r}; known: {task_names()}")


def tabletop_schema(image_size: int, cameras: tuple[str, ...] = CAMERAS) -> Schema:
    images = {IMAGE_PREFIX + c: Feature(IMAGE_PREFIX + c, (image_size, image_size, 3), "uint8") for c in cameras}
    return Schema(observation={**images, STATE_KEY: Feature(STATE_KEY, (4,), "float32", STATE_NAMES)},
                  action=Feature(ACTION_KEY, (4,), "float32", ACTION_NAMES), fps=CONTROL_HZ)


def schema_cameras(schema: Schema) -> tuple[int, tuple[str, ...]]:
    """(image_size, cameras) of a schema the tabletop env can produce; raises naming what does not fit."""
    return cameras_of(schema, CAMERAS, tabletop_schema, "the tabletop env")


def sample_episode(skill: str, split: str, seed: int) -> tuple[Scene, Goal]:
    """The scene and goal of a seed of a split (`SPLITS`): the target and three distractors (`scene_objects`, or
    `attribute_scene_objects` where the split names the target by one attribute), and two pads."""
    naming = naming_of(split)
    # the random stream of each split (the held-out ones share one: they differ in targets or templates)
    stream = {"seen": 0, "by-shape": 4, "by-color": 5}.get(split, 1 + ("heldout" in split))
    rng = np.random.default_rng([seed, SKILLS.index(skill), stream])
    pairs = target_pairs(skill, split)
    target = pairs[rng.integers(len(pairs))]
    # held-out pairs appear only in the held-out-composition split, as its targets or beside them
    avoid = frozenset() if split == "heldout-compositions" else HELDOUT_PAIRS
    objects = (scene_objects(rng, target, avoid) if naming == "both" else
               attribute_scene_objects(rng, target, naming, avoid))
    rng.shuffle(objects)
    pad_colors = [str(c) for c in rng.choice(list(COLORS), N_PADS, replace=False)]
    xy = sample_positions(rng, len(objects) + N_PADS)
    goal = draw_goal(rng, skill, split, target, pad_colors, naming)
    hand = HAND_LOW + rng.random(3) * (HAND_HIGH - HAND_LOW)  # drawn last: the rest of a seed's episode is as before
    scene = Scene(objects=tuple(SceneObject(c, s, p) for (c, s), p in zip(objects, xy, strict=False)),
                  pads=tuple(zip(pad_colors, xy[len(objects):], strict=True)), hand=tuple(map(float, hand)))
    return scene, goal


def episode_of(skill: str, variant: str, seed: int) -> tuple[Scene, Goal]:
    """The scene and the goal given to the policy in a seed's episode of a task (`parse_task`'s skill, variant)."""
    scene, goal = sample_episode(skill, variant if variant in SPLITS else "seen", seed)
    return scene, swapped_goal(scene, goal, seed) if variant == "swapped" else goal


def swapped_goal(scene: Scene, goal: Goal, seed: int) -> Goal:
    """Another valid seen instruction of the same skill in the same scene, naming a different object."""
    rng = np.random.default_rng([seed, SKILLS.index(goal.skill), 3])
    others = [(o.color, o.shape) for o in scene.objects if (o.color, o.shape) != (goal.color, goal.shape)]
    valid = [p for p in others if p in seen_pairs(goal.skill)] or others
    return draw_goal(rng, goal.skill, "seen", valid[rng.integers(len(valid))], [c for c, _ in scene.pads])


class TabletopEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(self, task: str, image_size: int = 96, cameras: tuple[str, ...] = CAMERAS,
                 max_episode_steps: int = 200):
        self.task = task
        self.skill, self.variant = parse_task(task)
        self.schema = tabletop_schema(image_size, cameras)
        self.cameras = cameras
        self.max_episode_steps = max_episode_steps
        self.sim = SceneModel()
        self._renderers = {c: FastRenderer(self.sim.model, image_size, image_size, c) for c in cameras}
        self.scene: Scene | None = None
        self.goal: Goal | None = None
        self.instruction = ""
        self._steps = 0
        self.observation_space = gym.spaces.Dict({
            **{IMAGE_PREFIX + c: gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8) for c in cameras},
            STATE_KEY: gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            TASK_KEY: gym.spaces.Text(max_length=256),
        })
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    # ---- what the expert and the success check may read -------------------------------------------
    @property
    def target_index(self) -> int:
        return next(i for i, o in enumerate(self.scene.objects) if (o.color, o.shape) == (self.goal.color, self.goal.shape))

    def pad_xy(self, color: str) -> np.ndarray:
        return np.array(next(xy for c, xy in self.scene.pads if c == color))

    def target_pos(self) -> np.ndarray:
        return self.sim.object_pos(self.target_index)

    # ---- gym API ----------------------------------------------------------------------------------
    def _observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = {IMAGE_PREFIX + c: r.render(self.sim.data) for c, r in self._renderers.items()}
        obs[STATE_KEY] = np.array([*self.sim.hand_pos(), self.sim.gripper_opening()], dtype=np.float32)
        obs[TASK_KEY] = "" if self.variant == "blind" else self.instruction
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        seed = int(self.np_random.integers(2**31)) if seed is None else seed
        self.scene, self.goal = episode_of(self.skill, self.variant, seed)
        self.instruction = self.goal.instruction
        self.sim.set_scene(self.scene)
        self._start = self.target_pos()
        self._closest = np.full(len(self.scene.objects), np.inf)
        self._object_starts = [self.sim.object_pos(i)[:2] for i in range(len(self.scene.objects))]
        self._steps = 0
        return self._observation(), {"is_success": False, "seed": seed, "goal": self.goal.to_json(),
                                     "scene": self.scene.to_json()}

    def step(self, action: np.ndarray):
        action = checked_action(action, 4)
        sim = self.sim
        sim.data.mocap_pos[sim.mocap] = np.clip(sim.data.mocap_pos[sim.mocap] + action[:3] * ACTION_SCALE,
                                                MOCAP_LOW, MOCAP_HIGH)
        sim.data.mocap_quat[sim.mocap] = (1, 0, 1, 0)
        sim.step_physics(float(action[3]), FRAME_SKIP)
        self._steps += 1
        tcp = sim.tcp()[:2]
        self._closest = np.minimum(self._closest, [np.linalg.norm(tcp - sim.object_pos(i)[:2])
                                                   for i in range(len(self.scene.objects))])
        success = self.is_success()
        return self._observation(), float(success), success, self._steps >= self.max_episode_steps, \
            {"is_success": success, "outcome": self.outcome()}

    def moved_object(self) -> int | None:
        """The index of the object moved farthest from where the episode placed it, if by MOVED_DISTANCE."""
        moved = [np.linalg.norm(self.sim.object_pos(i)[:2] - xy) for i, xy in enumerate(self._object_starts)]
        return int(np.argmax(moved)) if max(moved) >= MOVED_DISTANCE else None

    def outcome(self) -> str:
        """Which object the hand has acted on (`OUTCOMES`): the one it moved farthest, if it moved one by
        MOVED_DISTANCE (push, lift, place); else the one it came nearest to, if within REACH_RADIUS (touch). It
        tells a policy that acts on an object but not the named one (it ignores the words) from one that acts on
        none (it cannot act)."""
        acted = self.moved_object()
        if acted is None:
            acted = int(np.argmin(self._closest))
            if self._closest[acted] > REACH_RADIUS:
                return OUTCOMES[2]
        return OUTCOMES[0] if acted == self.target_index else OUTCOMES[1]

    def is_success(self) -> bool:
        goal, pos, start = self.goal, self.target_pos(), self._start
        if goal.skill == "touch":
            tcp = self.sim.tcp()
            return bool(np.linalg.norm(tcp[:2] - pos[:2]) <= TOUCH_RADIUS and tcp[2] <= pos[2] + OBJECT_HALF + 0.015)
        if goal.skill == "push":
            moved = float(np.dot(pos[:2] - start[:2], DIRECTIONS[goal.direction]))
            return moved >= PUSH_DISTANCE and pos[2] < TABLE_Z + 2 * OBJECT_HALF
        if goal.skill == "lift":
            return bool(pos[2] >= start[2] + LIFT_HEIGHT)
        # place: resting on the table within the pad
        return bool(np.linalg.norm(pos[:2] - self.pad_xy(goal.pad)) <= PAD_RADIUS - 0.01 and pos[2] <= start[2] + 0.01)

    def render(self) -> np.ndarray:
        return self._observation()[IMAGE_PREFIX + self.cameras[0]]

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()

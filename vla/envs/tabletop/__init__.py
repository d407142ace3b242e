"""The tabletop grounding suite as a Suite: one shared scene, four skills, and splits that hold compositions and
paraphrases out of training. `tabletop` alone means the training tasks (the seen split of every skill)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from vla.envs.suite import Renaming, Suite, displacement_limits
from vla.envs.tabletop.env import (
    CAMERAS,
    SPLITS,
    VARIANTS,
    TabletopEnv,
    episode_of,
    parse_task,
    schema_cameras,
    tabletop_schema,
    task_names,
)
from vla.envs.tabletop.expert import TabletopExpert
from vla.envs.tabletop.language import (
    DIRECTIONS,
    SKILLS,
    TEMPLATES,
    Goal,
    naming_of,
    seen_pairs,
    target_pairs,
    templates,
)
from vla.envs.tabletop.scene import COLORS, N_OBJECTS
from vla.schema import Schema


class TabletopSuite(Suite):
    name = "tabletop"
    max_episode_steps = 200  # the slowest expert (place) needs at most ~130 steps
    chance = 1 / N_OBJECTS  # a policy that ignores the instruction picks the target once in N_OBJECTS
    cameras = default_cameras = CAMERAS  # a fixed scene camera and a wrist camera

    def tasks(self) -> list[str]:
        return task_names()

    def groups(self) -> dict[str, list[str]]:
        seen = [f"tabletop-{s}" for s in SKILLS]
        return {"tabletop": seen, "tabletop-seen": seen,
                **{f"tabletop-{v}": [f"tabletop-{s}-{v}" for s in SKILLS] for v in VARIANTS}}

    def default_schema(self, image_size: int = 96, cameras: tuple[str, ...] | None = None) -> Schema:
        return tabletop_schema(image_size, self.check_cameras(cameras))

    def make_env(self, task: str, schema: Schema | None = None, max_episode_steps: int | None = None) -> TabletopEnv:
        image_size, cameras = schema_cameras(schema or self.default_schema())
        return TabletopEnv(task, image_size, cameras, max_episode_steps or self.max_episode_steps)

    def make_expert(self, env: TabletopEnv) -> TabletopExpert:
        return TabletopExpert(env)

    def limits(self, env: TabletopEnv):
        return displacement_limits(env.action_space)

    def instructions(self, task: str) -> list[str]:
        skill, variant = parse_task(task)
        if variant == "blind":
            return [""]
        split = variant if variant in SPLITS else "seen"
        naming = naming_of(split)
        extras = {"push": [{"direction": d} for d in DIRECTIONS], "place": [{"pad": c} for c in COLORS]}
        goals = (Goal(skill, c, s, template=t, naming=naming, **extra)
                 for (c, s), t, extra in itertools.product(target_pairs(skill, split), templates(skill, split),
                                                           extras.get(skill, [{}])))
        return sorted({g.instruction for g in goals})

    def renamings(self, task: str, seed: int) -> list[Renaming]:
        """The seen split's episodes only (an attribute variant's instruction names one attribute): each object of
        the scene whose pair the skill trains as a target, named in the goal's own template (with its direction or
        pad). Every skill's plan is relative to the object's place (vla.envs.tabletop.expert.plan) except where a
        place ends, over its pad: the hand would end (touch, push, lift) and grasp (lift, place) as far from where it
        did as the object is from the named one. A held-out pair in the scene is never named."""
        skill, variant = parse_task(task)
        if variant != "seen":
            return []
        scene, goal = episode_of(skill, variant, seed)
        named = next(o for o in scene.objects if (o.color, o.shape) == (goal.color, goal.shape))
        renamings = []
        for o in scene.objects:
            if (o.color, o.shape) not in seen_pairs(skill):
                continue
            shift = np.array([o.xy[0] - named.xy[0], o.xy[1] - named.xy[1], 0.0, 0.0], np.float32)  # STATE_NAMES
            renamed = dataclasses.replace(goal, color=o.color, shape=o.shape)
            renamings.append(Renaming(renamed.instruction, np.zeros_like(shift) if skill == "place" else shift, shift))
        return renamings

    def episode_goal(self, task: str, seed: int) -> dict:
        return episode_of(*parse_task(task), seed)[1].to_json()


SUITE = TabletopSuite()

__all__ = ["SUITE", "TEMPLATES", "TabletopEnv", "TabletopExpert", "TabletopSuite"]

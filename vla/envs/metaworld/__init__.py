"""Meta-World v3 as a suite: all 50 tasks, the MT10/MT50 benchmarks and the difficulty groups by name."""

from __future__ import annotations

import functools

from vla.envs.metaworld.env import CAMERAS, MetaWorldEnv, metaworld_schema, schema_cameras
from vla.envs.metaworld.expert import FINGERS_TO_GOAL, OBJECT_TO_GOAL, MetaWorldExpert
from vla.envs.suite import ActionLimits, Suite, displacement_limits
from vla.schema import Schema


@functools.cache
def _groups() -> dict[str, list[str]]:
    # MT10 from metaworld's own benchmark table; the difficulty groups from lerobot's (Seo et al. 2022's split,
    # the one SmolVLA and Evo-1 report against).
    from lerobot.envs.metaworld import DIFFICULTY_TO_TASKS
    from metaworld.env_dict import MT10_V3, MT50_V3

    return {"mt10": list(MT10_V3), "mt50": list(MT50_V3), **{g: list(t) for g, t in DIFFICULTY_TO_TASKS.items()}}


class MetaWorldSuite(Suite):
    name = "metaworld"
    max_episode_steps = 500  # Meta-World's own limit (max_path_length)
    difficulty_groups = ("easy", "medium", "hard", "very_hard")
    cameras = CAMERAS
    default_cameras = ("corner2",)  # the published MT50 rows' and lerobot's camera
    fixed_start = True  # each task's hand_init_pos; MetaWorldEnv.reset's start_noise moves it

    def tasks(self) -> list[str]:
        from vla.envs.metaworld.env import task_names

        return task_names()

    def groups(self) -> dict[str, list[str]]:
        return _groups()

    def default_schema(self, image_size: int = 96, cameras: tuple[str, ...] | None = None) -> Schema:
        return metaworld_schema(image_size, self.check_cameras(cameras))

    def make_env(self, task: str, schema: Schema | None = None, max_episode_steps: int | None = None) -> MetaWorldEnv:
        image_size, cameras = schema_cameras(schema or self.default_schema())
        return MetaWorldEnv(task, image_size=image_size, cameras=cameras,
                            max_episode_steps=max_episode_steps or self.max_episode_steps)

    def make_expert(self, env: MetaWorldEnv) -> MetaWorldExpert:
        return MetaWorldExpert(env)

    def expert_tag(self, task: str) -> str:
        # until session 53 reach's experts aimed the hand, until session 56 pick-place's the hand
        return "fingers" if task in FINGERS_TO_GOAL else "object" if task in OBJECT_TO_GOAL else ""

    def limits(self, env: MetaWorldEnv) -> ActionLimits:
        return displacement_limits(env.action_space)

    def instructions(self, task: str) -> list[str]:
        from vla.envs.metaworld.env import instruction

        return [instruction(task)]

    def group_of(self, task: str) -> str:
        """The difficulty group of a task."""
        return next(g for g in self.difficulty_groups if task in self.groups()[g])


SUITE = MetaWorldSuite()

__all__ = ["SUITE", "MetaWorldEnv", "MetaWorldExpert", "MetaWorldSuite", "metaworld_schema"]

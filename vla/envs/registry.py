"""Every suite the package knows, and task lists by name: a task, a suite's group (`mt10`, `easy`,
`tabletop-heldout-compositions`, ...) or a whole suite (`metaworld`; `tabletop`, whose name is its training
group)."""

from __future__ import annotations

import gymnasium as gym

from vla.envs.suite import Suite
from vla.schema import Schema

_SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite) -> None:
    _SUITES[suite.name] = suite


def suites() -> list[str]:
    return sorted(_SUITES)


def get_suite(name: str) -> Suite:
    if name not in _SUITES:
        raise KeyError(f"no suite named {name!r}; suites: {suites()}")
    return _SUITES[name]


def list_tasks(suite: str | None = None) -> list[str]:
    names = [suite] if suite else suites()
    return [t for s in names for t in get_suite(s).tasks()]


def suite_of(task: str) -> Suite:
    for suite in _SUITES.values():
        if task in suite.tasks():
            return suite
    raise KeyError(f"no registered suite has task {task!r}; suites: {suites()}")


def suites_by_task() -> dict[str, Suite]:
    """Every registered task's suite, for a caller that looks up many tasks (a store's episodes), some perhaps of
    no suite here: .get(task) is None for those."""
    return {task: suite for suite in _SUITES.values() for task in suite.tasks()}


def resolve_tasks(names: list[str]) -> list[str]:
    """Task names, group names and suite names -> the task list they stand for, in order, without repeats.
    An unknown name raises a KeyError that names it and the groups there are."""
    tasks: list[str] = []
    for name in names:
        tasks += _expand(name)
    return list(dict.fromkeys(tasks))


def _expand(name: str) -> list[str]:
    for suite in _SUITES.values():
        if name in suite.groups():  # a suite's group named like the suite is what the suite's name stands for
            return suite.groups()[name]
        if name == suite.name:
            return suite.tasks()
            return suite.groups()[name]
        if name in suite.tasks():
            return [name]
    groups = sorted(g for s in _SUITES.values() for g in s.groups())
    raise KeyError(f"unknown task or task group {name!r}; groups: {groups}, suites: {suites()}")


def make_env(task: str, schema: Schema | None = None, max_episode_steps: int | None = None,
             image_size: int | None = None) -> gym.Env:
    """An env of `task` producing `schema`; or, with `image_size`, the suite's default schema at that size."""
    suite = suite_of(task)
    if image_size is not None:
        if schema is not None:
            raise ValueError("pass schema or image_size, not both")
        schema = suite.default_schema(image_size)
    return suite.make_env(task, schema, max_episode_steps)


def _register_builtin() -> None:
    from vla.envs.metaworld import SUITE as metaworld
    from vla.envs.tabletop import SUITE as tabletop

    register_suite(metaworld)
    register_suite(tabletop)


_register_builtin()

"""Every env the package can make, by task name, grouped into suites."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

_SUITES: dict[str, tuple[Callable[[], list[str]], Callable[..., gym.Env]]] = {}


def register_suite(name: str, list_tasks: Callable[[], list[str]], make: Callable[..., gym.Env]) -> None:
    _SUITES[name] = (list_tasks, make)


def suites() -> list[str]:
    return sorted(_SUITES)


def list_tasks(suite: str | None = None) -> list[str]:
    names = [suite] if suite else suites()
    return [t for s in names for t in _SUITES[s][0]()]


def suite_of(task: str) -> str:
    for name, (tasks, _) in _SUITES.items():
        if task in tasks():
            return name
    raise KeyError(f"no registered suite has task {task!r}; suites: {suites()}")


def make_env(task: str, **kwargs) -> gym.Env:
    return _SUITES[suite_of(task)][1](task, **kwargs)


def _register_builtin() -> None:
    from vla.envs import metaworld

    register_suite("metaworld", metaworld.task_names, metaworld.MetaWorldEnv)


_register_builtin()

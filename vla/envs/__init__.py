from vla.envs.registry import (
    get_suite,
    list_tasks,
    make_env,
    register_suite,
    resolve_tasks,
    suite_of,
    suites,
    suites_by_task,
)
from vla.envs.suite import ActionLimits, Suite

__all__ = ["ActionLimits", "Suite", "get_suite", "list_tasks", "make_env", "register_suite", "resolve_tasks",
           "suite_of", "suites", "suites_by_task"]

from vla.envs.registry import list_tasks, make_env, register_suite, suite_of, suites

__all__ = ["list_tasks", "make_env", "register_suite", "suite_of", "suites"]

"""vla-robot policy=runs/demo robot=sim [tasks=[...]] [episodes=10] [control_hz=20]

Runs a policy (a checkpoint in-process, or a vla-serve URL ws://host:port) on a robot (sim, lerobot or
mock) at a fixed control rate, through the safety guard. Ctrl-C or SIGTERM stops safely."""

import logging

from vla.cli.config import cli_main, load, load_checkpoint, print_usage, require_tasks, usage_requested
from vla.runtime.run import run_robot


def _main() -> None:
    if usage_requested():
        return print_usage("robot", __doc__)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    cfg = load("robot")
    require_tasks(cfg.tasks)
    remote = cfg.policy.startswith(("ws://", "wss://"))
    run_robot(cfg, None if remote else load_checkpoint(cfg.policy, "policy checkpoint"))


def main() -> None:
    cli_main("vla-robot", _main)


if __name__ == "__main__":
    main()

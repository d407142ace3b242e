"""vla-robot policy=runs/demo robot=sim [tasks=[...]] [episodes=10] [control_hz=20]

Runs a policy (a checkpoint in-process, or a vla-serve URL ws://host:port) on a robot (sim, lerobot or
mock) at a fixed control rate, through the safety guard. Ctrl-C or SIGTERM stops safely."""

import logging

from vla.cli.config import load, print_usage, usage_requested
from vla.runtime.run import RobotConfig, run_robot


def main() -> None:
    if usage_requested():
        return print_usage("robot", __doc__)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    run_robot(load("robot", RobotConfig))


if __name__ == "__main__":
    main()

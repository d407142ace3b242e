"""vla-demo out=runs/demo [tasks=[...]] [episodes=30] [steps=700] [eval_episodes=20] [cameras=[...]]

Records expert demonstrations, trains the VLA on them and evaluates it, in one command. Tasks may be named
by group (mt10, easy, ...) or suite (tabletop), as in vla-record; `cameras` as in vla-record too."""

import time
from dataclasses import dataclass, field
from pathlib import Path

from vla.cli.config import cli_main, load, print_usage, require_cameras, require_tasks, usage_requested
from vla.evaluate import evaluate_checkpoint
from vla.record import DEMO_TASKS, record
from vla.train import train


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    tasks: list[str] = field(default_factory=lambda: list(DEMO_TASKS))
    episodes: int = 30  # expert demonstrations wanted per task
    steps: int = 700  # training steps (batch 32)
    eval_episodes: int = 20  # evaluation episodes per task, seeds disjoint from the demos'
    # The demo's tasks finish well within 300 steps; Meta-World's own 500 would only lengthen failed episodes.
    eval_max_episode_steps: int = 300
    cameras: list[str] | None = None  # None: each suite's default


def _list(values: list[str]) -> str:
    return "[" + ",".join(values) + "]"


def _main() -> None:
    if usage_requested():
        return print_usage("demo", __doc__)
    demo = load("demo")
    require_tasks(demo.tasks)
    require_cameras(demo.tasks, demo.cameras)
    out = Path(demo.out)
    store = out / "demos.zarr"
    t0 = time.perf_counter()
    if store.exists():
        print(f"reusing demonstrations in {store}")
    else:
        cameras = [] if demo.cameras is None else [f"cameras={_list(demo.cameras)}"]
        record(load("record", [f"tasks={_list(demo.tasks)}", f"episodes={demo.episodes}", f"out={store}", *cameras]))
    t1 = time.perf_counter()
    train(load("train", [f"dataset={store}", f"out={out}", f"steps={demo.steps}"]))
    t2 = time.perf_counter()
    evaluate_checkpoint(load("eval", [
        f"checkpoint={out}", f"episodes={demo.eval_episodes}", f"out={out / 'eval'}",
        f"max_episode_steps={demo.eval_max_episode_steps}",
    ]))
    t3 = time.perf_counter()
    print(f"record {t1 - t0:.0f} s, train {t2 - t1:.0f} s, evaluate {t3 - t2:.0f} s, total {t3 - t0:.0f} s")
    print(f"results: {out / 'eval' / 'results.json'}")


def main() -> None:
    cli_main("vla-demo", _main)


if __name__ == "__main__":
    main()

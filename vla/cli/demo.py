"""vla-demo out=runs/demo [tasks=[...]] [episodes=30] [steps=700] [eval_episodes=20]

Records expert demonstrations in Meta-World, trains the VLA on them and evaluates it, in one command."""

import sys
import time
from pathlib import Path

from vla.cli.config import cli_main, compose_dict, load, print_usage, require_tasks, usage_requested
from vla.evaluate import evaluate_checkpoint
from vla.record import record
from vla.train import train


def _main() -> None:
    if usage_requested():
        return print_usage("demo", __doc__)
    demo = compose_dict("demo", sys.argv[1:])
    require_tasks(demo["tasks"])
    out, tasks = Path(demo["out"]), "[" + ",".join(demo["tasks"]) + "]"
    store = out / "demos.zarr"
    t0 = time.perf_counter()
    if store.exists():
        print(f"reusing demonstrations in {store}")
    else:
        record(load("record", [f"tasks={tasks}", f"episodes={demo['episodes']}", f"out={store}"]))
    t1 = time.perf_counter()
    train(load("train", [f"dataset={store}", f"out={out}", f"steps={demo['steps']}"]))
    t2 = time.perf_counter()
    evaluate_checkpoint(load("eval", [
        f"checkpoint={out}", f"episodes={demo['eval_episodes']}", f"out={out / 'eval'}",
        f"max_episode_steps={demo['eval_max_episode_steps']}",
    ]))
    t3 = time.perf_counter()
    print(f"record {t1 - t0:.0f} s, train {t2 - t1:.0f} s, evaluate {t3 - t2:.0f} s, total {t3 - t0:.0f} s")
    print(f"results: {out / 'eval' / 'results.json'}")



def main() -> None:
    cli_main("vla-demo", _main)


if __name__ == "__main__":
    main()

"""Success against training steps for a finished metaworld_mt.py run: the checkpoints it kept at the given steps
(`keep_every`) evaluated as the run evaluated its last one (the same tasks, episodes, seeds and 500-step limit,
two worker processes), each into RUN_DIR/at_step_<N>/ (a rerun skips the tasks already there). Would more training
steps close the rest of the gap?

Usage: steps_curve.py RUN_DIR --steps 30000 [48000 ...]. Prints one JSON line per step (per group, mean of
groups, mean over tasks, the evaluation's seconds), the run's own last checkpoint last.
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages import EVAL_SEED, Progress, evaluate_stage  # noqa: E402


def summary(steps: int, per_task: dict[str, dict], groups: dict[str, list[str]], seconds: float | None) -> dict:
    rate = {t: r["success_rate"] for t, r in per_task.items()}
    by_group = {g: sum(rate[t] for t in ts) / len(ts) for g, ts in groups.items()}
    return {"steps": steps, "groups": by_group, "mean_of_groups": sum(by_group.values()) / len(by_group),
            "mean_over_tasks": sum(rate.values()) / len(rate), "tasks": rate, "evaluate_s": seconds}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="kept checkpoints to evaluate")
    args = parser.parse_args()
    if not (args.run / "results.json").is_file():
        sys.exit(f"no finished run at {args.run} (no results.json)")
    results = json.loads((args.run / "results.json").read_text())
    tasks = list(results["tasks"])
    groups = {g: [t for t in tasks if results["tasks"][t]["group"] == g] for g in results["groups"]}
    episodes = next(iter(results["tasks"].values()))["episodes"]
    checkpoints = args.run / "train" / "checkpoints"
    missing = [s for s in args.steps if not (checkpoints / f"step_{s:06d}").is_dir()]
    if missing:
        sys.exit(f"no checkpoint kept at steps {missing} under {checkpoints}")
    for steps in args.steps:
        out = args.run / f"at_step_{steps}"
        out.mkdir(exist_ok=True)
        per_task = evaluate_stage(out, checkpoints / f"step_{steps:06d}", tasks, episodes, 500, Progress(out),
                                  workers=2)
        seconds = json.loads((out / "progress.json").read_text())["stage_s"].get("evaluate")
        print(json.dumps(summary(steps, per_task, groups, seconds) | {"seeds_from": EVAL_SEED}), flush=True)
    final_steps = max(int(p.name.removeprefix("step_")) for p in checkpoints.glob("step_*"))
    print(json.dumps(summary(final_steps, results["tasks"], groups, results["stage_s"].get("evaluate"))
                     | {"seeds_from": EVAL_SEED}))

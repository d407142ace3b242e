"""Evaluate a finished metaworld_mt.py run's checkpoint again in two worker processes (the same seeds, into another
folder) and compare with the single-process evaluation it already has: the wall time of each, and whether every
episode ended the same way.

Usage: eval_workers_check.py RUN_DIR OUT_DIR [--steps N]   (RUN_DIR: a finished run whose evaluation ran in one
process, `--eval-workers 1` or before session 49; its progress.json holds that stage's time). Prints one JSON line.
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages import EVAL_SEED, Progress, evaluate_stage  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=24000, help="the checkpoint the run evaluated")
    args = parser.parse_args()
    if not (args.run / "results.json").is_file():
        sys.exit(f"no finished run at {args.run} (no results.json)")
    tasks = list(json.loads((args.run / "results.json").read_text())["tasks"])  # in the order the run evaluated them
    single = {t: json.loads((args.run / "eval" / f"{t}.json").read_text()) for t in tasks}
    args.out.mkdir(parents=True, exist_ok=True)
    episodes = next(iter(single.values()))["episodes"]
    per_task = evaluate_stage(args.out, args.run / "train" / "checkpoints" / f"step_{args.steps:06d}", tasks,
                              episodes, 500, Progress(args.out), workers=2)
    row = {"run": str(args.run), "steps": args.steps, "episodes": episodes * len(single), "seeds_from": EVAL_SEED,
           "one_process_s": json.loads((args.run / "progress.json").read_text())["stage_s"]["evaluate"],
           "two_workers_s": json.loads((args.out / "progress.json").read_text())["stage_s"]["evaluate"],
           "same_outcome_every_episode": all(per_task[t]["successes"] == single[t]["successes"] for t in single)}
    row["speedup"] = row["one_process_s"] / row["two_workers_s"]
    print(json.dumps(row))

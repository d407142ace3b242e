"""Success against control rate and inference delay, for naive chunk switching, real-time (prefix-conditioned)
chunking and temporal ensembling, beside in-process lockstep evaluation.

    python benchmarks/control_latency.py --checkpoint runs/demo --out runs/control_latency

Every episode runs the `vla-robot` controller (chunk schedule, safety guard) on the sim robot in simulated
real time (`vla.runtime.clock.SimulatedClock`): a chunk computed from the observation of tick k is delivered
`delay` later, and inference itself takes no simulated time, so a row means the same on any machine and
reruns identically. The sim robot steps the env once per tick, so what a control rate changes is how many
ticks a delay spans (ceil(delay * rate)); the env's own dynamics per step are those it was recorded with.
The same seeds (`--seed` + i) serve every row and the in-process figure, which is `vla-eval`'s lockstep
evaluation (no delay, no guard).

Jobs (one method, rate, delay and task: `--episodes` episodes) run in `--workers` processes of one thread
each and are appended to DIR/jobs.jsonl as they finish, so an interrupted run resumes where it stopped.
DIR/results.json: {"in_process": float, "rows": [{"method", "control_hz", "delay_ms", "success_rate",
"episodes", "delay_ticks", "switch_jump", "per_task"}], ...}; DIR/control_latency.png plots it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

from vla.runtime.chunking import METHODS

_policy = None  # one per worker process


def _load(checkpoint: str, threads: int) -> None:
    import torch

    from vla.policies.registry import load_policy

    global _policy
    torch.set_num_threads(threads)
    _policy = load_policy(checkpoint)


def job_key(job: dict) -> str:
    return f"{job['method']}|{job['control_hz']:g}|{job['delay_ms']:g}|{job['task']}"


def run_job(job: dict) -> dict:
    """Episodes of one (method, rate, delay, task) on the sim robot in simulated time."""
    from vla.runtime.clock import InferenceDelay, SimulatedClock
    from vla.runtime.controller import Controller, LocalPolicy
    from vla.runtime.guard import SafetyGuard
    from vla.runtime.robots import SimRobot

    source = LocalPolicy(_policy)
    robot = SimRobot(job["task"], job["seeds"][0], _policy.schema, job["max_episode_steps"])
    successes, jumps, lates, holds = [], [], [], 0
    t0 = time.perf_counter()
    for seed in job["seeds"]:
        robot.seed = seed
        guard = SafetyGuard(robot.limits, job["control_hz"])
        controller = Controller(robot, source, job["control_hz"], guard, chunking=job["method"],
                                clock=SimulatedClock(), delay=InferenceDelay(job["delay_ms"], 0.0, seed))
        report = controller.run()
        successes.append(bool(report.success))
        jumps += report.switch_jumps
        lates += report.late_ticks
        holds += int(report.guard_counts.get("hold", 0))
    return {**{k: job[k] for k in ("method", "control_hz", "delay_ms", "task")}, "key": job_key(job),
            "successes": successes, "switch_jump": float(np.mean(jumps)) if jumps else None,
            "late_ticks": int(max(lates, default=0)), "guard_holds": holds, "wall_s": time.perf_counter() - t0}


def in_process(args, tasks: list[str], out: Path) -> dict:
    path = out / "in_process.json"
    if path.exists():
        return json.loads(path.read_text())
    from vla.evaluate import evaluate_policy

    results = evaluate_policy(_policy, tasks, args.episodes, args.seed, args.max_episode_steps, 20, _policy.schema,
                              video=False)
    path.write_text(json.dumps(results, indent=2))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="runs/demo")
    parser.add_argument("--out", default="runs/control_latency")
    parser.add_argument("--tasks", nargs="*", default=None, help="default: the checkpoint's training tasks")
    parser.add_argument("--episodes", type=int, default=20, help="per task and row")
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument("--max-episode-steps", type=int, default=300, help="vla-demo's evaluation limit")
    parser.add_argument("--rates", type=float, nargs="*", default=[20, 50, 100])
    parser.add_argument("--delays", type=float, nargs="*", default=[0, 30, 60, 100])
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import multiprocessing as mp

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    from vla.envs import resolve_tasks

    _load(args.checkpoint, 2)
    tasks = resolve_tasks(args.tasks) if args.tasks else list(_policy.meta["env_tasks"])
    base = in_process(args, tasks, out)
    print(f"in-process lockstep: {base['mean_success_rate']:.1%} over {args.episodes} episodes x {len(tasks)} tasks")

    seeds = [args.seed + i for i in range(args.episodes)]
    # the goal's row first, then by delay: a partial run has the figures that matter most
    configs = sorted(((m, hz, d) for m in args.methods for hz in args.rates for d in args.delays),
                     key=lambda c: (not (c[1] == 50 and c[2] == 60), c[2], c[1], METHODS.index(c[0])))
    jobs = [{"method": m, "control_hz": hz, "delay_ms": d, "task": t, "seeds": seeds,
             "max_episode_steps": args.max_episode_steps} for m, hz, d in configs for t in tasks]
    log = out / "jobs.jsonl"
    done = {json.loads(line)["key"]: json.loads(line) for line in log.read_text().splitlines()} if log.exists() else {}
    todo = [j for j in jobs if job_key(j) not in done]
    print(f"{len(jobs)} jobs, {len(done)} done already, {len(todo)} to run on {args.workers} workers")
    with mp.get_context("spawn").Pool(args.workers, initializer=_load, initargs=(args.checkpoint, 1)) as pool:
        for result in pool.imap_unordered(run_job, todo):
            done[result["key"]] = result
            with log.open("a") as f:
                f.write(json.dumps(result) + "\n")
            print(f"{result['key']}: {np.mean(result['successes']):.0%} ({result['wall_s']:.0f} s)", flush=True)

    rows = []
    for m, hz, d in configs:
        parts = [done[job_key({"method": m, "control_hz": hz, "delay_ms": d, "task": t})] for t in tasks]
        successes = [s for p in parts for s in p["successes"]]
        jumps = [p["switch_jump"] for p in parts if p["switch_jump"] is not None]
        rows.append({"method": m, "control_hz": hz, "delay_ms": d, "success_rate": float(np.mean(successes)),
                     "episodes": len(successes), "delay_ticks": math.ceil(round(d * hz / 1000, 9)),
                     "switch_jump": float(np.mean(jumps)) if jumps else None,
                     "guard_holds": sum(p["guard_holds"] for p in parts),
                     "per_task": {p["task"]: float(np.mean(p["successes"])) for p in parts}})
    results = {"in_process": base["mean_success_rate"], "in_process_per_task":
               {t: r["success_rate"] for t, r in base["tasks"].items()}, "rows": rows, "tasks": tasks,
               "seeds": seeds, "checkpoint": args.checkpoint, "max_episode_steps": args.max_episode_steps,
               "wall_s": time.perf_counter() - t0}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print_table(results)
    plot(results, out / "control_latency.png")


def print_table(results: dict) -> None:
    print(f"\nin-process lockstep: {results['in_process']:.1%}")
    print(f"{'method':9} {'Hz':>5} {'delay ms':>9} {'ticks':>6} {'success':>8} {'vs lockstep':>12} {'switch jump':>12}")
    for r in sorted(results["rows"], key=lambda r: (r["control_hz"], r["delay_ms"], METHODS.index(r["method"]))):
        jump = f"{r['switch_jump']:.3f}" if r["switch_jump"] is not None else "-"
        print(f"{r['method']:9} {r['control_hz']:5g} {r['delay_ms']:9g} {r['delay_ticks']:6d} "
              f"{r['success_rate']:8.1%} {100 * (r['success_rate'] - results['in_process']):+11.1f}p {jump:>12}")


def plot(results: dict, path: Path) -> None:
    from vla.plots import plt

    rates = sorted({r["control_hz"] for r in results["rows"]})
    fig, axes = plt.subplots(1, len(rates), figsize=(4.2 * len(rates), 3.6), sharey=True, squeeze=False)
    for ax, hz in zip(axes[0], rates, strict=True):
        for method in METHODS:
            rows = sorted((r for r in results["rows"] if r["method"] == method and r["control_hz"] == hz),
                          key=lambda r: r["delay_ms"])
            if rows:
                ax.plot([r["delay_ms"] for r in rows], [100 * r["success_rate"] for r in rows], "o-", label=method)
        ax.axhline(100 * results["in_process"], color="gray", ls="--", label="in-process lockstep")
        ax.set(title=f"{hz:g} Hz", xlabel="injected inference delay (ms)", ylim=(-3, 103))
    axes[0][0].set_ylabel("success (%)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

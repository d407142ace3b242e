"""Our VLA against LeRobot's ACT and Diffusion Policy: same demonstrations, same wall-clock budget, same seeds.

    python benchmarks/vs_lerobot.py --config small --out runs/vs_lerobot_small
    python benchmarks/vs_lerobot.py --config default --out runs/vs_lerobot

1. Records the expert demonstrations (or reuses DIR/demos.zarr) and exports them as a LeRobotDataset.
2. Trains each policy for the same wall-clock budget on this machine. Ours runs `vla-train` on the zarr
   store; ACT and Diffusion Policy run `lerobot-train` (lerobot's own loop and settings, see
   vla/policies/lerobot_baselines.py) on the exported LeRobotDataset. A budget becomes a number of steps
   through a short calibration run of each trainer (not counted in the budget), and checkpoints are saved
   at fractions of it for the success-vs-time curve.
3. Evaluates every checkpoint with our evaluator (`vla.evaluate.evaluate_policy`) on the same held-out
   seeds, and measures inference (batch 1, ms per chunk and per executed action), parameters and peak
   training memory (RSS of the training process tree).
4. Prints one table, writes DIR/results.json and DIR/success_vs_time.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

# Evaluating Diffusion Policy costs about 12 minutes per checkpoint here (10 DDIM steps of a 250M U-Net per
# chunk, ~6 s per chunk for a batch of 10 envs on 2 cores), so its curve has only the final point.
CONFIGS = {
    # about 10 minutes of training per policy
    "small": {"tasks": ["drawer-close-v3", "door-open-v3", "door-close-v3"], "demos": 30, "budget_s": 600,
              "curve": {"vla": [0.5, 1.0], "act": [0.5, 1.0], "diffusion": [1.0]}, "eval_episodes": 10},
    # 15 minutes per policy; under 90 minutes on 2 cores in all
    "default": {"tasks": ["drawer-close-v3", "door-open-v3", "door-close-v3"], "demos": 30, "budget_s": 900,
                "curve": {"vla": [0.33, 0.67, 1.0], "act": [0.33, 0.67, 1.0], "diffusion": [1.0]},
                "eval_episodes": 10},
}
BATCH = {"vla": 32, "act": 8, "diffusion": 8}  # each trainer's default batch size (vla-train 32, lerobot-train 8)
EVAL_SEED = 100_000


class PeakRSS:
    """Peak resident memory of a process and its children, sampled every 0.2 s."""

    def __init__(self, pid: int):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_measured(cmd: list[str], log: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        rss = PeakRSS(proc.pid)
        rc = proc.wait()
    peak = rss.stop()
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed, see {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0, peak


def train_vla(store: Path, out: Path, steps: int, save_every: int) -> dict:
    cmd = [sys.executable, "-m", "vla.cli.train", f"dataset={store}", f"out={out}", f"steps={steps}",
           f"save_every={save_every}"]
    wall, peak = run_measured(cmd, out.parent / f"{out.name}.log")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ckpts = {int(p.name.split("_")[1]): p for p in (out / "checkpoints").glob("step_*")}
    return {"wall_s": wall, "peak_rss_bytes": peak, "samples_per_s": rows[-1]["samples_per_s"], "checkpoints": ckpts,
            "s_per_step": BATCH["vla"] / rows[-1]["samples_per_s"]}


def train_lerobot(name: str, root: Path, out: Path, steps: int, save_freq: int) -> dict:
    from vla.policies.lerobot_baselines import checkpoints_of, lerobot_train_command, step_seconds

    # Diffusion Policy warms its learning rate up over 500 steps, more than its whole budget here (~5 s per
    # step): scaled to a tenth of the run, like vla-train's 50 of 700. ACT uses a constant rate.
    extra = [f"--policy.scheduler_warmup_steps={min(500, max(1, steps // 10))}"] if name == "diffusion" else []
    cmd = lerobot_train_command(name, root, out, steps, BATCH[name], save_freq, extra=extra)
    log = out.parent / f"{out.name}.log"
    wall, peak = run_measured(cmd, log)
    step_s = step_seconds(log.read_text())
    s_per_step = float(np.median(step_s)) if step_s else wall / steps
    return {"wall_s": wall, "peak_rss_bytes": peak, "samples_per_s": BATCH[name] / s_per_step,
            "s_per_step": s_per_step, "checkpoints": checkpoints_of(out)}


def load_policy(name: str, ckpt: Path, schema):
    if name == "vla":
        from vla.policies.vla_policy import VLAPolicy

        return VLAPolicy.from_pretrained(ckpt)
    from vla.policies.lerobot_baselines import LeRobotPolicy

    return LeRobotPolicy.from_pretrained(ckpt, schema)


def inference_ms(policy, obs: dict, n: int = 10) -> tuple[float, float]:
    """(ms per chunk, ms per executed action) at batch 1."""
    from vla.policies.protocol import batch_observation

    batch = batch_observation(obs)
    policy.predict_chunk(batch)
    t0 = time.perf_counter()
    for _ in range(n):
        policy.predict_chunk(batch)
    per_chunk = (time.perf_counter() - t0) / n * 1000
    cfg = getattr(policy, "cfg", None) or getattr(policy.policy, "config", None)
    executed = getattr(cfg, "n_action_steps", 1)
    return per_chunk, per_chunk / executed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--out", required=True)
    parser.add_argument("--policies", default="vla,act,diffusion")
    parser.add_argument("--budget-s", type=float, default=None, help="override the config's budget per policy")
    args = parser.parse_args()
    started = time.perf_counter()
    cfg = dict(CONFIGS[args.config])
    if args.budget_s:
        cfg["budget_s"] = args.budget_s
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.policies.split(",")
    if unknown := [n for n in names if n not in BATCH]:
        parser.error(f"unknown policies {unknown}; have {sorted(BATCH)}")
    if existing := [str(out / n) for n in names if (out / n).exists()]:  # a finished run is never overwritten
        parser.error(f"{', '.join(existing)} already exist: move them aside to rerun those policies")

    from vla.datasets.episode_store import EpisodeStore
    from vla.datasets.lerobot_io import export_lerobot
    from vla.evaluate import evaluate_policy
    from vla.record import RecordConfig, record

    store, root = out / "demos.zarr", out / "demos_lerobot"
    if not store.exists():
        record(RecordConfig(tasks=cfg["tasks"], episodes=cfg["demos"], out=str(store)))
    if not root.exists():
        export_lerobot(store, root)
    schema = EpisodeStore.open(store).schema

    results: dict = {"config": {**cfg, "name": args.config}, "policies": {}}
    if (out / "results.json").is_file():  # a rerun of some policies keeps the others' results
        results["policies"] = json.loads((out / "results.json").read_text()).get("policies", {})
    for name in names:
        # calibrate: seconds per step of this trainer on this machine (short run, not counted; scratch)
        calib = out / f"{name}_calibration"
        shutil.rmtree(calib, ignore_errors=True)
        if name == "vla":
            s_per_step = train_vla(store, calib, steps=8, save_every=8)["s_per_step"]
        else:
            s_per_step = train_lerobot(name, root, calib, steps=12, save_freq=12)["s_per_step"]
        steps = max(10, int(cfg["budget_s"] / s_per_step))
        save_every = max(1, int(steps * cfg["curve"][name][0]))
        print(f"{name}: {s_per_step:.2f} s/step -> {steps} steps for {cfg['budget_s']:.0f} s", flush=True)
        run_dir = out / name
        trained = (train_vla(store, run_dir, steps, save_every) if name == "vla"
                   else train_lerobot(name, root, run_dir, steps, save_every))
        curve = []
        for step in sorted(trained["checkpoints"]):
            policy = load_policy(name, trained["checkpoints"][step], schema)
            ev = evaluate_policy(policy, cfg["tasks"], cfg["eval_episodes"], EVAL_SEED, 300, 10, schema,
                                 out=None, video=False)
            curve.append({"step": step, "train_s": step * trained["s_per_step"], "mean_success_rate":
                          ev["mean_success_rate"], "tasks": {t: r["success_rate"] for t, r in ev["tasks"].items()}})
            print(f"  {name} step {step}: mean success {ev['mean_success_rate']:.0%}", flush=True)
        final = curve[-1]
        obs = EpisodeStore.open(store).episode(0)
        obs = {**{k: obs[k][0] for k in schema.observation}, "task": obs["task"]}
        per_chunk, per_action = inference_ms(policy, obs)
        n_params = sum(p.numel() for p in (policy.model if name == "vla" else policy.policy).parameters())
        results["policies"][name] = {
            "tasks": final["tasks"], "mean_success_rate": final["mean_success_rate"],
            "train_samples_per_s": trained["samples_per_s"], "train_steps": steps, "train_wall_s": trained["wall_s"],
            "ms_per_action": per_action, "ms_per_chunk": per_chunk, "params": int(n_params),
            "peak_train_rss_gb": trained["peak_rss_bytes"] / 2**30, "curve": curve,
        }
        (out / "results.json").write_text(json.dumps(results, indent=2))

    print_table(results)
    plot_curves(results, out / "success_vs_time.png")
    wall = time.perf_counter() - started
    results["wall_s"] = wall  # this invocation's, for the policies it ran (recording included)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{wall / 60:.1f} min in all; saved {out / 'results.json'} and {out / 'success_vs_time.png'}")


def print_table(results: dict) -> None:
    tasks = results["config"]["tasks"]
    head = f"{'policy':10s}" + "".join(f"{t[:14]:>15s}" for t in tasks)
    print("\n" + head + f"{'mean':>7s}{'samples/s':>11s}{'ms/action':>10s}{'ms/chunk':>10s}{'params':>9s}{'peak GB':>8s}")
    for name, r in results["policies"].items():
        print(f"{name:10s}" + "".join(f"{r['tasks'][t]:>15.0%}" for t in tasks)
              + f"{r['mean_success_rate']:>7.0%}{r['train_samples_per_s']:>11.1f}{r['ms_per_action']:>10.1f}"
              + f"{r['ms_per_chunk']:>10.1f}{r['params'] / 1e6:>8.1f}M{r['peak_train_rss_gb']:>8.2f}")


def plot_curves(results: dict, path: Path) -> None:
    from vla.plots import plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, r in results["policies"].items():
        ax.plot([c["train_s"] / 60 for c in r["curve"]], [c["mean_success_rate"] for c in r["curve"]], "o-",
                label=name)
    ax.set(xlabel="training time (min, 2 CPU cores)", ylabel="mean success rate", ylim=(-0.05, 1.05),
           title=f"success vs training time ({results['config']['name']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()

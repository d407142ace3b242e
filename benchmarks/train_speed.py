"""Training samples/s of the embedded default and its loss at equal samples: today's configuration against
the new default, each lever added in turn, in one run on the same demonstrations, seeds and batches.

    python benchmarks/train_speed.py --out runs/train_speed [--steps 150] [--episodes 5] [--rounds 3]

The demonstrations are expert episodes of the MT10 tasks (recorded into DIR/demos.zarr once, then reused).
Every configuration trains `--steps` steps of batch 32 from the same seed with the real trainer
(`vla.train.train`), so each sees exactly the same batches; samples/s is measured after the first
`--warmup` steps (allocator and thread-pool warm-up), and the loss at equal samples is the mean training
loss over the last 10% of steps. Nothing else may run on the machine while it measures.

A shared 2-core machine's speed drifts by +-25% from one minute to the next (measured: one configuration
gave 107 and 146 samples/s in two passes an hour apart), so every configuration runs `--rounds` times, the
rounds interleaved (each round runs every configuration once), and its samples/s is the median of its
rounds. The loss is the same in every round (the same batches and seeds).

Writes DIR/results.json: {"configs": {name: {"samples_per_s", "loss_at_equal_samples", ...}}, "speedup"}
(speedup: the new default over today's) and DIR/train_speed.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

# The levers, each as (row name, its setting before this benchmark existed, its setting in the new default).
LEVERS = [
    ("+ fitted BPE prompt", "model.backbone.text_tokenizer=byt5", "model.backbone.text_tokenizer=bpe"),
    ("+ bf16 autocast", "precision=fp32", "precision=auto"),
    ("+ eager attention", "model.backbone.attention=sdpa", "model.backbone.attention=eager"),
    ("+ torch.compile", "compile=false", "compile=true"),
    ("+ one token per action step", "model.step_tokens=false", "model.step_tokens=true"),
    ("+ 2 vision layers, not 4 (new default)", "model.backbone.vision_layers=4", "model.backbone.vision_layers=2"),
]
TODAY = "today (byt5, fp32, sdpa)"  # every row steps a fused AdamW (the trainer has no other)
# Row 0 is "today"; row i turns on the first i levers and keeps the rest as they were; the last is the new default.
CONFIGS = {TODAY: [before for _, before, _ in LEVERS]} | {
    name: [after for _, _, after in LEVERS[: i + 1]] + [before for _, before, _ in LEVERS[i + 1 :]]
    for i, (name, _, _) in enumerate(LEVERS)}
NEW = LEVERS[-1][0]
BATCH_SIZE = 32


def record_demos(out: Path, episodes: int, suite: str = "mt10") -> Path:
    """`episodes` expert demonstrations per task of `suite` into out/demos.zarr, once; later runs reuse it."""
    from vla.envs import resolve_tasks
    from vla.record import RecordConfig, record

    store = out / "demos.zarr"
    if not store.exists():
        record(RecordConfig(tasks=resolve_tasks([suite]), episodes=episodes, out=str(store)))
    return store


def measure(store: Path, run_dir: Path, overrides: list[str], steps: int, warmup: int,
            trainer: tuple[str, ...] = ("-m", "vla.cli.train")) -> dict:
    """One configuration's run of the real trainer (`trainer`: the python arguments that start vla-train)."""
    from vla.train import METRICS_FILE

    if run_dir.exists():
        shutil.rmtree(run_dir)  # a half-finished measurement is not resumed: its timing would mix two runs
    # One process per configuration: accelerate's precision is fixed for the life of a process.
    subprocess.run([sys.executable, *trainer, f"dataset={store}", f"out={run_dir}", f"steps={steps}",
                    f"save_every={steps}", f"batch_size={BATCH_SIZE}", *overrides], check=True)
    rows = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
    first, last = rows[warmup - 1], rows[-1]
    rate = (last["step"] - first["step"]) * BATCH_SIZE / (last["time_s"] - first["time_s"])
    tail = rows[-max(1, steps // 10):]
    return {"samples_per_s": rate, "loss_at_equal_samples": float(np.mean([r["loss"] for r in tail])),
            "warmup_s": first["time_s"],  # the first steps, torch.compile's compilation included
            "samples": steps * BATCH_SIZE, "overrides": overrides, "losses": [r["loss"] for r in rows]}


def median_of_rounds(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """Each configuration's first-round row with its samples/s the median over the rounds (and each round's)."""
    configs = {}
    for name in rounds[0]:
        rates = [r[name]["samples_per_s"] for r in rounds]
        configs[name] = {**rounds[0][name], "samples_per_s": float(np.median(rates)), "rounds_samples_per_s": rates}
    return configs


def check_rounds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--rounds and --warmup within range (else the parser's error and exit 2); makes --out."""
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if not 1 <= args.warmup < args.steps:
        parser.error(f"--warmup must be in [1, --steps), got {args.warmup}")
    args.out.mkdir(parents=True, exist_ok=True)


def save(results: dict, out: Path, png: str) -> None:
    """out/results.json and the plot out/png; prints the speedup and where they are."""
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, out / png)
    speedup = f"speedup {results['speedup']:.2f}x; " if "speedup" in results else ""
    print(f"{speedup}{out / 'results.json'}, {out / png}")


def plot(results: dict, path: Path) -> None:
    from vla.plots import plt

    names = list(results["configs"])
    fig, (ax_rate, ax_loss) = plt.subplots(1, 2, figsize=(12, 4))
    rates = [results["configs"][n]["samples_per_s"] for n in names]
    bars = ax_rate.barh(names, rates, color="tab:blue")
    ax_rate.bar_label(bars, labels=[f"{r:.0f}" for r in rates])
    title = f"speedup {results['speedup']:.2f}x" if "speedup" in results else ""
    ax_rate.set(xlabel="training samples/s (2 CPU cores)", title=title)
    ax_rate.invert_yaxis()
    for n in names:
        ax_loss.plot(results["configs"][n]["losses"], lw=0.8, label=n)
    ax_loss.set(xlabel="step (same batches for every row)", ylabel="training loss", yscale="log")
    ax_loss.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/train_speed"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=5, help="expert demonstrations per MT10 task")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every configuration, interleaved; the median counts")
    args = parser.parse_args()
    check_rounds(parser, args)
    store = record_demos(args.out, args.episodes)
    rounds = [{name: measure(store, args.out / f"run{i}", overrides, args.steps, args.warmup)
               for i, (name, overrides) in enumerate(CONFIGS.items())} for _ in range(args.rounds)]
    configs = median_of_rounds(rounds)
    results = {"configs": configs, "speedup": configs[NEW]["samples_per_s"] / configs[TODAY]["samples_per_s"],
               "steps": args.steps, "rounds": args.rounds, "batch_size": BATCH_SIZE, "dataset": str(store)}
    print(f"\n{'configuration':<44} {'samples/s':>10} {'x today':>8} {'loss at equal samples':>22} {'warmup s':>9}")
    for name, r in configs.items():
        print(f"{name:<44} {r['samples_per_s']:>10.1f} {r['samples_per_s'] / configs[TODAY]['samples_per_s']:>8.2f} "
              f"{r['loss_at_equal_samples']:>22.4f} {r['warmup_s']:>9.1f}")
    save(results, args.out, "train_speed.png")


if __name__ == "__main__":
    main()

"""Figures the commands save beside their results."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss_curve(metrics_path: Path, out_png: Path) -> None:
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, (ax_loss, ax_l1) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(steps, [r["loss"] for r in rows], lw=0.8)
    ax_loss.set(xlabel="step", ylabel="loss (soft cross-entropy)", yscale="log", title="training loss")
    ax_l1.plot(steps, [r["l1"] for r in rows], lw=0.8, color="tab:orange")
    ax_l1.set(xlabel="step", ylabel="|expected - target| (normalized)", yscale="log", title="action L1")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_success(results: dict, out_png: Path, title: str = "success rate") -> None:
    tasks = list(results["tasks"])
    rates = [results["tasks"][t]["success_rate"] for t in tasks]
    fig, ax = plt.subplots(figsize=(1.2 * len(tasks) + 2.5, 3.5))
    bars = ax.bar(tasks, rates, color="tab:green")
    ax.bar_label(bars, labels=[f"{r:.0%}" for r in rates])
    ax.axhline(results["mean_success_rate"], ls="--", color="gray", label=f"mean {results['mean_success_rate']:.0%}")
    ax.set(ylim=(0, 1.1), ylabel="success rate", title=title)
    ax.legend(loc="lower right")
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)

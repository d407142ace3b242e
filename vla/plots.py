"""Figures the commands save beside their results."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np

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


def episode_frames_with_actions(images: np.ndarray, actions: np.ndarray, names: list[str], title: str) -> np.ndarray:
    """(T, H, W, 3) camera frames beside a plot of the (T, D) actions with a cursor at the current step.

    Returns (T, h, w, 3) uint8 video frames. The plot is drawn once; each frame moves the cursor only."""
    t_len = len(images)
    fig, (ax_img, ax_act) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
    shown = ax_img.imshow(images[0])
    ax_img.set_axis_off()
    ax_img.set_title(title, fontsize=9)
    for d in range(actions.shape[1]):
        ax_act.plot(actions[:, d], lw=1, label=names[d])
    cursor = ax_act.axvline(0, color="k", lw=0.8)
    ax_act.set(xlabel="step", ylabel="action", xlim=(0, max(t_len - 1, 1)))
    ax_act.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    frames = []
    for t in range(t_len):
        shown.set_data(images[t])
        cursor.set_xdata([t, t])
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return np.stack(frames)

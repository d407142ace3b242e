"""The tabletop policy's image encoder (`FilmCNN`, one per camera) on a CPU: forward and backward at the
trainer's batch under bf16 autocast, as it ran before session 22 and as it runs now, in one run on the same
weights and inputs.

    python benchmarks/film_cnn_speed.py --out runs/film_cnn_speed [--rounds 5] [--iters 10] [--batch-size 32]

- before: the pixels as the permuted (B, H, W, 3) view leaves them, channels-last, which every conv and norm
  after it keeps; FiLM in fp32, so each layer's modulated activations were promoted to fp32 and cast back;
- + NCHW pixels: contiguous images (`resize_normalize`);
- + bf16 FiLM, fused (now): the FiLM cast to the activations' dtype, one addcmul per layer.

A training step of the tabletop policy runs the encoder three times (both cameras, and the scene camera again
for the keypoint head's first-frame batch). Rounds are interleaved and each row is its median, since this
machine's speed drifts from one minute to the next. Nothing else may run while it measures.

Writes DIR/results.json: {"configs": {name: {"ms_per_pass": float, "rounds_ms": [float]}}, "speedup": float,
"max_abs_diff": float} (speedup: now over before; max_abs_diff: between their tokens) and DIR/film_cnn_speed.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vla.model.families.embedded import FilmCNN

SIDE, TOKENS, TEXT_HIDDEN = 96, 16, 256  # the tabletop benchmark's image size


def before(cnn: FilmCNN, pixels: torch.Tensor, film: torch.Tensor):
    """FilmCNN.forward as it was: the FiLM applied in its own (fp32) dtype."""
    x = pixels
    for i, (conv, norm) in enumerate(zip(cnn.convs, cnn.norms, strict=True)):
        x = torch.relu(norm(conv(x)) * (1 + film[:, i, 0, :, None, None]) + film[:, i, 1, :, None, None])
    return cnn.keypoints.tokens_and_points(x.flatten(2).transpose(1, 2))


def plot(results: dict, path: Path) -> None:
    from vla.plots import plt

    names = list(results["configs"])
    ms = [results["configs"][n]["ms_per_pass"] for n in names]
    fig, ax = plt.subplots(figsize=(8, 2.8))
    bars = ax.barh(names, ms, color="tab:blue")
    ax.bar_label(bars, labels=[f"{m:.0f} ms" for m in ms])
    ax.set(xlabel=f"ms per forward + backward, batch {results['batch']}, bf16 autocast ({results['threads']} threads)",
           title=f"FilmCNN: now {results['speedup']:.2f}x before")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def step(forward, pixels, film) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokens, points = forward(pixels, film)
    (tokens.float().square().mean() + points.square().mean()).backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10, help="timed passes per round, after 3 warm-up passes")
    parser.add_argument("--batch-size", type=int, default=32, help="images per pass (32: the tabletop trainer's)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    cnn = FilmCNN(TEXT_HIDDEN, SIDE, TOKENS)
    film = (torch.randn(args.batch_size, len(cnn.convs), 2, cnn.width) * 0.1).requires_grad_()
    hwc = torch.randn(args.batch_size, SIDE, SIDE, 3)
    channels_last, nchw = hwc.permute(0, 3, 1, 2), hwc.permute(0, 3, 1, 2).contiguous()
    configs = {
        "before (channels-last pixels, fp32 FiLM)": (lambda p, f: before(cnn, p, f), channels_last),
        "+ NCHW pixels": (lambda p, f: before(cnn, p, f), nchw),
        "+ bf16 FiLM, fused (now)": (cnn, nchw),
    }
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        old, new = before(cnn, channels_last, film)[0], cnn(nchw, film)[0]
    max_abs_diff = float((old.float() - new.float()).abs().max())

    rounds: dict[str, list[float]] = {name: [] for name in configs}
    for r in range(args.rounds):
        for name, (forward, pixels) in configs.items():
            for i in range(3 + args.iters):
                if i == 3:
                    t0 = time.perf_counter()
                step(forward, pixels, film)
                cnn.zero_grad(set_to_none=True)
                film.grad = None
            rounds[name].append((time.perf_counter() - t0) / args.iters * 1e3)
        print(f"round {r + 1}: " + ", ".join(f"{v[-1]:.0f} ms" for v in rounds.values()), flush=True)

    medians = {name: float(np.median(v)) for name, v in rounds.items()}
    base = medians[next(iter(medians))]
    results = {"configs": {name: {"ms_per_pass": medians[name], "rounds_ms": v} for name, v in rounds.items()},
               "speedup": base / medians[list(medians)[-1]], "max_abs_diff": max_abs_diff, "batch": args.batch_size,
               "image_size": SIDE, "threads": torch.get_num_threads()}
    print(f"\n{'configuration':45s} {'ms per pass (fwd+bwd)':>22s} {'x before':>9s}")
    for name, row in results["configs"].items():
        print(f"{name:45s} {row['ms_per_pass']:22.1f} {base / row['ms_per_pass']:9.2f}")
    print(f"tokens now against before: max abs difference {max_abs_diff:.3g} (bf16 rounding)")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "film_cnn_speed.png")


if __name__ == "__main__":
    main()

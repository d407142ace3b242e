"""Where a tabletop training step's time goes (session 39): the real trainer on tabletop.py's POLICY, compiled,
with timers around its parts, counted from step 20 on; a part inside another is indented under it. Records 20
expert demonstrations per skill into OUT_DIR/demos.zarr once, as benchmarks/tabletop_train_speed.py does.
Usage: step_profile.py OUT_DIR [STEPS] [vla-train overrides...]; `step_profile.py cnn BATCH`: one FilmCNN's forward
and backward alone, on BATCH random 96x96 images in bf16, compiled. Nothing else may run on the machine."""
import collections
import functools
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import accelerate
import torch
from tabletop import POLICY
from train_speed import record_demos

from vla.cli.config import load
from vla.datasets import chunk_dataset
from vla.model import vla_model
from vla.model.families import embedded
from vla.train import train

WARMUP = 20
PARTS = [  # (owner, method, label)
    (chunk_dataset.StepBatches, "__getitem__", "batch: gather and shift"),
    (chunk_dataset.ChunkDataset, "get_batch", "  gather (main and first frames)"),
    (vla_model.VLAModel, "build_prefix", "build_prefix (main and head)"),
    (vla_model.VLAModel, "forward", "model forward (loss)"),
    (embedded.EmbeddedBackbone, "image_features", "  FiLM CNNs, every camera (main batch)"),
    (vla_model.VLAModel, "keypoint_head_loss", "  keypoint head on first frames (its CNN included)"),
    (accelerate.Accelerator, "backward", "backward"),
    (accelerate.Accelerator, "clip_grad_norm_", "clip grad norm"),
    (torch.optim.AdamW, "step", "optimizer step"),
]
totals: dict[str, float] = collections.defaultdict(float)
clock = {"step": 0, "t0": 0.0}


def timed(owner, name: str, label: str) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if name == "forward" and owner is vla_model.VLAModel:  # one model forward per training step
            clock["step"] += 1
            if clock["step"] == WARMUP:
                clock["t0"] = time.perf_counter()
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if clock["step"] >= WARMUP:
                totals[label] += time.perf_counter() - t0

    setattr(owner, name, wrapper)


def cnn_alone(batch: int, repeats: int = 15) -> None:
    torch.manual_seed(0)
    cnn = torch.compile(embedded.FilmCNN(text_hidden=128, image_size=96, n_tokens=16))
    pixels, film = torch.randn(batch, 3, 96, 96), torch.zeros(batch, 4, 2, 32, requires_grad=True)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tokens, points = cnn(pixels, film)
        (tokens.float().sum() + points.float().sum()).backward()

    for _ in range(5):  # compiles
        step()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    print(f"FilmCNN forward and backward, batch {batch}: {1000 * (time.perf_counter() - t0) / repeats:.1f} ms")


def main() -> None:
    if sys.argv[1] == "cnn":
        return cnn_alone(int(sys.argv[2]))
    out, steps, overrides = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 80, sys.argv[3:]
    for part in PARTS:
        timed(*part)
    store = record_demos(out, 20, "tabletop")
    shutil.rmtree(out / "run", ignore_errors=True)
    train(load("train", [f"dataset={store}", f"out={out / 'run'}", f"steps={steps}", f"save_every={steps}",
                         *POLICY, "compile=true", *overrides]))
    wall, n = time.perf_counter() - clock["t0"], steps - WARMUP
    print(f"{n} steps timed: {wall / n:.3f} s a step ({32 * n / wall:.1f} samples/s)")
    for _, _, label in PARTS:
        print(f"{label:55s} {1000 * totals[label] / n:7.1f} ms a step {100 * totals[label] / wall:5.1f}%")


if __name__ == "__main__":
    main()

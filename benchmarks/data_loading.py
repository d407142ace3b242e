"""Training-loader throughput against what the trainer consumes, on 2 cores.

    python benchmarks/data_loading.py [--store data/demos.zarr] [--batches 30] [--out benchmarks/results]

Loads the batches `vla-train` draws (random frames, action chunks, random-shift augmentation) through the
same DataLoader, from the zarr store (in memory and streamed per batch from disk) and from the store
exported as a LeRobotDataset (videos decoded by LeRobot/PyAV per batch), with 0 and 2 worker processes.
Beside them: the samples/s the embedded-default model consumes in a training step (forward + backward +
AdamW at batch 32), measured in the same process. Records a small store first when --store is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def loader_rate(dataset, batch_size: int, batches: int, workers: int) -> float:
    from vla.datasets.chunk_dataset import StepBatches, step_loader

    loader = step_loader(StepBatches(dataset, batch_size, seed=0, shift_pixels=4), 0, batches + 2, workers)
    it = iter(loader)
    next(it), next(it)  # start-up (worker fork, first reads) is not throughput
    t0 = time.perf_counter()
    for _ in it:
        pass
    return batches * batch_size / (time.perf_counter() - t0)


def trainer_rate(source, batch_size: int, steps: int) -> float:
    from vla.datasets.chunk_dataset import ChunkDataset, StepBatches
    from vla.datasets.stats import store_stats
    from vla.model.vla_model import VLAConfig
    from vla.policies.vla_policy import VLAPolicy
    from vla.schema import ACTION_KEY, STATE_KEY, TASK_KEY

    cfg = VLAConfig()
    policy = VLAPolicy.create(cfg, source.schema, store_stats(source, [STATE_KEY, ACTION_KEY]), source.episode_tasks())
    model, tok = policy.model, policy.model.action_tokenizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = StepBatches(ChunkDataset(source, cfg.chunk_size), batch_size, seed=0)
    elapsed = 0.0
    for step in range(steps + 1):
        batch = batches[step]
        t0 = time.perf_counter()
        prefix = model.build_prefix(torch.from_numpy(batch["images"]), batch[STATE_KEY], batch[TASK_KEY])
        target = torch.from_numpy(tok.normalize(batch[ACTION_KEY]).reshape(batch_size, -1))
        mask = torch.from_numpy(np.repeat(~batch["action_is_pad"], tok.action_dim, axis=1))
        model(**prefix, target=target, target_mask=mask)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:  # the first step warms up allocations
            elapsed += time.perf_counter() - t0
    return steps * batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="data/demos.zarr")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    from vla.datasets.chunk_dataset import ChunkDataset
    from vla.datasets.episode_store import EpisodeStore
    from vla.datasets.lerobot_io import LeRobotSource, export_lerobot
    from vla.record import RecordConfig, record

    if not Path(args.store).exists():
        record(RecordConfig(tasks=["drawer-close-v3", "door-open-v3", "door-close-v3"], episodes=10,
                            out=args.store))
    store = EpisodeStore.open(args.store)
    tmp = Path(tempfile.mkdtemp(prefix="vla_bench_"))
    try:
        lerobot = LeRobotSource(export_lerobot(args.store, tmp / "lerobot"))
        sources = {"zarr, in memory": ChunkDataset(store, 8),
                   "zarr, streamed from disk": ChunkDataset(store, 8, max_memory_gb=0),
                   "LeRobotDataset (video)": ChunkDataset(lerobot, 8, max_memory_gb=0)}
        rows = []
        consumed = trainer_rate(store, args.batch_size, args.train_steps)
        for name, dataset in sources.items():
            for workers in (0, 2):
                n = args.batches if "LeRobot" not in name else max(args.batches // 5, 3)  # video is slow
                rate = loader_rate(dataset, args.batch_size, n, workers)
                rows.append({"source": name, "workers": workers, "samples_per_s": rate, "x_trainer": rate / consumed})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nstore {args.store}: {store.num_episodes} episodes, {store.num_frames} frames; "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}, {os.cpu_count()} cores")
    print(f"{'source':28s} {'workers':>7s} {'samples/s':>10s} {'x trainer':>10s}")
    for r in rows:
        print(f"{r['source']:28s} {r['workers']:7d} {r['samples_per_s']:10.0f} {r['x_trainer']:10.1f}")
    print(f"{'trainer (embedded default)':28s} {'':7s} {consumed:10.1f} {1:10.1f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_loading.json").write_text(json.dumps({"trainer_samples_per_s": consumed, "loaders": rows}, indent=2))
    from vla.plots import plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [f"{r['source']}\n{r['workers']} workers" for r in rows]
    ax.barh(labels, [r["samples_per_s"] for r in rows], color="tab:blue")
    ax.axvline(consumed, color="tab:red", ls="--", label=f"trainer consumes {consumed:.0f}/s")
    ax.axvline(10 * consumed, color="gray", ls=":", label="10x trainer")
    ax.set(xscale="log", xlabel="samples/s", title="training loader throughput (2 cores)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "data_loading.png", dpi=100)
    print(f"saved {out / 'data_loading.json'} and {out / 'data_loading.png'}")


if __name__ == "__main__":
    main()

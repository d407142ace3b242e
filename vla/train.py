"""Train the VLA on an episode store.

One loop for one CPU, one GPU or many (`accelerate launch --num_processes N -m vla.cli.train ...`): the
batch of step s on rank r is drawn from a generator seeded by (seed, s, r), so a resumed run sees exactly
the batches and augmentations it would have seen, and saves no RNG state. `num_workers` processes prepare
the batches ahead (the same batches as with none).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from vla.cpu_memory import keep_freed_memory, release_freed_memory
from vla.datasets.chunk_dataset import SAMPLING, ChunkDataset, StepBatches, open_source, step_loader, step_seed
from vla.datasets.renamings import EpisodeRenamings
from vla.datasets.stats import store_stats
from vla.model.vla_model import VLAConfig
from vla.plots import plot_loss_curve
from vla.policies.vla_policy import VLAPolicy
from vla.schema import ACTION_KEY, STATE_KEY, TASK_KEY

OPTIMIZER_FILE, TRAINER_STATE_FILE, METRICS_FILE = "optimizer.safetensors", "trainer_state.json", "metrics.jsonl"
PRECISIONS = ("auto", "bf16", "fp32")
# A compiled step of the embedded model (batch 32) saves ~0.05-0.07 s, and compiling costs 20-50 s: the 700
# steps of `make demo` took 230 s compiled against 210 s not (README), so it pays off from about 1000 steps.
COMPILE_FROM_STEPS = 1000


@dataclass
class TrainConfig:
    dataset: str = "data/demos.zarr"  # a zarr episode store or a LeRobotDataset root
    out: str = "runs/train"
    steps: int = 700
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    # Random-shift augmentation: pad by this many pixels, crop back at random. On a fixed camera it also moves a
    # goal a few pixels wide against the state: Meta-World trains with 0 (MT10 47.0 to 61.0%, README), the
    # tabletop measured level either way; `make demo`'s figures were measured with 4.
    shift_pixels: int = 4
    # How a batch's frames are drawn (chunk_dataset.SAMPLING): "frame", every frame alike; "episode", every
    # demonstration alike, whatever its length. On MT10 "episode" gave 69.5 and 71.0% over two training seeds
    # against 78.5 and 60.0% (benchmarks/results/metaworld_history.md): level on the mean, so "frame" stays.
    sampling: str = "frame"
    save_every: int = 500
    # A checkpoint holds the weights and the optimizer state (65-85 MB for Meta-World's model): MT50's 60000
    # steps, saved every 250, wrote 20 GB and filled the disk. Kept: the newest `keep_last` (resume reads the
    # newest) and every step divisible by `keep_every`, for probes that compare steps. keep_last=None keeps all.
    keep_last: int | None = 3
    keep_every: int | None = None
    num_workers: int | None = None  # loader processes; None: 0 when the images fit in memory, else 2
    max_memory_gb: float = 4.0  # images up to this size are read into memory, larger datasets per batch
    seed: int = 0
    resume: bool = False
    # "auto": bf16 autocast on a GPU, and on a CPU with native bf16 (AVX512-BF16/AMX; benchmarks/train_speed.py
    # measures the gain); otherwise fp32. Weights and optimizer state stay fp32 either way.
    precision: str = "auto"
    # torch.compile the backbone, every prompt padded to the longest training instruction so that one graph
    # serves every batch: compiling takes ~20-50 s on 2 cores, then each step is ~1.3x faster
    # (benchmarks/train_speed.py). None: compile a run of at least COMPILE_FROM_STEPS steps, where it pays off.
    compile: bool | None = None
    model: VLAConfig = field(default_factory=VLAConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = VLAConfig(**self.model)
        for name in ("steps", "batch_size", "save_every", "keep_last", "keep_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {self.sampling!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def mixed_precision(precision: str) -> str:
    """accelerate's mixed_precision for a TrainConfig.precision on this machine."""
    if precision == "auto":
        native = torch.cuda.is_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return "bf16" if native else "no"
    return {"bf16": "bf16", "fp32": "no"}[precision]


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "checkpoints").glob("step_*"))
    return ckpts[-1] if ckpts else None


def save_checkpoint(out: Path, policy: VLAPolicy, optimizer, step: int, train_s: float) -> Path:
    """out/checkpoints/step_N, written beside its place and renamed into it: a run killed while saving leaves
    no half-written checkpoint for `resume=true` to load (`latest_checkpoint` skips the hidden partial)."""
    final = out / "checkpoints" / f"step_{step:06d}"
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    policy.save_pretrained(partial)
    save_training_state(partial, optimizer, step, train_s)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def prune_checkpoints(out: Path, keep_last: int | None, keep_every: int | None) -> None:
    """Delete all but the newest `keep_last` checkpoints and those at steps divisible by `keep_every`."""
    if keep_last is None:
        return
    for ckpt in sorted((out / "checkpoints").glob("step_*"))[:-keep_last]:  # step_NNNNNN: name order is step order
        if keep_every is None or int(ckpt.name.removeprefix("step_")) % keep_every:
            shutil.rmtree(ckpt)


def save_training_state(directory: Path, optimizer, step: int, train_s: float) -> None:
    """train_s: wall seconds spent training up to this step, over every sitting (a sitting killed between two
    checkpoints loses the time since the last one, as it loses those steps)."""
    state = optimizer.state_dict()
    tensors = {f"{i}.{name}": v.detach().cpu().contiguous()
               for i, s in state["state"].items() for name, v in s.items()}
    save_file(tensors, str(directory / OPTIMIZER_FILE))
    meta = {"step": step, "train_s": train_s, "param_groups": state["param_groups"]}
    (directory / TRAINER_STATE_FILE).write_text(json.dumps(meta, indent=2))


def load_training_state(directory: Path, optimizer) -> tuple[int, float]:
    """-> (step, train_s) of a checkpoint, restoring the optimizer's state."""
    for name in (OPTIMIZER_FILE, TRAINER_STATE_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: cannot resume, {name} is missing")
    meta = json.loads((directory / TRAINER_STATE_FILE).read_text())
    state: dict[int, dict] = {}
    for key, value in load_file(str(directory / OPTIMIZER_FILE)).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"]), float(meta.get("train_s", 0.0))  # checkpoints before train_s count from 0


def training_meta(store, cfg: TrainConfig) -> dict:
    seeds: dict[str, list[int]] = {}
    for env_task, task, seed in zip(store.episode_env_tasks(), store.episode_tasks(),
                                    store.episode_meta("episode_seed").tolist(), strict=True):
        seeds.setdefault(env_task or task, []).append(seed)
    return {"dataset": str(store.path), "env_tasks": sorted(seeds), "train_seeds": seeds,
            "episodes": store.num_episodes, "frames": store.num_frames, "train_config": asdict(cfg)}


def train(cfg: TrainConfig) -> Path:
    """Train as `cfg` says; -> the output folder. What the run freed goes back to the OS once its data and model
    are gone, for the process may go on (the benchmarks evaluate where they trained): vla/cpu_memory.py."""
    try:
        return train_run(cfg)
    finally:
        release_freed_memory()


def train_run(cfg: TrainConfig) -> Path:
    sitting_start = time.perf_counter()
    accelerator = Accelerator(mixed_precision=mixed_precision(cfg.precision))
    if accelerator.device.type == "cpu":
        keep_freed_memory()
    out = Path(cfg.out)
    store = open_source(cfg.dataset)
    dataset = ChunkDataset(store, cfg.model.chunk_size, max_memory_gb=cfg.max_memory_gb)

    resume_from = latest_checkpoint(out) if cfg.resume else None
    if cfg.resume and resume_from is None:
        raise FileNotFoundError(f"resume=true but {out / 'checkpoints'} holds no checkpoint")
    if not cfg.resume and latest_checkpoint(out) is not None:
        raise FileExistsError(f"{out} already holds checkpoints; pass resume=true, or another out=")
    if resume_from is not None:
        policy = VLAPolicy.from_pretrained(resume_from, merge_lora=False)  # the adapters train on
        policy.schema.require_compatible(store.schema, f"dataset {cfg.dataset}")
    else:
        torch.manual_seed(cfg.seed)
        stats = store_stats(store, [STATE_KEY, ACTION_KEY])
        policy = VLAPolicy.create(cfg.model, store.schema, stats, store.episode_tasks(), training_meta(store, cfg))
    # the keypoint head's first frames renamed to other objects of their scenes (VLAConfig.final_state_renamed);
    # their instructions are the store's words in its templates, and the text tokenizer is fitted on the store's
    renamings = EpisodeRenamings(store) if cfg.model.final_state_renamed else None
    if renamings is not None and "final_state" not in policy.model.heads:
        raise ValueError("model.final_state_renamed relabels the keypoint head's first frames: it needs a keypoint "
                         "head (model.backbone.connector=film_cnn, or model.final_state_reads=image_tokens)")
    prompts = store.episode_tasks() + (renamings.instructions() if renamings else [])
    model = policy.model
    tok = model.action_tokenizer

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # all but what finetune froze
    decay = [p for n, p in trainable if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in trainable if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), fused=True,  # one kernel for all parameters (CPU and GPU alike)
    )
    start, earlier_s = load_training_state(resume_from, optimizer) if resume_from else (0, 0.0)
    # Imported here, not at the top: transformers' optimization module imports peft (~4 s on a 2-core AVX2 CPU),
    # which every process that only reads checkpoints or reports a bad override would otherwise pay.
    from transformers import get_cosine_schedule_with_warmup

    # The schedule is not restored but rebuilt for this run's `steps` at the resume point: a resumed run
    # with a larger `steps` must follow the longer schedule (a restored one had already decayed to 0).
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps, last_epoch=start - 1)
    model, optimizer = accelerator.prepare(model, optimizer)
    core = accelerator.unwrap_model(model)
    if cfg.compile or (cfg.compile is None and cfg.steps - start >= COMPILE_FROM_STEPS):
        core.text_length = max(len(core.text_ids(t)) for t in set(prompts))
        core.backbone.compile(training=True)

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / METRICS_FILE
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="training",
               disable=not accelerator.is_main_process)
    t0, seen = time.perf_counter(), 0
    batches = StepBatches(dataset, cfg.batch_size, cfg.seed, accelerator.process_index, cfg.shift_pixels,
                          cfg.sampling)
    model.train()
    # In memory, a batch is a few gathers (~1 ms) and worker processes would only add IPC; streamed from
    # disk, two workers keep decompression off the training process (benchmarks/data_loading.py).
    workers = cfg.num_workers if cfg.num_workers is not None else (0 if dataset.in_memory else 2)
    # A keypoint head learns from a batch of episodes' first frames of its own (VLAConfig.final_state_frames).
    anchors = dataset.first_frames(cfg.model.final_state_frames) if "final_state" in core.heads else None
    head_batch = cfg.model.final_state_batch or cfg.batch_size
    approach = None  # and, for the keyframe target only, frames on the way to the grasp (keyframe_approach_batch)
    if anchors is not None and cfg.model.keyframe_approach_batch:
        approach = dataset.approach_frames(cfg.model.final_state_frames)
        if len(approach) == 0:
            raise ValueError(f"{cfg.dataset}: model.keyframe_approach_batch needs episodes whose gripper changes "
                             "(a grasp), and no episode's does")
    for step, batch in zip(bar, step_loader(batches, start, cfg.steps, workers), strict=True):
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, accelerator.process_index))  # token dropout
        with accelerator.autocast():  # goal_tokens run the keypoint head here: in bf16, about half fp32's time
            prefix = core.build_prefix(torch.from_numpy(batch["images"]), batch[STATE_KEY], batch[TASK_KEY])
        target = torch.from_numpy(tok.normalize(batch[ACTION_KEY]).reshape(cfg.batch_size, -1))
        mask = torch.from_numpy(np.repeat(~batch["action_is_pad"], tok.action_dim, axis=1))
        first_frames = None
        if anchors is not None:
            rng = np.random.default_rng(gen.initial_seed())
            rows = rng.choice(anchors, head_batch)
            if approach is not None:
                rows = np.concatenate([rows, rng.choice(approach, cfg.model.keyframe_approach_batch)])
            first = dataset.get_batch(rows)
            if renamings is not None:  # the first frames only: approach frames are already heading for the object
                first = renamings.apply(first, dataset.episode_of_frame[rows[:head_batch]],
                                        cfg.model.final_state_renamed, rng)
            head_prefix = core.build_prefix(torch.from_numpy(first["images"]), first[STATE_KEY], first[TASK_KEY],
                                            head_only=True)
            first_frames = (head_prefix, first[STATE_KEY], first["final_state"], first["keyframe_state"],
                            None if approach is None else np.arange(len(rows)) < head_batch)
        with accelerator.autocast():
            result = model(prefix, target=target.to(accelerator.device), target_mask=mask.to(accelerator.device),
                           generator=gen, final_state=batch["final_state"], first_frames=first_frames)
        accelerator.backward(result["loss"])
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        seen += cfg.batch_size * accelerator.num_processes
        if accelerator.is_main_process:
            elapsed = time.perf_counter() - t0
            rate = seen / elapsed
            row = {"step": step + 1, "loss": result["loss"].item(), "l1": result["l1"].item(),
                   "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0], "samples_per_s": rate,
                   "time_s": elapsed}
            if "final_state_loss" in result:
                row["final_state_loss"] = result["final_state_loss"].item()
            with metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            bar.set_postfix(loss=f"{row['loss']:.3f}", l1=f"{row['l1']:.3f}", samples_s=f"{rate:.0f}")
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(out, policy, optimizer, step + 1, earlier_s + time.perf_counter() - sitting_start)
                prune_checkpoints(out, cfg.keep_last, cfg.keep_every)
                plot_loss_curve(metrics_path, out / "loss.png")
    bar.close()
    if accelerator.is_main_process:
        policy.save_pretrained(out)
    accelerator.wait_for_everyone()
    return out

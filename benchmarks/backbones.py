"""Each backbone family at its real size, and the embedded default: parameters, ms per action chunk at batch 1,
training samples/s and peak memory under each fine-tuning mode, on the CPU and on a GPU when there is one.

    python benchmarks/backbones.py --out runs/backbones [--families embedded,smolvlm2-500m,...] [--device cpu]

The pretrained families are built with random weights from their published architectures
(`vla/model/families/reference.py`), so nothing is downloaded; speed and memory do not depend on the values
of the weights. Every row runs in its own process, so its peak memory is its own (CPU: the process's max
RSS, which includes ~0.5 GB of Python, torch and transformers; GPU: torch's peak allocated memory).

- Input: one 224 x 224 camera (the embedded default: 96 x 96, its native size), an 8-dimensional state and a
  one-line instruction; chunks of 8 actions x 4 dimensions.
- ms_per_chunk: `predict_chunk` at batch 1, parallel decoding (one forward pass), the median of the timed
  repeats after a warm-up. Pretrained families infer in bf16, the embedded default in fp32 (its served dtype).
  On a GPU it is also measured with `compile` (torch.compile, CUDA graphs) as `ms_per_chunk_compiled`, in the
  row of one mode per model (`--compiled-mode`): every mode serves the same architecture (LoRA rows are timed
  merged), so one compile measures it and saves minutes of compiling.
  LoRA rows infer with the adapters merged, as a loaded checkpoint serves; `ms_per_chunk_unmerged` is before.
- Training: AdamW steps on the trainable parameters under bf16 autocast (the trainer's precision on this CPU
  and on a GPU), batch `--batch-size`. Modes: full; frozen_vision; lora (rank 16); lora_gc (LoRA with
  gradient checkpointing). A mode whose weights, gradients and AdamW state would not fit in memory
  (estimated from the parameter counts before building it) is reported as skipped, with the estimate.
- Weights: fp32 for the models below 1B parameters, bf16 for the 3B ones (as configs/backbone/*.yaml set).

Resumes: rows already in DIR/rows.jsonl are kept. Writes DIR/results.json ({"rows": [{"family", "size",
"device", "params", "ms_per_chunk", "train_mode", "train_samples_per_s", "peak_mem_gb", ...}]}) and
DIR/backbones.png. Nothing else may run on the machine while it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

MODELS = {  # name: (family, size, weights dtype)
    "embedded": ("embedded", "6M", "float32"),
    "smolvlm2-500m": ("smolvlm2", "500M", "float32"),
    "paligemma-3b": ("paligemma", "3B", "bfloat16"),
    "qwen2.5-vl-3b": ("qwen2_5_vl", "3B", "bfloat16"),
}
MODES = {  # name: BackboneConfig overrides
    "full": {"finetune": "full"},
    "frozen_vision": {"finetune": "frozen_vision"},
    "lora": {"finetune": "lora"},
    "lora_gc": {"finetune": "lora", "gradient_checkpointing": True},
}
INSTRUCTION = "put the red cube in the blue bowl"
STATE_DIM, ACTION_DIM, CHUNK = 8, 4, 8


def schema_for(image: int):
    from vla.schema import ACTION_KEY, STATE_KEY, Feature, Schema

    camera = "observation.images.front"
    return Schema(observation={camera: Feature(camera, (image, image, 3), "uint8"),
                               STATE_KEY: Feature(STATE_KEY, (STATE_DIM,), "float32")},
                  action=Feature(ACTION_KEY, (ACTION_DIM,), "float32"), fps=10)


def stats() -> dict:
    def one(dim):
        z, o = np.zeros(dim, np.float32), np.ones(dim, np.float32)
        return {"mean": z, "std": o, "min": -o, "max": o, "q01": -o, "q99": o}
    return {"observation.state": one(STATE_DIM), "action": one(ACTION_DIM)}


def build_policy(model: str, mode: str, device: str):
    from vla.model.backbone import BackboneConfig
    from vla.model.families.reference import PUBLISHED, random_backbone
    from vla.model.vla_model import VLAConfig, VLAModel
    from vla.policies.vla_policy import VLAPolicy

    dtype = MODELS[model][2]
    image = 96 if model == "embedded" else 224
    torch.manual_seed(0)
    if model == "embedded":
        cfg = VLAConfig(backbone=BackboneConfig(**MODES[mode]), chunk_size=CHUNK)
        policy = VLAPolicy.create(cfg, schema_for(image), stats(), [INSTRUCTION])
    else:
        # path only marks the backbone as a pretrained family's; the random one built here is passed in
        cfg = VLAConfig(backbone=BackboneConfig(path="(random)", attention="sdpa", dtype=dtype, **MODES[mode]),
                        chunk_size=CHUNK)
        with torch.device(device):  # initialized where it runs: a 3B model's random init is minutes on a CPU
            backbone = random_backbone(PUBLISHED[model](), VLAModel.n_new_tokens(cfg, ACTION_DIM),
                                       [VLAModel.prompt_text(INSTRUCTION)], dtype=dtype)
        policy = VLAPolicy.create(cfg, schema_for(image), stats(), [INSTRUCTION], backbone=backbone)
    policy.model.to(device)
    return policy, image


def observation(image: int, batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"observation.images.front": rng.integers(0, 256, (batch, image, image, 3), dtype=np.uint8),
            "observation.state": rng.uniform(-1, 1, (batch, STATE_DIM)).astype(np.float32),
            "task": [INSTRUCTION] * batch}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_train(policy, image: int, device: str, batch: int, steps: int) -> float:
    model = policy.model
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    obs = observation(image, batch)
    target = torch.rand(batch, model.n_action_values, device=device) * 2 - 1
    mask = torch.ones_like(target, dtype=torch.bool)
    images = torch.from_numpy(obs["observation.images.front"][:, None])
    times = []
    for _ in range(steps + 1):  # the first step warms up the allocator and kernels
        t0 = time.perf_counter()
        prefix = model.build_prefix(images, obs["observation.state"], obs["task"])
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(prefix, target, mask)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - t0)
    del optimizer
    return batch / statistics.median(times[1:])


def time_inference(policy, image: int, device: str, repeats: int) -> float:
    obs = observation(image, 1, seed=1)
    policy.model.eval()
    times = []
    for _ in range(repeats + 2):  # two warm-ups (a compiled model compiles in the first)
        sync(device)
        t0 = time.perf_counter()
        policy.predict_chunk(obs)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times[2:])


VISION_TOWERS = ("vision_model.", "vision_tower.", "visual.blocks.", "visual.patch_embed.")  # frozen_vision freezes


def memory_estimate_gb(model: str, mode: str) -> float:
    """Weights, plus gradients and AdamW's two moments of the trained parameters, before any activation."""
    from vla.model.families.reference import PUBLISHED, random_model

    if model == "embedded" or mode.startswith("lora"):
        return 0.0  # small enough either way
    with torch.device("meta"):
        named = list(random_model(PUBLISHED[model](), MODELS[model][2]).named_parameters())
    total = sum(p.numel() for _, p in named)
    trained = sum(p.numel() for n, p in named if mode == "full" or not any(t in n for t in VISION_TOWERS))
    width = 2 if MODELS[model][2] == "bfloat16" else 4
    return (total + 3 * trained) * width / 2**30


def available_gb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.get_device_properties(0).total_memory / 2**30
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def measure_row(model: str, mode: str, device: str, batch: int, steps: int, repeats: int, compile_: bool,
                compile_mode: str) -> dict:
    """One row, in this process (the parent runs each row in a fresh one)."""
    from vla.model.finetune import trainable_parameters

    family, size, dtype = MODELS[model]
    row = {"family": family, "size": size, "model": model, "device": device_name(device), "train_mode": mode,
           "weights_dtype": dtype, "batch_size": batch}
    need, have = memory_estimate_gb(model, mode), available_gb(device)
    if need > 0.8 * have:
        return {**row, "params": None, "ms_per_chunk": None, "train_samples_per_s": None, "peak_mem_gb": None,
                "skipped": f"weights + grads + AdamW need ~{need:.0f} GB, over 80% of the {device}'s {have:.0f} GB"}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    policy, image = build_policy(model, mode, device)
    trainable, total = trainable_parameters(policy.model)
    rate = time_train(policy, image, device, batch, steps)
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    if model != "embedded":
        policy.model.to(torch.bfloat16)
    if mode.startswith("lora"):  # served merged (from_pretrained folds the adapters in); unmerged for comparison
        row["ms_per_chunk_unmerged"] = time_inference(policy, image, device, repeats)
        policy.model.backbone.merge_lora()
    ms = time_inference(policy, image, device, repeats)
    row.update(params=total, trainable_params=trainable, ms_per_chunk=ms, train_samples_per_s=rate,
               peak_mem_gb=peak, inference_dtype=str(next(policy.model.parameters()).dtype).removeprefix("torch."))
    if compile_:
        policy.model.backbone.compile(mode=compile_mode)
        row["compile_mode"] = compile_mode
        try:
            row["ms_per_chunk_compiled"] = time_inference(policy, image, device, repeats)
        except Exception as error:  # noqa: BLE001 - compile errors share no base; reported in the row, the uncompiled figures stand
            row["ms_per_chunk_compiled"] = None
            row["compile_failed"] = f"{type(error).__name__}: {str(error)[:300]}"
            traceback.print_exc()  # where it failed, in the log
    return row


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def short_device(name: str) -> str:
    return "CPU" if name.startswith("cpu") else "GPU"


def plot(rows: list[dict], path: Path) -> None:
    from vla.plots import plt

    done = [r for r in rows if r.get("train_samples_per_s")]
    fig, (ax_ms, ax_rate) = plt.subplots(1, 2, figsize=(13, max(4.5, 0.25 * len(done))))
    firsts = {}
    for r in done:  # a model's inference once per device: its first row, or the one that also timed compiling
        key = (r["model"], r["device"])
        if key not in firsts or r.get("ms_per_chunk_compiled"):
            firsts[key] = r
    labels = [f"{m} ({short_device(d)})" for m, d in firsts]
    bars = ax_ms.barh(labels, [r["ms_per_chunk"] for r in firsts.values()], color="tab:blue", label="eager")
    ax_ms.bar_label(bars, labels=[f"{r['ms_per_chunk']:.0f}" for r in firsts.values()])
    compiled = [r.get("ms_per_chunk_compiled") or 0 for r in firsts.values()]
    bars = ax_ms.barh(labels, compiled, color="tab:green", height=0.4, label="compiled (CUDA graphs)")
    ax_ms.bar_label(bars, labels=[f"{c:.0f}" if c else "" for c in compiled], fontsize=7)
    ax_ms.set(xscale="log", xlabel="ms per chunk, batch 1, parallel decoding", title="inference")
    ax_ms.legend(loc="lower right", fontsize=7)
    ax_ms.invert_yaxis()
    labels = [f"{r['model']} {r['train_mode']} ({short_device(r['device'])})" for r in done]
    bars = ax_rate.barh(labels, [r["train_samples_per_s"] for r in done], color="tab:orange")
    ax_rate.bar_label(bars, labels=[f"{r['train_samples_per_s']:.2g}/s, {r['peak_mem_gb']:.1f} GB" for r in done],
                      fontsize=7)
    ax_rate.set(xscale="log", xlabel="training samples/s (label: peak memory)", title="fine-tuning")
    ax_rate.tick_params(axis="y", labelsize=7)
    ax_rate.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(rows: list[dict]) -> None:
    print(f"\n{'model':<15} {'device':<22} {'params':>8} {'ms/chunk':>9} {'mode':<14} {'train/s':>8} {'peak GB':>8}")
    for r in rows:
        if r.get("skipped"):
            print(f"{r['model']:<15} {r['device']:<22} {'':>8} {'':>9} {r['train_mode']:<14} skipped: {r['skipped']}")
            continue
        print(f"{r['model']:<15} {r['device']:<22} {r['params'] / 1e6:>7.0f}M {r['ms_per_chunk']:>9.1f} "
              f"{r['train_mode']:<14} {r['train_samples_per_s']:>8.2f} {r['peak_mem_gb']:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/backbones"))
    parser.add_argument("--families", default=",".join(MODELS), help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {list(MODES)}")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: the CPU, then the GPU too when there is one")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 for the embedded model, 2 on a "
                        "CPU and 8 on a GPU for the pretrained ones")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default: CPU 2, GPU 10)")
    parser.add_argument("--repeats", type=int, default=None, help="timed inferences (default: CPU 3, GPU 20)")
    parser.add_argument("--compiled-mode", default="full", help="the mode whose GPU row also times compiled "
                        "inference")
    parser.add_argument("--compile-mode", default="reduce-overhead", choices=["reduce-overhead", "default",
                        "max-autotune-no-cudagraphs"], help="torch.compile's mode for the compiled inference")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: measure one row and print it as JSON
    args = parser.parse_args()

    if args.row:
        model, mode, device = args.row.split(":")
        print("ROW " + json.dumps(measure_row(model, mode, device, args.batch_size, args.steps, args.repeats,
                                              compile_=device == "cuda" and mode == args.compiled_mode,
                                              compile_mode=args.compile_mode)))
        return
    models, modes = args.families.split(","), args.modes.split(",")
    for name, known in ((models, MODELS), (modes, MODES)):
        unknown = sorted(set(name) - set(known))
        if unknown:
            parser.error(f"unknown {unknown}; known: {list(known)}")
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.exists() else []
    rows = [r for r in rows if not r.get("skipped", "").startswith("failed")]  # a failed row is measured again
    done = {(r["model"], r["train_mode"], r["device"].split()[0] == "cpu") for r in rows}
    t0 = time.time()
    for device in devices:
        for model in models:
            for mode in modes:
                if (model, mode, device == "cpu") in done:
                    continue
                cpu = device == "cpu"
                batch = args.batch_size or (32 if model == "embedded" else (2 if cpu else 8))
                steps = args.steps or (2 if cpu else 10)
                repeats = args.repeats or (3 if cpu else 20)
                print(f"[{time.time() - t0:6.0f}s] {model} {mode} on {device} ...", flush=True)
                done_proc = subprocess.run(
                    [sys.executable, __file__, "--row", f"{model}:{mode}:{device}", "--batch-size", str(batch),
                     "--steps", str(steps), "--repeats", str(repeats), "--compiled-mode", args.compiled_mode,
                     "--compile-mode", args.compile_mode],
                    capture_output=True, text=True, check=False)
                lines = [ln for ln in done_proc.stdout.splitlines() if ln.startswith("ROW ")]
                if done_proc.returncode != 0 or not lines:
                    row = {"family": MODELS[model][0], "size": MODELS[model][1], "model": model,
                           "device": device, "train_mode": mode, "params": None, "ms_per_chunk": None,
                           "train_samples_per_s": None, "peak_mem_gb": None,
                           "skipped": f"failed (exit {done_proc.returncode}): {done_proc.stderr.strip()[-300:]}"}
                    print(done_proc.stderr[-4000:], file=sys.stderr)  # the whole cause, in the log
                else:
                    row = json.loads(lines[-1][4:])
                rows.append(row)
                with rows_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print_table([row])
    rows.sort(key=lambda r: (r["device"], list(MODELS).index(r["model"]), list(MODES).index(r["train_mode"])))
    (args.out / "results.json").write_text(json.dumps({"rows": rows}, indent=2))
    plot(rows, args.out / "backbones.png")
    print_table(rows)
    print(f"{args.out / 'results.json'}, {args.out / 'backbones.png'}")


if __name__ == "__main__":
    main()

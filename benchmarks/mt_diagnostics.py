"""Why a multi-task checkpoint fails: does it read its instruction, and does it fail on its own training seeds?

    python benchmarks/mt_diagnostics.py --run runs/mt10 [--closed-loop reach-v3,push-v3,window-open-v3]

Works on a `benchmarks/metaworld_mt.py` output directory (DIR/train the run, DIR/demos.zarr its data).
1. Instruction sensitivity: open-loop chunks on 64 training frames of a task, predicted with its own
   instruction, with the instruction of a task that shares its scene, and blanked; L1 to the demonstrated
   actions in normalized units. A policy that ignores its words scores the same in all three columns.
2. Closed loop on training seeds: success on seeds 0..19, whose demonstrations it was trained on, beside the
   held-out figure of DIR/eval. Equal figures mean the gap is closed-loop precision, not generalization.
Writes DIR/diagnostics.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

# Tasks whose scenes hold the same objects, so that only the instruction tells them apart.
SAME_SCENE = [("reach-v3", "push-v3"), ("push-v3", "pick-place-v3"), ("pick-place-v3", "reach-v3"),
              ("window-open-v3", "window-close-v3"), ("drawer-open-v3", "drawer-close-v3")]


def instruction_sensitivity(policy, store, frames: int = 64) -> dict[str, dict[str, float]]:
    from vla.datasets.chunk_dataset import ChunkDataset
    from vla.schema import ACTION_KEY, STATE_KEY, TASK_KEY

    dataset, tok = ChunkDataset(store, policy.cfg.chunk_size), policy.model.action_tokenizer
    rng = np.random.default_rng(0)
    instruction_of = {env_task: text for text, env_task in store.env_tasks.items()}
    episodes_of: dict[str, list[int]] = {}
    for episode, text in enumerate(store.episode_tasks()):
        episodes_of.setdefault(store.env_tasks[text], []).append(episode)
    rows = {}
    for task, other in SAME_SCENE:
        if task not in episodes_of or other not in instruction_of:
            continue
        candidates = np.concatenate([np.arange(*store.episode_bounds(e)) for e in episodes_of[task]])
        batch = dataset.get_batch(rng.choice(candidates, frames, replace=False))
        obs = {key: batch["images"][:, i] for i, key in enumerate(policy.schema.image_keys)}
        obs[STATE_KEY] = batch[STATE_KEY]
        target = tok.normalize(batch[ACTION_KEY])
        row = {}
        for name, text in (("own", instruction_of[task]), (f"as {other}", instruction_of[other]), ("blank", "")):
            obs[TASK_KEY] = [text] * frames
            row[name] = float(np.abs(tok.normalize(policy.predict_chunk(obs)) - target).mean())
        rows[task] = row
        print(f"{task:<18}" + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return rows


def training_seed_success(policy, tasks: list[str], episodes: int) -> dict[str, float]:
    from vla.evaluate import evaluate_policy

    result = evaluate_policy(policy, tasks, episodes, 0, None, episodes, policy.schema, out=None, video=False)
    return {t: r["success_rate"] for t, r in result["tasks"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a benchmarks/metaworld_mt.py --out directory")
    parser.add_argument("--closed-loop", default="reach-v3,push-v3,window-open-v3")
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    if not (args.run / "train" / "config.json").is_file():
        parser.error(f"{args.run / 'train'} holds no finished training run")

    from vla.datasets.episode_store import EpisodeStore
    from vla.policies.vla_policy import VLAPolicy

    policy = VLAPolicy.from_pretrained(args.run / "train")
    store = EpisodeStore.open(args.run / "demos.zarr")
    results = {"instruction_l1": instruction_sensitivity(policy, store)}
    tasks = args.closed_loop.split(",")
    results["training_seed_success"] = training_seed_success(policy, tasks, args.episodes)
    held_out = {t: json.loads((args.run / "eval" / f"{t}.json").read_text())["success_rate"]
                for t in tasks if (args.run / "eval" / f"{t}.json").is_file()}
    results["held_out_success"] = held_out
    for t in tasks:
        trained, held = results["training_seed_success"][t], held_out.get(t, float("nan"))
        print(f"{t:<18} training seeds {trained:.0%}  held-out {held:.0%}")
    (args.run / "diagnostics.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

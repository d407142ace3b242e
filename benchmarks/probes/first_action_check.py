"""Does a policy's first action depend on where the goal is? On the first stored frame of each training episode of
a run's store, per env task: the policy's first action against the demonstration's, as the spread across episodes
(std per arm axis, policy and demonstration) and their correlation per axis.

From Meta-World's fixed hand start the first state is the same in every episode, so only the image can say where
a reach or push goal is: a policy whose first action has no spread has not read the goal from the image, and later
in an episode the hand's position along its path says where it is heading (the shortcut the README describes).
Session 47 found reach-v3's first action constant across 50 training episodes (std 0.000) with random-shift
augmentation and correlated 0.87/0.88 (x/z) with the expert's without it.

Usage: first_action_check.py RUN_DIR [RUN_DIR...] [--steps 6000,12000,...]
RUN_DIR holds demos.zarr and train/, as metaworld_mt.py writes. `--steps` probes the training checkpoints saved at
those steps (train/checkpoints/step_NNNNNN) instead of the final weights: when, if ever, a run learned to find the goal.
Prints one JSON line per run, checkpoint and task. A checkpoint with a final-state head (`model.final_state_weight`)
also gets the head's guess, from the same first frames, of where the demonstration's hand ends and (with
`final_state_keyframe`) where it first grasps: the median distance in cm (`head_final_cm`, `head_keyframe_cm`).
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

from vla.datasets.chunk_dataset import ChunkDataset
from vla.datasets.episode_store import EpisodeStore
from vla.policies.vla_policy import VLAPolicy
from vla.schema import STATE_KEY, TASK_KEY

ARM = slice(0, 3)  # dx, dy, dz: the gripper's first command is the same in every demonstration


def first_frames(store: EpisodeStore) -> dict[str, tuple[np.ndarray, list[str]]]:
    """env task -> (the store's index of each of its episodes' first frame, their instructions)."""
    starts = np.r_[0, store.episode_ends[:-1]].astype(int)
    by_task: dict[str, tuple[list[int], list[str]]] = {}
    for start, task, instruction in zip(starts, store.episode_env_tasks(), store.episode_tasks(), strict=True):
        frames, instructions = by_task.setdefault(task, ([], []))
        frames.append(int(start))
        instructions.append(instruction)
    return {task: (np.asarray(frames), instructions) for task, (frames, instructions) in by_task.items()}


def head_errors(policy: VLAPolicy, dataset: ChunkDataset, frames: np.ndarray) -> dict:
    """The final-state head's guess from each of `frames` of where its demonstration's hand ends (and grasps):
    the median distance in cm of the hand's xyz (the state's first three values)."""
    model, batch = policy.model, dataset.get_batch(frames)
    prefix = model.build_prefix(torch.from_numpy(batch["images"]), batch[STATE_KEY], batch[TASK_KEY], head_only=True)
    d = batch[STATE_KEY].shape[1]
    guesses = model.goals(prefix, batch[STATE_KEY]).reshape(len(frames), -1, d)
    names = ["head_final_cm", "head_keyframe_cm"][: guesses.shape[1]]
    return {name: round(100 * float(np.median(np.linalg.norm(
                model.state_tokenizer.unnormalize(guesses[:, i])[:, :3] - batch[target][:, :3], axis=1))), 1)
            for i, (name, target) in enumerate(zip(names, ["final_state", "keyframe_state"]))}


def check(run: Path, step: int | None = None) -> list[dict]:
    weights = run / "train" if step is None else run / "train" / "checkpoints" / f"step_{step:06d}"
    if not weights.is_dir():
        sys.exit(f"no checkpoint at {weights}")
    policy = VLAPolicy.from_pretrained(weights)
    store = EpisodeStore.open(run / "demos.zarr")
    # the head's targets for a few first frames: the images stay on disk (max_memory_gb=0), not the whole store read in
    dataset = (ChunkDataset(store, policy.model.cfg.chunk_size, max_memory_gb=0) if "final_state" in policy.model.heads
               else None)
    rows = []
    for task, (frames, instructions) in sorted(first_frames(store).items()):
        batch = {key: store.array(key).get_orthogonal_selection((frames,))
                 for key in [*policy.schema.image_keys, STATE_KEY]}
        batch[TASK_KEY] = instructions
        predicted = policy.predict_chunk(batch)[:, 0, ARM]
        demonstrated = store.array(policy.schema.action.key).get_orthogonal_selection((frames,))[:, ARM]
        # None where an axis does not vary (reach's dy is always the clipped 1.0) or the policy's is constant
        corr = [round(float(np.corrcoef(p, d)[0, 1]), 2) if p.std() > 1e-6 and d.std() > 1e-6 else None
                for p, d in zip(predicted.T, demonstrated.T, strict=True)]
        rows.append({"run": str(run), "step": step, "task": task, "episodes": len(frames),
                     "std_policy": [round(float(x), 3) for x in predicted.std(0)],
                     "std_demo": [round(float(x), 3) for x in demonstrated.std(0)],
                     "corr": corr, "mae": round(float(np.abs(predicted - demonstrated).mean()), 3)})
        if dataset is not None:
            rows[-1].update(head_errors(policy, dataset, frames))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")], default=[None],
                        help="checkpoint steps to probe, comma-separated (default: the final weights)")
    args = parser.parse_args()
    for run in args.runs:
        for step in args.steps:
            for row in check(run, step):
                print(json.dumps(row))

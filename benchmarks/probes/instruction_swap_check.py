"""Does a Meta-World policy tell apart tasks that share one scene? reach-v3, push-v3 and pick-place-v3 load the same
table, puck and goal site; only the instruction (and where the goal is drawn) says which to do. On the first stored
frame of each training episode of those tasks, the policy's first chunk of arm actions under each of the three
instructions, against the chunk its demonstration took: the mean absolute error per (scene's task, instruction
given). A policy that reads the words does best on the diagonal; one whose row is flat does the same whatever it
is told (session 53's run in which push and pick-place fell when only reach's demonstrations changed).

Usage: instruction_swap_check.py RUN_DIR [RUN_DIR...]   (RUN_DIR holds demos.zarr and train/, as metaworld_mt.py
writes). Prints one JSON line per run and scene task.
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
from first_action_check import ARM, first_frames  # this folder is on sys.path when run as a script

from vla.datasets.episode_store import EpisodeStore
from vla.envs.metaworld.env import instruction
from vla.policies.vla_policy import VLAPolicy
from vla.schema import STATE_KEY, TASK_KEY

SHARED_SCENE = ("reach-v3", "push-v3", "pick-place-v3")


def check(run: Path) -> list[dict]:
    if not (run / "train").is_dir():
        sys.exit(f"no checkpoint at {run / 'train'}")
    policy = VLAPolicy.from_pretrained(run / "train")
    store = EpisodeStore.open(run / "demos.zarr")
    frames_of = first_frames(store)
    actions, steps = store.array(policy.schema.action.key), policy.model.cfg.chunk_size
    rows = []
    for scene in SHARED_SCENE:
        frames, _ = frames_of[scene]
        batch = {key: store.array(key).get_orthogonal_selection((frames,))
                 for key in [*policy.schema.image_keys, STATE_KEY]}
        # the demonstration's first `steps` actions (every demonstration is longer than one chunk)
        demonstrated = np.stack([actions[int(f):int(f) + steps][:, ARM] for f in frames])
        row = {"run": str(run), "scene": scene, "episodes": len(frames), "mae_by_instruction": {}}
        for told in SHARED_SCENE:
            predicted = policy.predict_chunk(batch | {TASK_KEY: [instruction(told)] * len(frames)})[:, :steps, ARM]
            row["mae_by_instruction"][told] = round(float(np.abs(predicted - demonstrated).mean()), 3)
        rows.append(row)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    for run in parser.parse_args().runs:
        for row in check(run):
            print(json.dumps(row))

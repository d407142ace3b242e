"""Why a tabletop policy's lift or place fails on the named object: where its fingertips are when it first
commands the gripper closed, and how high the object then rose.

Per episode (seeds 100000+, the evaluation's): success; the tcp's horizontal distance and height above the named
object's center at the first closing command (the expert closes within 0.8 cm of 0.5 cm below the center); how
many times the command flipped between open and closed; the object's highest rise; the instruction, and which
object the hand acted on, by how it relates to the named one (the same color, the same shape, neither); and what
the hand ended nearest (an object or a pad, by color and shape): a place that ends at the pad of the named object's
color took that color for the pad's.

Usage: grasp_diag.py CHECKPOINT lift|place EPISODES [SEED] [SPLIT]   (SPLIT: seen, heldout-compositions, ...)
"""
import json
import sys

import numpy as np

from vla.envs.tabletop.env import TabletopEnv
from vla.evaluate import stack_observations
from vla.policies.registry import load_policy

checkpoint, skill, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
seed0 = int(sys.argv[4]) if len(sys.argv) > 4 else 100_000
split = sys.argv[5] if len(sys.argv) > 5 else "seen"
policy = load_policy(checkpoint)
env = TabletopEnv(f"tabletop-{skill}" + ("" if split == "seen" else f"-{split}"))


def acted_on() -> str:
    """The object moved farthest (the env's `moved_object`), by its relation to the named one."""
    moved = env.moved_object()
    if moved is None:
        return "none"
    obj, goal = env.scene.objects[moved], env.goal
    same = (obj.color == goal.color, obj.shape == goal.shape)
    return {(True, True): "named", (True, False): "same color", (False, True): "same shape"}.get(same, "neither")


def ended_near() -> str:
    """The object or pad whose center is nearest the fingertips, across the table."""
    tcp = env.sim.tcp()[:2]
    places = {f"{o.color} {o.shape}": env.sim.object_pos(i)[:2] for i, o in enumerate(env.scene.objects)}
    places.update({f"{color} pad": np.asarray(xy) for color, xy in env.scene.pads})
    return min(places, key=lambda name: float(np.linalg.norm(places[name] - tcp)))


for seed in range(seed0, seed0 + n):
    obs, _ = env.reset(seed=seed)
    policy.reset()
    start_z, first_close, flips, last, rise, success = env.target_pos()[2], None, 0, None, 0.0, False
    for _ in range(env.max_episode_steps):
        action = policy.select_action(stack_observations([obs]))[0]
        closed = bool(action[3] > 0)
        if last is not None and closed != last:
            flips += 1
        last = closed
        if closed and first_close is None:
            offset = env.sim.tcp() - env.target_pos()
            first_close = (float(np.linalg.norm(offset[:2])), float(offset[2]))
        obs, _, terminated, truncated, info = env.step(action)
        rise = max(rise, float(env.target_pos()[2] - start_z))
        success = success or bool(info["is_success"])
        if terminated or truncated:
            break
    row = {"seed": seed, "success": success, "instruction": env.instruction, "acted": acted_on(), "flips": flips,
           "rise_cm": 100 * rise, "close_xy_cm": None if first_close is None else 100 * first_close[0],
           "close_dz_cm": None if first_close is None else 100 * first_close[1], "ended_near": ended_near()}
    print(json.dumps(row), flush=True)
env.close()

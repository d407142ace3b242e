"""How well can one camera place a Meta-World goal in 3D? A goal drawn from a box in space is seen from corner2 as a
point on a ray: every goal of the box along that ray looks alike, up to depth cues a 2-to-3-pixel site barely has.
For goals drawn uniformly from each task's goal box: the length of the ray's segment inside the box; how far the
posterior's mean misses (along the ray, proportional to t^2 for a uniform prior); and the best success any
single-view estimate could have (the window of the task's success distance that holds the most of the posterior),
assuming the goal's pixel is exact.
Geometry only: no rendering, no policy.
Usage: goal_depth_ambiguity.py [GOALS=4000]"""
import json
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np

from vla.envs.metaworld.env import MetaWorldEnv

# Meta-World v3's success distances: reach's tcp to the goal, pick-place's object to the goal
TASKS = {"reach-v3": 0.05, "pick-place-v3": 0.07}


def ray_segment(camera: np.ndarray, goal: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """Where the ray from the camera through `goal` enters and leaves the box [low, high] (distances from camera)."""
    direction = (goal - camera) / np.linalg.norm(goal - camera)
    with np.errstate(divide="ignore"):
        a, b = (low - camera) / direction, (high - camera) / direction
    return float(np.max(np.minimum(a, b))), float(np.min(np.maximum(a, b)))


def posterior(t0: float, t1: float, samples: int = 400) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(t0, t1, samples)
    return t, t**2 / (t**2).sum()


def best_window_mass(t: np.ndarray, weight: np.ndarray, tolerance: float) -> float:
    cumulative = np.concatenate([[0.0], np.cumsum(weight)])
    ends = np.searchsorted(t, t + 2 * tolerance, side="right")
    return float((cumulative[ends] - cumulative[np.arange(len(t))]).max())


goals = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
rng = np.random.default_rng(0)
for task, tolerance in TASKS.items():
    env = MetaWorldEnv(task)._env
    mujoco.mj_forward(env.model, env.data)
    camera = env.data.cam_xpos[env.model.camera("corner2").id].copy()
    low, high = np.asarray(env.goal_space.low), np.asarray(env.goal_space.high)
    lengths, ceiling, mean_miss = [], [], []
    for goal in rng.uniform(low, high, (goals, 3)):
        t0, t1 = ray_segment(camera, goal, low, high)
        t, weight = posterior(t0, t1)
        lengths.append(t1 - t0)
        ceiling.append(best_window_mass(t, weight, tolerance))
        mean_miss.append(abs((t * weight).sum() - np.linalg.norm(goal - camera)))
    print(json.dumps({"task": task, "goal_box": [low.round(3).tolist(), high.round(3).tolist()],
                      "success_within_cm": round(100 * tolerance, 1),
                      "ray_in_box_cm_median": round(100 * float(np.median(lengths)), 1),
                      "ray_in_box_cm_max": round(100 * float(np.max(lengths)), 1),
                      "posterior_mean_miss_cm_median": round(100 * float(np.median(mean_miss)), 1),
                      "single_view_ceiling": round(float(np.mean(ceiling)), 3)}))

"""Where does a push-v3, pick-place-v3 or peg-insert-side-v3 policy lose its episodes? On the evaluation seeds
(100000+), in closed loop with Meta-World's 500-step limit, per episode: success; the fingers' (tcp_center's) closest
approach to the puck; how high the puck rose and how far it moved; its closest approach to the goal and where it
ended. A failed episode is then one of: never reached the puck (closest approach over 3 cm), reached it without
moving it (under 2 cm), or moved it without ever bringing it within the task's success distance of the goal (push
5 cm, pick-place 7 cm, peg-insert-side 7 cm from the peg's head, y and z doubled: `MetaWorldEnv.object_to_goal`;
Meta-World's success is any step's, so an episode that got there succeeded). For peg-insert-side "the puck" is the
peg's grasp point.

Usage: object_diag.py CHECKPOINT TASK [EPISODES=20]   (TASK: push-v3, pick-place-v3 or peg-insert-side-v3)
"""
import json
import os
import sys
from collections import Counter

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

from vla.envs import make_env
from vla.policies.protocol import batch_observation
from vla.policies.vla_policy import VLAPolicy

SUCCESS_CM = {"push-v3": 5.0, "pick-place-v3": 7.0, "peg-insert-side-v3": 7.0}
checkpoint, task = sys.argv[1], sys.argv[2]
if task not in SUCCESS_CM:
    sys.exit(f"object_diag.py: task {task!r} is not one of {sorted(SUCCESS_CM)}")
episodes = int(sys.argv[3]) if len(sys.argv) > 3 else 20
policy = VLAPolicy.from_pretrained(checkpoint)
env = make_env(task, policy.schema, max_episode_steps=500)


def outcome(row: dict) -> str:
    if row["success"]:
        return "success"
    if row["fingers_to_puck_cm"] > 3:
        return "never reached the puck"
    if row["puck_moved_cm"] < 2:
        return "reached, did not move it"
    return "moved it, not to the goal"


rows = []
for seed in range(100000, 100000 + episodes):
    obs, _ = env.reset(seed=seed)
    sim = env.unwrapped
    raw = sim.privileged_observation()
    start = raw[4:7].copy()
    policy.reset()
    reach, rise, moved, to_goal, success, done = np.inf, 0.0, 0.0, np.inf, False, False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy.select_action(batch_observation(obs))[0])
        puck = sim.privileged_observation()[4:7]
        reach = min(reach, float(np.linalg.norm(sim.fingers_center() - puck)))
        rise, moved = max(rise, float(puck[2] - start[2])), max(moved, float(np.linalg.norm(puck - start)))
        to_goal = min(to_goal, sim.object_to_goal())
        success |= bool(info["is_success"])
        done = terminated or truncated or success
    rows.append({"seed": seed, "success": success, "fingers_to_puck_cm": round(100 * reach, 1),
                 "puck_rise_cm": round(100 * rise, 1), "puck_moved_cm": round(100 * moved, 1),
                 "puck_to_goal_closest_cm": round(100 * to_goal, 1),
                 "puck_to_goal_end_cm": round(100 * sim.object_to_goal(), 1)})
    rows[-1]["outcome"] = outcome(rows[-1])
    print(json.dumps(rows[-1]), flush=True)
print(json.dumps({"checkpoint": checkpoint, "task": task, "episodes": episodes,
                  "outcomes": dict(Counter(row["outcome"] for row in rows)),
                  "success_cm": SUCCESS_CM[task]}))

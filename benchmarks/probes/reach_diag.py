"""Where does a reach-v3 policy go wrong? On the evaluation seeds (100000+), the final-state head's predicted final
hand xyz from the first frame against the goal (a checkpoint trained with final_state_weight, the head reading
keypoints or image tokens), and in closed loop (200 steps) the hand's closest approach to the goal, where it ends,
and success. The hand is observation.state's end-effector, not the fingers' tcp_center that Meta-World's 5-cm
success check measures.
Usage: reach_diag.py CHECKPOINT [EPISODES=10]"""
import json
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

from vla.envs import make_env
from vla.policies.protocol import batch_observation
from vla.policies.vla_policy import VLAPolicy
from vla.schema import STATE_KEY

policy = VLAPolicy.from_pretrained(sys.argv[1])
model = policy.model
episodes = int(sys.argv[2]) if len(sys.argv) > 2 else 10
STEPS = 200
env = make_env("reach-v3", policy.schema, max_episode_steps=STEPS)
rows = []
for seed in range(100000, 100000 + episodes):
    obs, _ = env.reset(seed=seed)
    goal = env.unwrapped.privileged_observation()[-3:].copy()  # reach's goal position (the probe may read it)
    images = torch.from_numpy(np.stack([obs[k] for k in policy.schema.image_keys])[None])
    state = obs[STATE_KEY][None]
    with torch.no_grad():
        prefix = model.build_prefix(images, state, [obs["task"]])
        displacement = model.displacement(prefix, state).numpy()[:, :4]  # to the final state (not the keyframe)
    guess = model.state_tokenizer.unnormalize(displacement + model.state_tokenizer.normalize(state))[0, :3]
    policy.reset()
    closest, success = np.inf, False
    for _ in range(STEPS):
        obs, _, _, _, info = env.step(policy.select_action(batch_observation(obs))[0])
        closest = min(closest, np.linalg.norm(obs[STATE_KEY][:3] - goal))
        success |= info["is_success"]
        if success:
            break
    hand = obs[STATE_KEY][:3]
    rows.append({"seed": seed, "head_err_cm": round(100 * float(np.linalg.norm(guess - goal)), 1),
                 "closest_cm": round(100 * closest, 1), "final_cm": round(100 * float(np.linalg.norm(hand - goal)), 1),
                 "success": bool(success), "goal": np.round(goal, 3).tolist(), "hand_end": np.round(hand, 3).tolist()})
    print(json.dumps(rows[-1]), flush=True)
print(json.dumps({"head_err_cm_median": float(np.median([r["head_err_cm"] for r in rows])),
                  "closest_cm_median": float(np.median([r["closest_cm"] for r in rows])),
                  "successes": sum(r["success"] for r in rows)}))

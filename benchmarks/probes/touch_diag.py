"""Where does a touch policy go? Per episode: the object the hand came closest to (xy, any height) and how close,
target vs distractor. Grounding failure = close to a distractor; precision failure = nearest is target but > radius."""
import json
import sys
from pathlib import Path

import numpy as np

from vla.envs.registry import make_env
from vla.evaluate import stack_observations
from vla.policies.registry import load_policy

ckpt, n, seed0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 100000
policy = load_policy(ckpt, device="cpu")
B = 10
envs = [make_env("tabletop-touch", policy.schema, None) for _ in range(B)]
rows = []
for start in range(seed0, seed0 + n, B):
    seeds = list(range(start, start + B))
    obs = [e.reset(seed=s)[0] for e, s in zip(envs, seeds)]
    policy.reset()
    done = [False] * B
    best = [np.full(4, np.inf) for _ in range(B)]
    success = [False] * B
    for _ in range(envs[0].max_episode_steps):
        acts = policy.select_action(stack_observations(obs))
        for i, e in enumerate(envs):
            if done[i]:
                continue
            obs[i], _, term, trunc, info = e.step(acts[i])
            u = e.unwrapped
            tcp = u.sim.tcp()
            d = np.array([np.linalg.norm(tcp[:2] - u.sim.object_pos(k)[:2]) for k in range(len(u.scene.objects))])
            best[i] = np.minimum(best[i], d)
            success[i] = success[i] or info["is_success"]
            done[i] = term or trunc
        if all(done):
            break
    for i, e in enumerate(envs):
        t = e.unwrapped.target_index
        nearest = int(np.argmin(best[i]))
        rows.append({"seed": seeds[i], "success": bool(success[i]), "target_d": float(best[i][t]),
                         "nearest_is_target": nearest == t, "nearest_d": float(best[i][nearest])})
s = np.array([r["success"] for r in rows]); nt = np.array([r["nearest_is_target"] for r in rows])
td = np.array([r["target_d"] for r in rows]); nd = np.array([r["nearest_d"] for r in rows])
summary = {"episodes": len(rows), "success": float(s.mean()), "nearest_is_target": float(nt.mean()),
               "target_within_5cm": float((td < 0.05).mean()), "any_within_2_5cm": float((nd < 0.025).mean()),
               "any_within_5cm": float((nd < 0.05).mean()), "median_target_d": float(np.median(td)),
               "median_nearest_d": float(np.median(nd))}
print(json.dumps(summary, indent=1))
if len(sys.argv) > 4:
    Path(sys.argv[4]).write_text(json.dumps({"summary": summary, "rows": rows}))

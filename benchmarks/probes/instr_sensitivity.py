"""Does the first chunk depend on which object the instruction names? Same scene, each of its 4 objects named;
compare the predicted first-chunk xy direction with the expert's direction to each object."""
import sys

import numpy as np

from vla.envs.registry import make_env
from vla.policies.registry import load_policy

p = load_policy(sys.argv[1], device="cpu")
env = make_env("tabletop-touch", p.schema, None).unwrapped
cos_named, cos_other, spread = [], [], []
for seed in range(100000, 100030):
    obs, info = env.reset(seed=seed)
    hand = env.sim.tcp()
    preds, dirs = [], []
    for o in env.scene.objects:
        instr = f"touch the {o.color} {o.shape}"
        b = {k: (v[None] if k != "task" else [instr]) for k, v in obs.items()}
        p.reset()
        chunk = p.predict_chunk(b)[0]  # (H, 4)
        preds.append(chunk[:4, :2].mean(0))
        d = np.array(o.xy) - hand[:2]
        dirs.append(d / np.linalg.norm(d))
    preds = np.array(preds)
    spread.append(np.linalg.norm(preds - preds.mean(0), axis=1).mean() / (np.linalg.norm(preds, axis=1).mean() + 1e-9))
    for i in range(4):
        u = preds[i] / (np.linalg.norm(preds[i]) + 1e-9)
        cos_named.append(u @ dirs[i])
        cos_other.append(np.mean([u @ dirs[j] for j in range(4) if j != i]))
print(f"cos(pred, named obj dir) {np.mean(cos_named):.3f}  cos(pred, other objs) {np.mean(cos_other):.3f}  "
      f"relative spread across instructions {np.mean(spread):.3f}")

"""Does each tabletop run's keypoint head find the named object in new scenes, where its policy does or does not?

Scenes of one split (seeds 50000+, outside training and evaluation), first frames: how often the head's predicted
grasp point (lift, place: the keyframe) or end point (touch, push: the final state) is nearer the named object than
any other, and its median distance to it. On heldout-compositions, also split by the kind of pair held out: one
no training scene shows ("everywhere") or one only this skill never trained on as its target ("this skill"), and
where the point is nearest another object, whether that object shares the named one's color or its shape (session
45: is a held-out pair read as the trained pair of its color, or of its shape?).
For place, also split by whether the pad's color is an object's too, with the object the point is nearest then
(session 40: where a held-out pair's bigram is untrained, the pad's color word pulls the point to that object).

Usage: keypoint_head_check.py SCENES_PER_SKILL SPLIT RUN_DIR...   (SPLIT: seen, heldout-compositions, ...)
"""
import sys

import numpy as np
import torch

from vla.envs.tabletop.env import TabletopEnv
from vla.envs.tabletop.language import HELDOUT_PAIRS, SKILLS
from vla.policies.vla_policy import VLAPolicy
from vla.schema import STATE_KEY, TASK_KEY

N, split = int(sys.argv[1]), sys.argv[2]
scenes = {}
for skill in SKILLS:
    env = TabletopEnv(f"tabletop-{skill}" + ("" if split == "seen" else f"-{split}"))
    rows = []
    for seed in range(50000, 50000 + N):
        obs, _ = env.reset(seed=seed)
        xy = np.array([o.xy for o in env.scene.objects], np.float32)
        kind = "everywhere" if (env.goal.color, env.goal.shape) in HELDOUT_PAIRS else "this skill"
        pad_colored = [i for i, o in enumerate(env.scene.objects) if o.color == env.goal.pad and i != env.target_index]
        pairs = [(o.color, o.shape) for o in env.scene.objects]
        rows.append((obs, xy, env.target_index, kind, pad_colored, pairs))
    scenes[skill] = rows
    env.close()
for run in sys.argv[3:]:
    policy = VLAPolicy.from_pretrained(f"{run}/train")
    model, keys = policy.model.eval(), policy.schema.image_keys
    out = {}
    for skill, rows in scenes.items():
        images = torch.from_numpy(np.stack([np.stack([r[0][k] for k in keys]) for r in rows]))
        state = np.stack([r[0][STATE_KEY] for r in rows])
        with torch.no_grad():
            prefix = model.build_prefix(images, state, [r[0][TASK_KEY] for r in rows])
            disp = model.displacement(prefix, state).numpy()
        tok = model.state_tokenizer
        dim = state.shape[1]  # the head predicts the final state, then the keyframe, each less the state
        part = disp[:, dim : 2 * dim] if skill in ("lift", "place") else disp[:, :dim]
        point = tok.unnormalize(tok.normalize(state) + part)[:, :2]
        d = np.stack([np.linalg.norm(r[1] - p, axis=1) for r, p in zip(rows, point)])
        named = np.array([d[i, r[2]] < np.delete(d[i], r[2]).min() for i, r in enumerate(rows)])
        out[skill] = (named.mean(), np.median([d[i, r[2]] for i, r in enumerate(rows)]))
        if skill == "place":
            nearest = d.argmin(1)
            for clash in (True, False):
                picked = [(nearest[i] == r[2], nearest[i] in r[4]) for i, r in enumerate(rows) if bool(r[4]) == clash]
                print(f"  place, the pad's color {'also' if clash else 'not'} an object's: {len(picked)} scenes, "
                      f"nearest the named object in {sum(n for n, _ in picked)}"
                      + (f", the pad-colored one in {sum(c for _, c in picked)}" if clash else ""), flush=True)
        if split == "heldout-compositions":
            kinds = np.array([r[3] for r in rows])
            print(f"  {skill}: " + ", ".join(f"held out {k} {named[kinds == k].mean():.0%} of {(kinds == k).sum()}"
                                             for k in ("everywhere", "this skill")), flush=True)
            for k in ("everywhere", "this skill"):
                wrong = [(r[5][n], r[5][r[2]]) for n, r in zip(d.argmin(1), rows) if r[3] == k and n != r[2]]
                print(f"    held out {k}, nearest another object in {len(wrong)}: its color "
                      f"{sum(o[0] == g[0] for o, g in wrong)}, its shape {sum(o[1] == g[1] for o, g in wrong)}",
                      flush=True)
    mean = np.mean([v[0] for v in out.values()])
    per_skill = " ".join(f"{s} {v[0]:.0%} ({100 * v[1]:.1f} cm)" for s, v in out.items())
    print(run, split, f"nearer named {mean:.0%}", per_skill, flush=True)

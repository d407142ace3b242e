"""(v2: trained on and scored at the start of episodes) Can the VLA backbone ground at all? Supervised: (both cameras, state, instruction) -> the named object's table xy,
read from the last prefix position by a linear head (or, with read=keypoints, by an MLP on the image keypoints'
coordinates in the first camera, as final_state_weight's head reads them), MSE, on the touch training store; error on
held-out scenes. schedule=constant keeps the learning rate at 1e-3 (default: one-cycle); beta2 is AdamW's (default
0.95, the trainer's).
Usage: ground_probe.py STEPS [read=keypoints] [schedule=constant] [beta2=0.999] [backbone overrides k=v ...]"""
import json
import sys
import time

import numpy as np
import torch

from vla.datasets.chunk_dataset import ChunkDataset
from vla.datasets.episode_store import EpisodeStore
from vla.datasets.stats import store_stats
from vla.envs.tabletop.env import sample_episode
from vla.model.backbone import BackboneConfig
from vla.model.vla_model import VLAConfig
from vla.policies.vla_policy import VLAPolicy
from vla.schema import ACTION_KEY, STATE_KEY

steps = int(sys.argv[1])
over = dict(a.split("=") for a in sys.argv[2:])
over = {k: (v == "true" if v in ("true", "false") else v) for k, v in over.items()}
read = over.pop("read", "prefix")
schedule = over.pop("schedule", "one-cycle")
beta2 = float(over.pop("beta2", 0.95))
torch.manual_seed(0)

def others(store):
    out = []
    for e in range(store.num_episodes):
        scene, goal = sample_episode("touch", "seen", int(store.episode_meta("episode_seed")[e]))
        out.append([o.xy for o in scene.objects if (o.color, o.shape) != (goal.color, goal.shape)])
    return np.array(out, np.float32)

def targets(store):
    xy = []
    for e in range(store.num_episodes):
        ep_seed = int(store.episode_meta("episode_seed")[e])
        scene, goal = sample_episode("touch", "seen", ep_seed)
        xy.append(next(o.xy for o in scene.objects if (o.color, o.shape) == (goal.color, goal.shape)))
    return np.array(xy, np.float32)

train, held = EpisodeStore.open("runs/touch1k/demos.zarr"), EpisodeStore.open("runs/touch1k/heldout.zarr")
ds_t, ds_h = ChunkDataset(train, 8), ChunkDataset(held, 8)
xy_t, xy_h = targets(train), targets(held)
others_h = others(held)
mu, sd = xy_t.mean(0), xy_t.std(0)
# only the first 5 frames of each episode (the hand still far from every object: where the target is must be found)
first = lambda st: np.concatenate([np.arange(a, a + 5) for a in np.concatenate([[0], st.episode_ends[:-1]])])
first_t, first_h = first(train), np.concatenate([[0], held.episode_ends[:-1]])
stats = store_stats(train, [STATE_KEY, ACTION_KEY])
cfg = VLAConfig(backbone=BackboneConfig(**over))
policy = VLAPolicy.create(cfg, train.schema, stats, train.tasks)
model = policy.model
if read == "keypoints":
    head = torch.nn.Sequential(torch.nn.Linear(model.n_head_points, 256),
                               torch.nn.GELU(), torch.nn.Linear(256, 2))
else:
    head = torch.nn.Linear(cfg.backbone.text_hidden, 2)
params = list(model.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, beta2))
sched = (torch.optim.lr_scheduler.ConstantLR(opt, 1.0) if schedule == "constant" else
         torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.05))

def predict(ds, idx):
    b = ds.get_batch(idx)
    prefix = model.build_prefix(torch.from_numpy(b["images"]), b[STATE_KEY], b["task"])
    if read == "keypoints":
        return head(model.backbone.first_camera_keypoints(prefix))
    return head(model.backbone(prefix).last_hidden_state[:, -1])

rng = np.random.default_rng(0)
t0 = time.time()
for s in range(steps):
    idx = first_t[rng.integers(0, len(first_t), 32)]
    y = torch.from_numpy((xy_t[ds_t.episode_of_frame[idx]] - mu) / sd)
    loss = torch.nn.functional.mse_loss(predict(ds_t, idx), y)
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    if s % 250 == 0 or s == steps - 1:
        with torch.no_grad():
            idx = first_h
            pred = predict(ds_h, idx).numpy() * sd + mu
            err = np.linalg.norm(pred - xy_h[ds_h.episode_of_frame[idx]], axis=1)
            base = np.linalg.norm(mu - xy_h[ds_h.episode_of_frame[idx]], axis=1)
            oth = np.linalg.norm(pred[:, None] - others_h[ds_h.episode_of_frame[idx]], axis=2).min(1)
        print(json.dumps({"step": s, "train_loss": round(loss.item(), 4), "heldout_err_cm": round(100 * float(np.median(err)), 2),
                              "mean_guess_cm": round(100 * float(np.median(base)), 2),
                              "nearer_named": round(float((err < oth).mean()), 3), "t": round(time.time() - t0)}), flush=True)

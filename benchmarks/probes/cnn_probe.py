"""Is "where is the named object" learnable from this data at all? A small from-scratch CNN with FiLM from a
bag of the instruction's words (the classic language-conditioned BC encoder: BC-Z / RT-1 style) and a spatial
softmax, trained with MSE on the first 5 frames of each demo (scene camera only), scored on the first frame of
the 40 held-out scenes. Usage: cnn_probe.py STEPS [gn=true] [beta2=0.95]
gn=true: group norm (affine=False) before each FiLM, as the policy's FilmCNN; beta2: AdamW's (default 0.999;
the trainer's is 0.95)."""
import json
import sys
import time

import numpy as np
import torch
from torch import nn

from vla.datasets.episode_store import EpisodeStore
from vla.envs.tabletop.env import sample_episode

torch.manual_seed(0)
steps = int(sys.argv[1])
opts = dict(a.split("=") for a in sys.argv[2:])
group_norm, beta2 = opts.get("gn") == "true", float(opts.get("beta2", 0.999))
def load(path, k):
    st = EpisodeStore.open(path)
    starts = np.concatenate([[0], st.episode_ends[:-1]])
    idx = np.concatenate([np.arange(a, a + k) for a in starts])
    img = np.asarray(st.array("observation.images.scene")[:])[idx]
    ep = np.repeat(np.arange(len(starts)), k)
    tasks, xy, others = st.episode_tasks(), [], []
    for e in range(len(starts)):
        scene, goal = sample_episode("touch", "seen", int(st.episode_meta("episode_seed")[e]))
        xy.append(next(o.xy for o in scene.objects if (o.color, o.shape) == (goal.color, goal.shape)))
        others.append([o.xy for o in scene.objects if (o.color, o.shape) != (goal.color, goal.shape)])
    return img, ep, tasks, np.array(xy, np.float32), np.array(others, np.float32)
ti, te, tt, txy, _ = load("runs/touch1k/demos.zarr", 5)
hi, he, ht, hxy, hoth = load("runs/touch1k/heldout.zarr", 1)
vocab = {w: i for i, w in enumerate(sorted({w for t in tt + ht for w in t.lower().split()}))}
def bow(texts):
    x = torch.zeros(len(texts), len(vocab))
    for i, t in enumerate(texts):
        for w in t.lower().split():
            x[i, vocab[w]] = 1
    return x
mu, sd = txy.mean(0), txy.std(0)

class Net(nn.Module):
    def __init__(self, c=32):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3, c, 5, 2, 2), nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1)])
        self.norms = nn.ModuleList([nn.GroupNorm(8, c, affine=False) if group_norm else nn.Identity()
                                    for _ in self.convs])
        self.film = nn.Linear(len(vocab), 2 * c * len(self.convs))
        nn.init.zeros_(self.film.weight); nn.init.zeros_(self.film.bias)
        self.keys = nn.Conv2d(c, 8, 1)
        self.out = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2))
        self.c = c
    def forward(self, img, words):
        x = img.permute(0, 3, 1, 2).float() / 127.5 - 1
        f = self.film(words).view(len(img), len(self.convs), 2, self.c)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = torch.relu(norm(conv(x)) * (1 + f[:, i, 0, :, None, None]) + f[:, i, 1, :, None, None])
        logits = self.keys(x).flatten(2)  # (B, 8, HW)
        h, w = x.shape[-2:]
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        grid = torch.stack([xs.flatten(), ys.flatten()], 1)
        kp = logits.softmax(-1) @ grid  # (B, 8, 2)
        return self.out(kp.flatten(1))
net = Net()
opt = torch.optim.AdamW(net.parameters(), 1e-3, betas=(0.9, beta2))
rng = np.random.default_rng(0)
t0 = time.time()
for s in range(steps):
    i = rng.integers(0, len(ti), 32)
    y = torch.from_numpy((txy[te[i]] - mu) / sd)
    loss = nn.functional.mse_loss(net(torch.from_numpy(ti[i]), bow([tt[e] for e in te[i]])), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if s % 250 == 0 or s == steps - 1:
        with torch.no_grad():
            pred = net(torch.from_numpy(hi), bow(ht)).numpy() * sd + mu
        err = np.linalg.norm(pred - hxy, axis=1); oth = np.linalg.norm(pred[:, None] - hoth, axis=2).min(1)
        print(json.dumps({"step": s, "train_loss": round(loss.item(), 4), "heldout_err_cm": round(100 * float(np.median(err)), 2),
                              "nearer_named": round(float((err < oth).mean()), 3), "t": round(time.time() - t0)}), flush=True)

"""Which part of the policy's film_cnn encoder keeps it from learning where the named object is, when
cnn_probe.py's own network learns it (to ~1 cm on new scenes in 1000 steps)? The policy's FilmCNN for the scene
camera, built by VLAPolicy.create, is trained on cnn_probe's task (MSE to the named object's xy from the
keypoints, first 5 frames of each demo, scored on the first frame of the 40 held-out scenes), with its FiLM from:
  film=bow     a zero-initialized linear map of the instruction's bag of words (cnn_probe's);
  film=policy  the policy's InstructionFiLM (since session 16 a bag of the instruction's token unigrams and
               bigrams; before, one transformer layer over the prompt's token embeddings, mean-pooled);
  film=mean    a zero-initialized linear map of the mean of the instruction's token embeddings;
  film=mean_ln the same, each embedding layer-normalized before the mean.
The pixels are the policy's own (`build_prefix`'s pixel_values). AdamW lr 1e-3, betas (0.9, 0.95), constant.
precision=bf16 runs the forward under bf16 autocast, as the trainer does on a CPU with bf16 (default fp32).
Usage: encoder_bisect.py STEPS film=bow|policy|mean|mean_ln [precision=bf16]"""
import json
import sys
import time

import numpy as np
import torch
from torch import nn

from vla.datasets.chunk_dataset import ChunkDataset
from vla.datasets.episode_store import EpisodeStore
from vla.datasets.stats import store_stats
from vla.envs.tabletop.env import sample_episode
from vla.model.backbone import BackboneConfig
from vla.model.vla_model import VLAConfig
from vla.policies.vla_policy import VLAPolicy
from vla.schema import ACTION_KEY, STATE_KEY

steps = int(sys.argv[1])
opts = dict(a.split("=") for a in sys.argv[2:])
film_source, bf16 = opts.get("film", "policy"), opts.get("precision") == "bf16"
torch.manual_seed(0)


def scenes(store):
    named, others = [], []
    for e in range(store.num_episodes):
        scene, goal = sample_episode("touch", "seen", int(store.episode_meta("episode_seed")[e]))
        named.append(next(o.xy for o in scene.objects if (o.color, o.shape) == (goal.color, goal.shape)))
        others.append([o.xy for o in scene.objects if (o.color, o.shape) != (goal.color, goal.shape)])
    return np.array(named, np.float32), np.array(others, np.float32)


train, held = EpisodeStore.open("runs/touch1k/demos.zarr"), EpisodeStore.open("runs/touch1k/heldout.zarr")
ds_t, ds_h = ChunkDataset(train, 8), ChunkDataset(held, 8)
(xy_t, _), (xy_h, others_h) = scenes(train), scenes(held)
mu, sd = xy_t.mean(0), xy_t.std(0)
first_t = np.concatenate([np.arange(a, a + 5) for a in np.concatenate([[0], train.episode_ends[:-1]])])
first_h = np.concatenate([[0], held.episode_ends[:-1]])
policy = VLAPolicy.create(VLAConfig(backbone=BackboneConfig(connector="film_cnn")), train.schema,
                          store_stats(train, [STATE_KEY, ACTION_KEY]), train.tasks)
backbone = policy.model.backbone
cnn = backbone.cnns[0]
layers, width = len(cnn.convs), cnn.width
vocab = {w: i for i, w in enumerate(sorted({w for t in train.tasks + held.tasks for w in t.lower().split()}))}
bow_film = nn.Linear(len(vocab), 2 * layers * width)
nn.init.zeros_(bow_film.weight)
nn.init.zeros_(bow_film.bias)
mean_film = nn.Linear(backbone.model.config.text_config.hidden_size, 2 * layers * width)
nn.init.zeros_(mean_film.weight)
nn.init.zeros_(mean_film.bias)
head = nn.Sequential(nn.Linear(2 * cnn.keypoints.attend.out_features, 256), nn.GELU(), nn.Linear(256, 2))
params = [*cnn.parameters(), *head.parameters()] + (
    [*bow_film.parameters()] if film_source == "bow" else
    [*backbone.film.parameters()] if film_source == "policy" else
    [*mean_film.parameters(), backbone.model.get_input_embeddings().weight])
opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95))


def bow(texts):
    x = torch.zeros(len(texts), len(vocab))
    for i, t in enumerate(texts):
        for w in t.lower().split():
            x[i, vocab[w]] = 1
    return x


def predict(ds, idx):
    b = ds.get_batch(idx)
    prefix = policy.model.build_prefix(torch.from_numpy(b["images"]), b[STATE_KEY], b["task"])
    if film_source == "bow":
        film = bow_film(bow(b["task"])).view(-1, layers, 2, width)
    elif film_source == "policy":
        film = backbone.film(prefix["instruction_ids"])[..., :width]  # the first camera's channels
    else:
        mask = prefix["instruction_ids"] >= 0
        embeds = backbone.model.get_input_embeddings()(prefix["input_ids"][:, : mask.shape[1]])
        if film_source == "mean_ln":
            embeds = nn.functional.layer_norm(embeds, embeds.shape[-1:])
        w = mask[..., None].float()
        film = mean_film((embeds * w).sum(1) / w.sum(1)).view(-1, layers, 2, width)
    _, points = cnn(prefix["pixel_values"][:, 0], film)
    return head(points.flatten(1))


rng = np.random.default_rng(0)
t0 = time.time()
for s in range(steps):
    idx = first_t[rng.integers(0, len(first_t), 32)]
    y = torch.from_numpy((xy_t[ds_t.episode_of_frame[idx]] - mu) / sd)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        pred = predict(ds_t, idx)
    loss = nn.functional.mse_loss(pred.float(), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if s % 250 == 0 or s == steps - 1:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = predict(ds_h, first_h).float().numpy() * sd + mu
        err = np.linalg.norm(pred - xy_h, axis=1)
        nearest_other = np.linalg.norm(pred[:, None] - others_h, axis=2).min(1)
        print(json.dumps({"step": s, "film": film_source, "bf16": bf16, "train_loss": round(loss.item(), 4),
                          "heldout_err_cm": round(100 * float(np.median(err)), 2),
                          "nearer_named": round(float((err < nearest_other).mean()), 3), "t": round(time.time() - t0)}),
              flush=True)

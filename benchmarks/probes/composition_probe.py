"""Can the tabletop policy's image encoder find a named object whose color-shape pair was never named in training?

The tabletop benchmark's policy acts on the named object in 92% of seen episodes but 48% of held-out-composition
ones (README). This probe asks the encoder alone: first frames of every skill's seen episodes (scene camera,
the hand at its drawn start), the named object's xy as the target (MSE), scored on the first frames of new seen
scenes and of held-out-composition scenes (median error, and how often the guess is nearer the named object
than any other). The readout is an MLP on the encoder's keypoints, as the policy's keypoint head is.

Encoders (`film=`):
  ngram    the policy's FilmCNN with its InstructionFiLM (a bag of word unigrams and bigrams; `bigram_dropout=`,
           `dropout_per=instruction|bigram`);
  none     the FilmCNN with no FiLM (the words enter only through `factors`);
`factors=K` (default 0) adds K language-selected spatial maps whose logits are summed into one keypoint
(`FactoredAttention`): each factor pools the instruction's words by content attention into a query and scores
every cell of the CNN's last features against it, so that the sum of logits is a product of likelihoods, an AND
of what the factors pick (a color, a shape) that holds for a pair never seen together.

`find=1` replaces the factors by a Find module per word (`WordFind`).
`context=1` lets each factor's choice of word see the next word too ("blue" before "pad", not "cube").

Usage: composition_probe.py STEPS [film=ngram|none] [bigram_dropout=0.5] [dropout_per=instruction] [factors=0]
       [context=0] [find=0] [factored=0] [positional=0] [counterfactual=0] [seed=0] [scenes=400]
       [scenes_version=v3|v2|v1]
`factored=R` adds the FiLM's factored bigrams of rank R (model.backbone.film_factored_rank); `positional=1` its
positional unigrams (model.backbone.film_positional). `counterfactual=P` (session 56) names another object of
the scene in that share of the training samples (below). `seed=` the initialization's and the batches' seed.
Renders and caches the scenes in runs/probe_scenes/compositions_<scenes>_v3.npz on first use (~1 s per 10 scenes).
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vla.envs.tabletop.env import TabletopEnv
from vla.envs.tabletop.language import HELDOUT_PAIRS, SKILLS, seen_pairs
from vla.envs.tabletop.scene import COLORS, SHAPES
from vla.model.families.embedded import FilmCNN, InstructionFiLM

steps = int(sys.argv[1])
opts = dict(a.split("=") for a in sys.argv[2:])
film_kind, bigram_dropout = opts.get("film", "ngram"), float(opts.get("bigram_dropout", 0.5))
n_factors, n_scenes = int(opts.get("factors", 0)), int(opts.get("scenes", 400))
context = opts.get("context", "0") == "1"
dropout_per = opts.get("dropout_per", "instruction")
factored_rank = int(opts.get("factored", 0))  # the FiLM's factored bigrams (InstructionFiLM.factored_rank)
positional = opts.get("positional", "0") == "1"  # the FiLM's positional unigrams (InstructionFiLM.positional)
# counterfactual=P: that share of training samples names, in the same template, another object of the scene whose
# pair the skill trains as a target (never a held-out one), with that object's xy as the target: each image is
# asked for all its objects, so the same color word meets both shapes (and the shape word both colors) in one scene
counterfactual = float(opts.get("counterfactual", 0))
seed = int(opts.get("seed", 0))
torch.manual_seed(seed)


def render(split: str, per_skill: int, first_seed: int) -> dict[str, np.ndarray]:
    images, named, others, texts, objects_xy, pairs, targets = [], [], [], [], [], [], []
    for skill in SKILLS:
        env = TabletopEnv(f"tabletop-{skill}" + ("" if split == "seen" else f"-{split}"), cameras=("scene",))
        for seed in range(first_seed, first_seed + per_skill):
            obs, _ = env.reset(seed=seed)
            objects = [np.asarray(o.xy, np.float32) for o in env.scene.objects]
            images.append(obs["observation.images.scene"])
            named.append(objects[env.target_index])
            others.append([xy for i, xy in enumerate(objects) if i != env.target_index])
            texts.append(env.instruction)
            objects_xy.append(objects)
            pairs.append([o.name for o in env.scene.objects])
            targets.append(env.target_index)
        env.close()
    return dict(images=np.stack(images), named=np.stack(named), others=np.array(others), texts=np.array(texts),
                objects=np.array(objects_xy), pairs=np.array(pairs), target=np.array(targets))


# v2 (session 21): training scenes hold no held-out pair, even as a distractor (language.HELDOUT_PAIRS); the
# held-out-composition scenes are as before. v3 (session 56): v2 with every object's pair and xy (counterfactual=),
# rendered under the split of session 44. `scenes_version=v1|v2` reads a cache rendered before (the code that
# renders them is gone: they are read only where they are kept)
version = opts.get("scenes_version", "v3")
cache = Path(f"runs/probe_scenes/compositions_{n_scenes}_{version}.npz")
if version != "v3" and not cache.exists():
    sys.exit(f"{cache}: no such cache (only v3 can be rendered)")
if not cache.exists():
    cache.parent.mkdir(parents=True, exist_ok=True)
    parts = {"train": render("seen", n_scenes, 0), "seen": render("seen", 50, 100000),
             "heldout": render("heldout-compositions", 50, 100000)}
    np.savez_compressed(cache, **{f"{p}_{k}": v for p, d in parts.items() for k, v in d.items()})
data = np.load(cache)
split = {p: {k[len(p) + 1:]: data[k] for k in data.files if k.startswith(f"{p}_")}
         for p in ("train", "seen", "heldout")}
if counterfactual and "pairs" not in split["train"]:
    sys.exit(f"counterfactual= needs the objects' pairs, which {cache} (scenes_version={version}) does not keep")
words = sorted({w for p in split.values() for t in p["texts"] for w in t.split()})
vocab = {w: i + 1 for i, w in enumerate(words)}  # 0 pads


def word_ids(texts) -> torch.Tensor:
    rows = [[vocab[w] for w in t.split()] for t in texts]
    out = torch.full((len(rows), max(map(len, rows))), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


class FactoredAttention(nn.Module):
    """K spatial maps over a feature grid, each selected by the instruction, summed as logits into one map."""

    def __init__(self, vocab_size: int, width: int, n_factors: int, dim: int = 32, context: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab_size + 1, dim)
        # each factor's content attention over the words: from the word alone, or (context) from the word and the
        # next one, additively, so that "blue" before "pad" and "blue" before "cube" can go to different factors
        self.select = nn.Linear(2 * dim if context else dim, n_factors)
        self.context = context
        self.keys = nn.Conv2d(width, n_factors * dim, 1)
        self.n, self.dim = n_factors, dim

    def forward(self, features: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) features, (N, L) word ids (-1 pads) -> (N, 2) the expected grid (x, y) of the summed map."""
        mask = ids >= 0
        e = self.embed(ids.clamp(min=0)) * mask[..., None]  # (N, L, d)
        both = torch.cat([e, nn.functional.pad(e[:, 1:], (0, 0, 0, 1))], -1) if self.context else e
        scores = self.select(both).masked_fill(~mask[..., None], -1e9).softmax(1)  # (N, L, K)
        queries = torch.einsum("nlk,nld->nkd", scores, e)
        n, _, h, w = features.shape
        keys = self.keys(features).view(n, self.n, self.dim, h * w)
        logits = torch.einsum("nkd,nkdp->np", queries, keys) / self.dim**0.5
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        return logits.softmax(-1) @ torch.stack([xs.flatten(), ys.flatten()], 1)


class WordFind(nn.Module):
    """A neural-module-network Find per word (Andreas et al. 2016; Bahdanau et al. 2019 found such modules
    generalize to held-out pairs where FiLM on the whole question did less): each word alone FiLMs the trunk's last
    features into its own logit map, and the maps are summed, each weighted by a gate from the word and the next
    word (additively, so a held-out pair's gates are its words' own). A pair never named is then the sum of
    maps each trained on its own."""

    def __init__(self, vocab_size: int, width: int, dim: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size + 1, dim)
        self.gate = nn.Linear(2 * dim, 1)
        self.film = nn.Linear(dim, 2 * width)
        nn.init.zeros_(self.film.weight), nn.init.zeros_(self.film.bias)
        self.mix = nn.Conv2d(width, width, 1)
        self.score = nn.Conv2d(width, 1, 1)

    def forward(self, features: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        mask = ids >= 0
        e = self.embed(ids.clamp(min=0)) * mask[..., None]  # (N, L, d)
        gates = torch.sigmoid(self.gate(torch.cat([e, nn.functional.pad(e[:, 1:], (0, 0, 0, 1))], -1)))[..., 0]
        gates = gates * mask
        n, c, h, w = features.shape
        scale, shift = self.film(e).view(n, -1, 2, c).unbind(2)  # (N, L, C) each
        x = self.mix(features)[:, None] * (1 + scale[..., None, None]) + shift[..., None, None]  # (N, L, C, H, W)
        maps = self.score(torch.relu(x).flatten(0, 1)).view(n, -1, h * w)  # (N, L, HW)
        logits = (gates[..., None] * maps).sum(1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        return logits.softmax(-1) @ torch.stack([xs.flatten(), ys.flatten()], 1)


class Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.cnn = FilmCNN(text_hidden=64, image_size=96, n_tokens=16)
        layers, width = len(self.cnn.convs), self.cnn.width
        self.film = InstructionFiLM(width, layers, bigram_dropout=bigram_dropout, dropout_per=dropout_per,
                                    factored_rank=factored_rank, positional=positional) if film_kind == "ngram" else None
        self.factored = (WordFind(len(vocab), width) if opts.get("find") == "1" else
                         FactoredAttention(len(vocab), width, n_factors, context=context) if n_factors else None)
        n_in = 2 * 16 + 2 * (self.factored is not None)  # the keypoints, and the factored map's point
        self.head = nn.Sequential(nn.Linear(n_in, 256), nn.GELU(), nn.Linear(256, 2))
        self.layers, self.width = layers, width

    def forward(self, images: np.ndarray, texts) -> torch.Tensor:
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        ids = word_ids(texts)
        film = (self.film(ids) if self.film is not None else
                torch.zeros(len(ids), self.layers, 2, self.width))
        # FilmCNN.forward, unrolled to keep its last feature grid for the factors
        x = pixels
        for i, (conv, norm) in enumerate(zip(self.cnn.convs, self.cnn.norms, strict=True)):
            x = torch.relu(norm(conv(x)) * (1 + film[:, i, 0, :, None, None]) + film[:, i, 1, :, None, None])
        _, points = self.cnn.keypoints.tokens_and_points(x.flatten(2).transpose(1, 2))
        parts = [points.flatten(1)] + ([self.factored(x, ids)] if self.factored is not None else [])
        return self.head(torch.cat(parts, 1))


net = Probe()
opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.95))
train = split["train"]
mu, sd = train["named"].mean(0), train["named"].std(0)
rng = np.random.default_rng(seed)
t0 = time.time()


def named_pair(text: str) -> tuple[str, str]:
    words = text.split()
    return next((a, b) for a, b in zip(words, words[1:], strict=False) if a in COLORS and b in SHAPES)


def score(part: dict) -> dict:
    with torch.no_grad():
        pred = net(part["images"], part["texts"]).numpy() * sd + mu
    err = np.linalg.norm(pred - part["named"], axis=1)
    is_global = np.array([named_pair(t) in HELDOUT_PAIRS for t in part["texts"]])
    other = np.linalg.norm(pred[:, None] - part["others"], axis=2).min(1)
    nearer = err < other
    return {"err_cm": round(100 * float(np.median(err)), 2), "nearer_named": round(float(nearer.mean()), 3),
            # the parts hold 50 scenes of each skill, in SKILLS' order
            "by_skill": dict(zip(SKILLS, np.round(nearer.reshape(len(SKILLS), -1).mean(1), 2).tolist(), strict=True)),
            "err_cm_by_skill": dict(zip(SKILLS, np.round(100 * np.median(err.reshape(len(SKILLS), -1), 1), 2).tolist(),
                                        strict=True)),
            # held-out-composition targets: held out everywhere (HELDOUT_PAIRS) or only for their skill
            **({"by_kind": {kind: round(float(nearer[is_global == want].mean()), 3)
                            for kind, want in (("everywhere", True), ("one_skill", False))}} if is_global.any() else {})}


def training_batch(i: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The instructions and target xy of training scenes i; with counterfactual=P, that share renamed to another
    object of the scene whose pair the scene's skill trains as a target."""
    texts, xy = list(train["texts"][i]), train["named"][i].copy()
    for row, scene in enumerate(i):
        if rng.random() >= counterfactual:
            continue
        skill = SKILLS[scene // n_scenes]  # the training part holds n_scenes scenes of each skill, in SKILLS' order
        names = train["pairs"][scene]
        allowed = [k for k, name in enumerate(names) if tuple(name.split()) in seen_pairs(skill)]
        k = allowed[rng.integers(len(allowed))]
        texts[row] = texts[row].replace(names[train["target"][scene]], names[k], 1)
        xy[row] = train["objects"][scene][k]
    return texts, xy


for s in range(steps):
    net.train()
    i = rng.integers(0, len(train["images"]), 32)
    texts, xy = training_batch(i)
    loss = nn.functional.mse_loss(net(train["images"][i], np.array(texts)), torch.from_numpy((xy - mu) / sd))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if (s + 1) % 250 == 0 or s == steps - 1:
        net.eval()
        print(json.dumps({"step": s + 1, **{k: v for k, v in opts.items()}, "train_loss": round(loss.item(), 4),
                          "seen": score(split["seen"]), "heldout_compositions": score(split["heldout"]),
                          "t": round(time.time() - t0)}), flush=True)

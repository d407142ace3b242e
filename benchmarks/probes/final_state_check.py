"""How well does final_state_weight's head (the keypoint MLP, or the prompt positions without keypoints) predict
the episode's final hand xy on held-out scenes, against the named object's xy and the nearest other object's?"""
import sys

import numpy as np
import torch

from vla.datasets.chunk_dataset import ChunkDataset
from vla.datasets.episode_store import EpisodeStore
from vla.envs.tabletop.env import sample_episode
from vla.policies.vla_policy import VLAPolicy
from vla.schema import STATE_KEY

p = VLAPolicy.from_pretrained(sys.argv[1]); m = p.model
store = EpisodeStore.open("runs/touch1k/heldout.zarr"); ds = ChunkDataset(store, 8)
starts = np.concatenate([[0], store.episode_ends[:-1]])
b = ds.get_batch(starts)  # each episode's first frame
with torch.no_grad():
    prefix = m.build_prefix(torch.from_numpy(b["images"]), b[STATE_KEY], b["task"])
    if "final_state" in m.heads:
        normalized = m.displacement(prefix, b[STATE_KEY]).numpy() + m.state_tokenizer.normalize(b[STATE_KEY])
    else:
        masks = m.masks(len(starts))
        run = m._run(prefix, masks)
        normalized = m._final_state_logits(run.last_hidden_state, masks.shape[1]).softmax(-1).numpy() @ m.state_tokenizer.bin_centers()
pred = m.state_tokenizer.unnormalize(normalized)[:, :2]
named, other = [], []
for e, seed in enumerate(store.episode_meta("episode_seed")):
    scene, goal = sample_episode("touch", "seen", int(seed))
    xy = {(o.color, o.shape): np.array(o.xy) for o in scene.objects}
    t = xy.pop((goal.color, goal.shape))
    named.append(np.linalg.norm(pred[e] - t)); other.append(min(np.linalg.norm(pred[e] - v) for v in xy.values()))
named, other = np.array(named), np.array(other)
print(f"final xy vs named object: median {100*np.median(named):.1f} cm; nearer the named than any other: {(named < other).mean():.0%}")

"""A torch Dataset of (images, state, instruction, action chunk) samples over an episode store.

Every frame of every episode is a sample; its action chunk is the next H actions, padded at the episode's
end with the last action and marked by `action_is_pad`. The store's arrays are read into memory once
(the training sets this package records are a few hundred MB at most) so a batch is a few array gathers.
"""

from __future__ import annotations

import numpy as np
import torch

from vla.datasets.episode_store import EpisodeStore
from vla.schema import ACTION_KEY, STATE_KEY, TASK_KEY


class ChunkDataset(torch.utils.data.Dataset):
    def __init__(self, store: EpisodeStore, chunk_size: int, image_keys: list[str] | None = None):
        if store.num_episodes == 0:
            raise ValueError(f"{store.path}: the store has no episodes")
        self.chunk_size = chunk_size
        self.image_keys = image_keys or store.schema.image_keys
        n = store.num_frames
        self.images = np.stack([store.array(k)[:n] for k in self.image_keys], axis=1)  # (N, cams, H, W, 3)
        self.state = store.array(STATE_KEY)[:n]
        self.action = store.array(ACTION_KEY)[:n]
        ends = store.episode_ends
        starts = np.concatenate([[0], ends[:-1]])
        lengths = ends - starts
        self.episode_of_frame = np.repeat(np.arange(len(ends)), lengths)
        self.episode_end = np.repeat(ends, lengths)  # exclusive end of each frame's episode
        self.task_of_episode = store.episode_tasks()

    def __len__(self) -> int:
        return len(self.state)

    def get_batch(self, indices: np.ndarray) -> dict:
        indices = np.asarray(indices, dtype=np.int64)
        steps = indices[:, None] + np.arange(self.chunk_size)[None]  # (B, H)
        last = self.episode_end[indices][:, None] - 1
        is_pad = steps > last
        return {
            "images": self.images[indices],
            STATE_KEY: self.state[indices],
            TASK_KEY: [self.task_of_episode[e] for e in self.episode_of_frame[indices]],
            ACTION_KEY: self.action[np.minimum(steps, last)],
            "action_is_pad": is_pad,
        }

    def __getitem__(self, index: int) -> dict:
        batch = self.get_batch(np.array([index]))
        return {k: v[0] for k, v in batch.items()}

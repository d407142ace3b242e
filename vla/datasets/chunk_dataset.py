"""Training samples over an episode store or a LeRobotDataset: (images, state, instruction, action chunk).

Every frame of every episode is a sample; its action chunk is the next H actions, padded at the episode's
end with the last action and marked by `action_is_pad`. Images are read into memory when they fit under
`max_memory_gb` (a few array gathers per batch) and read per batch from the store otherwise.

`StepBatches` turns a ChunkDataset into one item per training step: the batch of step s on rank r is drawn
(indices and augmentation) from a generator seeded by (seed, s, r), so a multi-worker DataLoader yields the
same batches in the same order as a single process, and a resumed run continues the exact sequence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vla.datasets.episode_store import EpisodeStore
from vla.schema import ACTION_KEY, STATE_KEY, TASK_KEY


def open_source(path: str | Path):
    """A zarr episode store or a LeRobotDataset root, recognised by its metadata file."""
    path = Path(path)
    if (path / "zarr.json").is_file():
        return EpisodeStore.open(path)
    if (path / "meta" / "info.json").is_file():
        from vla.datasets.lerobot_io import LeRobotSource

        return LeRobotSource(path)
    raise FileNotFoundError(f"{path}: neither a zarr episode store (zarr.json) nor a LeRobotDataset (meta/info.json)")


def _take(array, indices: np.ndarray) -> np.ndarray:
    """array[indices] for numpy, zarr (orthogonal selection wants sorted unique indices) or a video column."""
    if isinstance(array, np.ndarray):
        return array[indices]
    unique, inverse = np.unique(indices, return_inverse=True)
    rows = array.oindex[unique] if hasattr(array, "oindex") else array[unique]
    return rows[inverse]


def gripper_keyframes(action: np.ndarray, names: tuple[str, ...] | None, starts: np.ndarray,
                      ends: np.ndarray) -> np.ndarray:
    """Each episode's first gripper keyframe, as a frame index: the first step whose command on the action
    dimension named "gripper" has the other sign than the step before (the grasp of a pick), as ARM's and
    PerAct's keyframe discovery finds them; the episode's last frame where the gripper never changes, or where
    no action dimension is named "gripper"."""
    keyframes = ends - 1
    if names is None or "gripper" not in names:
        return keyframes
    closed = action[:, names.index("gripper")] > 0
    changes = np.flatnonzero(closed[1:] != closed[:-1]) + 1  # a frame whose command differs from the one before
    for e, (start, end) in enumerate(zip(starts, ends, strict=True)):
        inside = changes[(changes > start) & (changes < end)]
        if len(inside):
            keyframes[e] = inside[0]
    return keyframes


class ChunkDataset(torch.utils.data.Dataset):
    def __init__(self, source, chunk_size: int, image_keys: list[str] | None = None, max_memory_gb: float = 4.0):
        if source.num_episodes == 0:
            raise ValueError(f"{source.path}: the dataset has no episodes")
        self.chunk_size = chunk_size
        self.image_keys = image_keys or source.schema.image_keys
        n = source.num_frames
        image_bytes = sum(n * int(np.prod(source.schema.observation[k].shape)) for k in self.image_keys)
        self.in_memory = image_bytes <= max_memory_gb * 2**30
        self.images = [source.array(k)[:n] if self.in_memory else source.array(k) for k in self.image_keys]
        self.state = np.asarray(source.array(STATE_KEY)[:n])
        self.action = np.asarray(source.array(ACTION_KEY)[:n])
        ends = source.episode_ends
        starts = np.concatenate([[0], ends[:-1]])
        lengths = ends - starts
        self.episode_of_frame = np.repeat(np.arange(len(ends)), lengths)
        self.episode_end = np.repeat(ends, lengths)  # exclusive end of each frame's episode
        self.task_of_episode = source.episode_tasks()
        self.episode_start = np.repeat(starts, lengths)
        keyframes = gripper_keyframes(self.action, source.schema.action.names, starts, ends)
        self.keyframe_state = self.state[np.repeat(keyframes, lengths)]
        # each frame's episode's first gripper change, or its start where the gripper never changes
        self.grasp_of_frame = np.repeat(np.where(keyframes < ends - 1, keyframes, starts), lengths)
        self.starts, self.lengths = starts, lengths

    def sample(self, rng: np.random.Generator, n: int, by: str = "frame") -> np.ndarray:
        """n frame indices. "frame": every frame equally likely, so long episodes weigh more; "episode": an episode
        drawn uniformly, then one of its frames, so every demonstration weighs the same, and with as many
        demonstrations per task every task does (Meta-World's short tasks, reach, push and pick-place, hold 6 to
        8% of MT10's frames against 13.5% for peg-insert-side)."""
        if by == "frame":
            return rng.integers(0, len(self.state), n)
        if by == "episode":
            episodes = rng.integers(0, len(self.starts), n)
            return self.starts[episodes] + (rng.random(n) * self.lengths[episodes]).astype(np.int64)
        raise ValueError(f"sampling must be one of {SAMPLING}, got {by!r}")

    def first_frames(self, n: int) -> np.ndarray:
        """The indices of each episode's first n frames (all of a shorter episode's)."""
        return np.flatnonzero(np.arange(len(self.state)) - self.episode_start < n)

    def approach_frames(self, n: int) -> np.ndarray:
        """The indices of frames past each episode's first n and before its first gripper change (the grasp),
        in the episodes whose gripper changes."""
        frames = np.arange(len(self.state))
        return np.flatnonzero((frames - self.episode_start >= n) & (frames < self.grasp_of_frame))

    def __len__(self) -> int:
        return len(self.state)

    def get_batch(self, indices: np.ndarray) -> dict:
        indices = np.asarray(indices, dtype=np.int64)
        steps = indices[:, None] + np.arange(self.chunk_size)[None]  # (B, H)
        last = self.episode_end[indices][:, None] - 1
        is_pad = steps > last
        return {
            "images": np.stack([_take(cam, indices) for cam in self.images], axis=1),  # (B, cams, H, W, 3)
            STATE_KEY: self.state[indices],
            TASK_KEY: [self.task_of_episode[e] for e in self.episode_of_frame[indices]],
            ACTION_KEY: self.action[np.minimum(steps, last)],
            "action_is_pad": is_pad,
            "final_state": self.state[self.episode_end[indices] - 1],  # where the episode ends (final_state_weight)
            "keyframe_state": self.keyframe_state[indices],  # where its gripper first changes (final_state_keyframe)
        }

    def __getitem__(self, index: int) -> dict:
        batch = self.get_batch(np.array([index]))
        return {k: v[0] for k, v in batch.items()}


def random_shift(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """(B, cams, H, W, 3) uint8: edge-pad each image and crop it back at a random offset (DrQ)."""
    if pad == 0:
        return images
    b, c, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    dx, dy = rng.integers(0, 2 * pad + 1, (2, b, c))
    out = np.empty_like(images)
    for i in range(b):
        for j in range(c):
            out[i, j] = padded[i, j, dy[i, j] : dy[i, j] + h, dx[i, j] : dx[i, j] + w]
    return out


SAMPLING = ("frame", "episode")


def step_seed(seed: int, step: int, rank: int) -> int:
    return seed * 1_000_003 + step * 1009 + rank


class StepBatches(torch.utils.data.Dataset):
    """Item s = the training batch of step s (see the module docstring); use with batch_size=None."""

    def __init__(self, dataset: ChunkDataset, batch_size: int, seed: int, rank: int = 0, shift_pixels: int = 0,
                 sampling: str = "frame"):
        self.dataset, self.batch_size, self.seed, self.rank = dataset, batch_size, seed, rank
        self.shift_pixels, self.sampling = shift_pixels, sampling

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> dict:
        rng = np.random.default_rng(step_seed(self.seed, step, self.rank))
        batch = self.dataset.get_batch(self.dataset.sample(rng, self.batch_size, self.sampling))
        batch["images"] = random_shift(batch["images"], self.shift_pixels, rng)
        return batch


def _as_is(batch):
    return batch


def step_loader(batches: StepBatches, start: int, stop: int, num_workers: int) -> torch.utils.data.DataLoader:
    """Batches for steps start..stop-1 in order, prepared by `num_workers` processes (0: in this one)."""
    return torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=range(start, stop), num_workers=num_workers,
        collate_fn=_as_is,  # keep the numpy arrays and the list of instructions
        prefetch_factor=4 if num_workers else None, persistent_workers=False,
    )

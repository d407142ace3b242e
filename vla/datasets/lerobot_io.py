"""LeRobotDataset v3 in and out, through lerobot's own API.

Export writes with `LeRobotDataset.create` / `add_frame` / `save_episode` / `finalize`, so images become
video the way LeRobot encodes them by default (its `RGBEncoderConfig`). Import and direct training read
with `LeRobotDataset` (parquet for the low-dimensional columns, its video decoding for the cameras).

Keys are the same on both sides (`observation.images.<cam>`, `observation.state`, `action`, `task`).
What LeRobot has no column for (per-episode seed, success flag, source and simulator task) travels in a
side file `meta/vla_episodes.json`, which LeRobot ignores; a dataset recorded with `lerobot-record` has no
such file, and its episodes import as successful, with seed -1 and source "lerobot:<directory name>".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla.datasets.episode_store import EpisodeStore, StoreError
from vla.schema import ACTION_KEY, IMAGE_PREFIX, STATE_KEY, TASK_KEY, Feature, Schema, SchemaError

SIDE_FILE = "meta/vla_episodes.json"
REQUIRED_KEYS = (STATE_KEY, ACTION_KEY)
# PyAV ships its own FFmpeg; torchcodec needs system FFmpeg libraries that a fresh machine may lack (and
# LeRobot's auto-detection prints a traceback for each version it tries before falling back to PyAV anyway).
VIDEO_BACKEND = "pyav"


def _lerobot_features(schema: Schema) -> dict:
    features = {}
    for key, feat in schema.features.items():
        if key.startswith(IMAGE_PREFIX):
            features[key] = {"dtype": "video", "shape": feat.shape, "names": ["height", "width", "channels"]}
        else:
            names = list(feat.names) if feat.names else [f"{key}_{i}" for i in range(feat.shape[-1])]
            features[key] = {"dtype": feat.dtype, "shape": feat.shape, "names": names}
    return features


def export_lerobot(src: str | Path, dst: str | Path, repo_id: str | None = None) -> Path:
    """Write every committed episode of the zarr store `src` as a new LeRobotDataset v3 at `dst`."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    store, dst = EpisodeStore.open(src), Path(dst)
    if dst.exists():
        raise FileExistsError(f"{dst} exists; export writes a new dataset")
    if store.num_episodes == 0:
        raise StoreError(f"{src}: the store has no episodes to export")
    fps = store.schema.fps
    if fps != int(fps):
        raise StoreError(f"{src}: LeRobotDataset needs an integer fps, the store has {fps}")
    dataset = LeRobotDataset.create(repo_id or f"local/{dst.name}", int(fps), _lerobot_features(store.schema),
                                    root=dst, robot_type="mujoco", video_backend=VIDEO_BACKEND)
    side = {"env_tasks": store.env_tasks, "episodes": []}
    try:
        for episode in tqdm(store.iter_episodes(), total=store.num_episodes, desc="export", unit="ep"):
            for t in range(len(episode[ACTION_KEY])):
                dataset.add_frame({**{k: episode[k][t] for k in store.keys}, TASK_KEY: episode[TASK_KEY]})
            dataset.save_episode()
            side["episodes"].append({k: episode[k] for k in ("seed", "success", "source", "goal", "env_task")})
    finally:
        dataset.finalize()
    (dst / SIDE_FILE).write_text(json.dumps(side, indent=1))
    return dst


class LeRobotSource:
    """A LeRobotDataset root seen through the interface ChunkDataset and the stats use (episode_ends,
    episode_tasks, array(key)[indices], schema), so training reads it without conversion."""

    def __init__(self, root: str | Path, episodes: list[int] | None = None):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self.path = Path(root)
        if not (self.path / "meta" / "info.json").is_file():
            raise FileNotFoundError(f"{self.path}: no LeRobotDataset here (no meta/info.json)")
        self.dataset = LeRobotDataset(f"local/{self.path.name}", root=self.path, episodes=episodes,
                                      return_uint8=True, download_videos=False,
                                      video_backend=VIDEO_BACKEND)
        self.schema = schema_from_lerobot(self.dataset.meta.features, self.dataset.meta.fps, self.path)
        self.hf = self.dataset.hf_dataset.with_format("numpy")
        self._columns = {key: np.stack(self.hf[key]).astype(np.float32) for key in REQUIRED_KEYS}
        episode_index = np.asarray(self.hf["episode_index"])
        task_index = np.asarray(self.hf["task_index"])
        self.timestamps = np.asarray(self.hf["timestamp"], dtype=np.float64)
        self.frame_episode = episode_index
        if np.any(np.diff(episode_index) < 0):
            raise StoreError(f"{self.path}: frames are not ordered by episode")
        change = np.flatnonzero(np.diff(episode_index)) + 1
        self.episode_ends = np.append(change, len(episode_index)).astype(np.int64)
        starts = np.concatenate([[0], self.episode_ends[:-1]])
        tasks_table = self.dataset.meta.tasks  # pandas frame indexed by task string
        by_index = {int(i): str(t) for t, i in zip(tasks_table.index, tasks_table["task_index"], strict=True)}
        self._episode_tasks = [by_index[int(task_index[s])] for s in starts]
        self._episode_index = episode_index[starts]
        side = self.path / SIDE_FILE
        self.side = json.loads(side.read_text()) if side.is_file() else {"env_tasks": {}, "episodes": None}

    @property
    def keys(self) -> list[str]:
        return list(self.schema.features)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def num_frames(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    @property
    def env_tasks(self) -> dict[str, str]:
        return dict(self.side["env_tasks"])

    def episode_tasks(self) -> list[str]:
        return list(self._episode_tasks)

    def episode_meta(self, key: str) -> np.ndarray:
        """episode_seed, episode_success or episode_source, as the side file recorded them (or defaults)."""
        field = key.removeprefix("episode_")
        recorded = self.side["episodes"]
        if recorded is None:
            default = {"seed": -1, "success": True, "source": f"lerobot:{self.path.name}"}[field]
            return np.array([default] * self.num_episodes)
        return np.array([recorded[int(e)][field] for e in self._episode_index])

    def episode_env_tasks(self) -> list[str | None]:
        """The simulator task the side file recorded for each episode; older side files: by instruction."""
        recorded, by_instruction = self.side["episodes"], self.env_tasks
        if recorded is None:
            return [by_instruction.get(t) for t in self.episode_tasks()]
        return [recorded[int(e)].get("env_task", by_instruction.get(t))
                for e, t in zip(self._episode_index, self.episode_tasks(), strict=True)]

    def episode_goals(self) -> list[dict | None]:
        """The structured goal the side file recorded for each episode (None where it has none)."""
        recorded = self.side["episodes"]
        if recorded is None:
            return [None] * self.num_episodes
        return [recorded[int(e)].get("goal") for e in self._episode_index]

    def array(self, key: str):
        if key in self._columns:
            return self._columns[key]
        if key in self.schema.observation:
            return _CameraColumn(self, key)
        raise KeyError(f"{self.path} has no key {key!r}; keys: {self.keys}")


class _CameraColumn:
    """`column[indices]` -> (n, H, W, 3) uint8. Video cameras are decoded with LeRobot's
    `decode_video_frames`, one call per episode touched (one pass over its frames, not a seek per frame)."""

    def __init__(self, source: LeRobotSource, key: str):
        self.source, self.key = source, key
        self.shape = (source.num_frames, *source.schema.observation[key].shape)
        self.is_video = key in source.dataset.meta.video_keys

    def __getitem__(self, indices) -> np.ndarray:
        from lerobot.datasets.video_utils import decode_video_frames

        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(self.shape[0]))
        flat = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        out = np.empty((len(flat), *self.shape[1:]), np.uint8)
        if not self.is_video:
            for j, i in enumerate(flat):
                out[j] = _to_hwc(np.asarray(self.source.hf[int(i)][self.key]))
            return out if np.ndim(indices) else out[0]
        meta, episode_of = self.source.dataset.meta, self.source.frame_episode
        for ep in np.unique(episode_of[flat]):
            rows = np.flatnonzero(episode_of[flat] == ep)
            info = meta.episodes[int(ep)]
            ts = (self.source.timestamps[flat[rows]] + info[f"videos/{self.key}/from_timestamp"]).tolist()
            frames = decode_video_frames(self.source.path / meta.get_video_file_path(int(ep), self.key), ts,
                                         self.source.dataset.tolerance_s, VIDEO_BACKEND, return_uint8=True)
            out[rows] = frames.permute(0, 2, 3, 1).numpy()  # LeRobot decodes to (n, C, H, W)
        return out if np.ndim(indices) else out[0]


def _to_hwc(image: np.ndarray) -> np.ndarray:
    return image.transpose(1, 2, 0) if image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3) else image


def schema_from_lerobot(features: dict, fps: float, where: Path | str) -> Schema:
    """Our schema from LeRobot's `info.json` features; names the first missing or unusable feature."""
    for key in REQUIRED_KEYS:
        if key not in features:
            have = sorted(k for k in features if k not in ("timestamp", "frame_index", "episode_index", "index",
                                                           "task_index"))
            raise SchemaError(f"{where}: the LeRobotDataset has no {key!r} feature a policy needs (has {have})")
    cams = [k for k, f in features.items() if k.startswith(IMAGE_PREFIX) and f["dtype"] in ("video", "image")]
    if not cams:
        raise SchemaError(f"{where}: the LeRobotDataset has no camera feature ({IMAGE_PREFIX}<cam>)")
    obs = {}
    for key in cams:
        shape = tuple(features[key]["shape"])
        names = features[key].get("names") or []
        if list(names[:1]) == ["channels"]:  # some datasets store (C, H, W)
            shape = (shape[1], shape[2], shape[0])
        obs[key] = Feature(key, shape, "uint8")
    for key in (STATE_KEY,):
        f = features[key]
        obs[key] = Feature(key, tuple(f["shape"]), "float32", _flat_names(f.get("names"), f["shape"]))
    f = features[ACTION_KEY]
    action = Feature(ACTION_KEY, tuple(f["shape"]), "float32", _flat_names(f.get("names"), f["shape"]))
    return Schema(observation=obs, action=action, has_task=True, fps=float(fps))


def _flat_names(names, shape) -> tuple[str, ...] | None:
    if isinstance(names, dict):  # older LeRobot datasets: {"motors": [...]}
        names = next(iter(names.values()), None)
    return tuple(names) if names and len(names) == shape[-1] else None


def import_lerobot(src: str | Path, dst: str | Path) -> EpisodeStore:
    """Copy a LeRobotDataset at `src` into a new zarr episode store at `dst`, one committed episode at a time."""
    if Path(dst).exists():
        raise FileExistsError(f"{dst} exists; import writes a new store")
    source = LeRobotSource(src)
    store = EpisodeStore.create(dst, source.schema)
    seeds, successes = source.episode_meta("episode_seed"), source.episode_meta("episode_success")
    sources, goals, env_tasks = source.episode_meta("episode_source"), source.episode_goals(), source.episode_env_tasks()
    starts = np.concatenate([[0], source.episode_ends[:-1]])
    for i in tqdm(range(source.num_episodes), desc="import", unit="ep"):
        frames = np.arange(starts[i], source.episode_ends[i])
        episode = {key: source.array(key)[frames] for key in source.keys}
        task = source.episode_tasks()[i]
        store.add_episode(episode, task=task, seed=int(seeds[i]), success=bool(successes[i]),
                          env_task=env_tasks[i], source=str(sources[i]), goal=goals[i])
    return store

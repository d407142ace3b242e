"""Zarr v3 episode store in the diffusion_policy ReplayBuffer layout.

    <root>/zarr.json                   attrs: format version, fps, feature schema, task table
    <root>/data/<key>                  one array per feature, episodes concatenated along axis 0
    <root>/meta/episode_task_index     int32, one per episode (index into the task table)
    <root>/meta/episode_seed           int64
    <root>/meta/episode_success        bool
    <root>/meta/episode_source_index   int32 (index into the source table: "sim:metaworld", "lerobot:<dir>"...)
    <root>/meta/episode_goal_index     int32 (index into the goal table of structured goals, -1: none)
    <root>/meta/episode_ends           int64, written last: the commit marker

An episode exists once `episode_ends` holds its end. Everything else is written before, so a crash (even
SIGKILL) while writing leaves at most an uncommitted tail that readers ignore and `repair()` trims. zarr
writes every chunk and metadata file atomically (temp file + rename), and growing `episode_ends` is two such
writes: the new shape, then the chunk holding the new end. Between them the last entry reads as the fill
value 0, which no committed end can be (ends are strictly increasing from > 0), so it counts as a tail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from vla.schema import TASK_KEY, Schema, SchemaError

FORMAT = "vla.episode_store/1"
META_KEYS = {"episode_task_index": "int32", "episode_seed": "int64", "episode_success": "bool",
             "episode_source_index": "int32", "episode_goal_index": "int32", "episode_env_task_index": "int32"}
# Meta arrays newer than format 1; opening an older store adds them. -1: none (an older store's env task comes
# from its instruction -> env task map, which cannot tell apart two tasks that share an instruction).
ADDED_META = {"episode_goal_index": -1, "episode_env_task_index": -1}
IMAGE_CHUNK_FRAMES = 64
LOWDIM_CHUNK_FRAMES = 4096


class StoreError(ValueError):
    """The store on disk is inconsistent or does not match what the caller needs."""


def _compressor(is_image: bool):
    # zstd through Blosc; byte shuffle helps the float arrays, bit-level shuffle does not pay for images.
    return BloscCodec(cname="zstd", clevel=3, shuffle="noshuffle" if is_image else "shuffle")


class EpisodeStore:
    def __init__(self, group: zarr.Group, path: Path, writable: bool):
        self._root = group
        self.path = path
        self.writable = writable
        attrs = dict(group.attrs)
        if attrs.get("format") != FORMAT:
            raise StoreError(f"{path}: not a vla episode store (format attr {attrs.get('format')!r})")
        self.schema = Schema.from_json(attrs["schema"])
        if writable:
            self._add_missing_meta()
        self._check_consistent()

    # ---- opening -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, schema: Schema) -> EpisodeStore:
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists; open it with EpisodeStore.open(path, mode='a') to append")
        # Built beside its final path and renamed into place, so a store at `path` is always complete
        # (a reader or a crash never sees a group without its arrays or attributes).
        building = path.with_name(f"{path.name}.creating-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        root = zarr.open_group(str(building), mode="w-", zarr_format=3)
        data, meta = root.create_group("data"), root.create_group("meta")
        for key, feat in schema.features.items():
            is_image = len(feat.shape) == 3
            chunk_t = IMAGE_CHUNK_FRAMES if is_image else LOWDIM_CHUNK_FRAMES
            data.create_array(
                key, shape=(0, *feat.shape), chunks=(chunk_t, *feat.shape), dtype=feat.dtype,
                compressors=_compressor(is_image),
            )
        for key, dtype in {**META_KEYS, "episode_ends": "int64"}.items():
            meta.create_array(key, shape=(0,), chunks=(LOWDIM_CHUNK_FRAMES,), dtype=dtype)
        root.attrs.update({"format": FORMAT, "schema": schema.to_json(), "fps": schema.fps, "tasks": [],
                           "sources": [], "env_tasks": {}, "env_task_names": [], "goals": []})
        path.parent.mkdir(parents=True, exist_ok=True)
        os.rename(building, path)
        return cls.open(path, "a")

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> EpisodeStore:
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise FileNotFoundError(f"{path}: no episode store here (no zarr.json)")
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        return cls(zarr.open_group(str(path), mode=mode, zarr_format=3), path, writable=mode == "a")

    # ---- reading -------------------------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        return list(self.schema.features)

    @property
    def episode_ends(self) -> np.ndarray:
        """Ends of the committed episodes (an interrupted commit's trailing fill value excluded)."""
        ends = self._root["meta/episode_ends"][:]
        return ends[:-1] if len(ends) and ends[-1] == 0 else ends

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def num_frames(self) -> int:
        ends = self.episode_ends
        return int(ends[-1]) if len(ends) else 0

    @property
    def tasks(self) -> list[str]:
        return list(self._root.attrs["tasks"])

    def array(self, key: str) -> zarr.Array:
        if key not in self.keys:
            raise KeyError(f"store {self.path} has no key {key!r}; keys: {self.keys}")
        return self._root[f"data/{key}"]

    def episode_meta(self, key: str) -> np.ndarray:
        if key in ADDED_META and f"meta/{key}" not in self._root:  # an older store opened read-only
            return np.full(self.num_episodes, ADDED_META[key], dtype=META_KEYS[key])
        return self._root[f"meta/{key}"][: self.num_episodes]

    @property
    def goals(self) -> list[dict]:
        return list(self._root.attrs.get("goals", []))

    def episode_goals(self) -> list[dict | None]:
        """The structured goal of each episode (what its instruction asks, as the env defines it), or None."""
        table = self.goals
        return [table[i] if i >= 0 else None for i in self.episode_meta("episode_goal_index")]

    def episode_tasks(self) -> list[str]:
        table = self.tasks
        return [table[i] for i in self.episode_meta("episode_task_index")]

    @property
    def env_task_names(self) -> list[str]:
        return list(self._root.attrs.get("env_task_names", []))

    def episode_env_tasks(self) -> list[str | None]:
        """The simulator task of each episode (None for one not recorded in simulation)."""
        names, by_instruction = self.env_task_names, self.env_tasks
        return [_env_task(i, task, names, by_instruction)
                for i, task in zip(self.episode_meta("episode_env_task_index"), self.episode_tasks(), strict=True)]

    def episode_bounds(self, index: int) -> tuple[int, int]:
        ends = self.episode_ends
        if not 0 <= index < len(ends):
            raise IndexError(f"episode {index} out of range (store has {len(ends)})")
        return (int(ends[index - 1]) if index else 0), int(ends[index])

    def _meta_at(self, key: str, index: int) -> int:
        """One episode's meta value, read alone (reading the whole column per episode made a pass over the
        store quadratic)."""
        if key in ADDED_META and f"meta/{key}" not in self._root:
            return ADDED_META[key]
        return int(self._root[f"meta/{key}"][index])

    def episode(self, index: int) -> dict:
        start, end = self.episode_bounds(index)
        ep = {key: self.array(key)[start:end] for key in self.keys}
        ep[TASK_KEY] = self.tasks[self._meta_at("episode_task_index", index)]
        ep["seed"] = self._meta_at("episode_seed", index)
        ep["success"] = bool(self._meta_at("episode_success", index))
        ep["source"] = self.sources[self._meta_at("episode_source_index", index)]
        goal = self._meta_at("episode_goal_index", index)
        ep["goal"] = self.goals[goal] if goal >= 0 else None
        env_task = self._meta_at("episode_env_task_index", index)
        ep["env_task"] = _env_task(env_task, ep[TASK_KEY], self.env_task_names, self.env_tasks)
        return ep

    def iter_episodes(self) -> Iterator[dict]:
        for i in range(self.num_episodes):
            yield self.episode(i)

    # ---- writing -------------------------------------------------------------------------------------
    @property
    def env_tasks(self) -> dict[str, str]:
        """instruction -> simulator task name, for episodes recorded in simulation."""
        return dict(self._root.attrs.get("env_tasks", {}))

    @property
    def sources(self) -> list[str]:
        return list(self._root.attrs.get("sources", []))

    def add_episode(self, episode: dict, task: str, seed: int, success: bool, env_task: str | None = None,
                    source: str = "unknown", goal: dict | None = None) -> int:
        """Append one episode (arrays with a leading time axis). `task` is the instruction, `source` where
        it came from ("sim:metaworld", "lerobot:<dataset>", "robot:<name>"), `goal` the structured goal the
        instruction states (JSON-able; a grounding suite's target object, skill and where to).

        Returns the episode's index once committed."""
        if not self.writable:
            raise PermissionError(f"{self.path} is open read-only")
        self._check_no_uncommitted_tail()
        length = self._validate_episode(episode)
        start = self.num_frames
        for key in self.keys:
            arr = self.array(key)
            arr.resize((start + length, *arr.shape[1:]))
            arr[start : start + length] = episode[key]
        tasks, sources, goals, env_task_names = self.tasks, self.sources, self.goals, self.env_task_names
        for table, value, name in ((tasks, task, "tasks"), (sources, source, "sources"), (goals, goal, "goals"),
                                   (env_task_names, env_task, "env_task_names")):
            if value is not None and value not in table:
                table.append(value)
                self._root.attrs[name] = table
        if env_task is not None and self.env_tasks.get(task) != env_task:
            self._root.attrs["env_tasks"] = {**self.env_tasks, task: env_task}
        index = self.num_episodes
        for key, value in [("episode_task_index", tasks.index(task)), ("episode_seed", seed),
                           ("episode_success", success), ("episode_source_index", sources.index(source)),
                           ("episode_goal_index", goals.index(goal) if goal is not None else -1),
                           ("episode_env_task_index", env_task_names.index(env_task) if env_task is not None else -1)]:
            self._append_meta(key, index, value)
        self._append_meta("episode_ends", index, start + length)  # the commit
        return index

    def _append_meta(self, key: str, index: int, value) -> None:
        arr = self._root[f"meta/{key}"]
        arr.resize((index + 1,))
        arr[index] = value

    def _validate_episode(self, episode: dict) -> int:
        lengths = {}
        for key, feat in self.schema.features.items():
            if key not in episode:
                raise SchemaError(f"episode is missing key {key!r}")
            value = np.asarray(episode[key])
            feat.check(value, batched=True)
            lengths[key] = value.shape[0]
        if len(set(lengths.values())) != 1:
            raise SchemaError(f"episode arrays have different lengths: {lengths}")
        length = next(iter(lengths.values()))
        if length == 0:
            raise SchemaError("episode has no frames")
        return length

    # ---- consistency ---------------------------------------------------------------------------------
    def _add_missing_meta(self) -> None:
        """Give a store written before a meta array existed that array, filled for its episodes; written
        before any new episode, so the commit order of `add_episode` holds from then on."""
        for key, fill in ADDED_META.items():
            if f"meta/{key}" not in self._root:
                n = self._root["meta/episode_ends"].shape[0]
                arr = self._root["meta"].create_array(key, shape=(n,), chunks=(LOWDIM_CHUNK_FRAMES,),
                                                      dtype=META_KEYS[key], fill_value=fill)
                arr[:] = fill

    def _tail_report(self) -> list[str]:
        """What lies beyond the last committed episode (left by a crash mid-write)."""
        frames, n = self.num_frames, self.num_episodes
        out = [f"data/{k}: {self.array(k).shape[0]} frames > {frames}" for k in self.keys
               if self.array(k).shape[0] > frames]
        out += [f"meta/{k}: {self._root[f'meta/{k}'].shape[0]} > {n}" for k in [*META_KEYS, "episode_ends"]
                if self._root[f"meta/{k}"].shape[0] > n]
        out += [f"partial write {p.relative_to(self.path)}" for p in self.path.rglob("*.partial")]
        return out

    def _check_consistent(self) -> None:
        expected = {f"data/{k}": (f.dtype, f.shape) for k, f in self.schema.features.items()}
        expected |= {f"meta/{k}": (dtype, ()) for k, dtype in {**META_KEYS, "episode_ends": "int64"}.items()
                     if k not in ADDED_META or f"meta/{k}" in self._root}
        for name, (dtype, shape) in expected.items():
            if name not in self._root:
                raise StoreError(f"{self.path}: array {name} is missing")
            arr = self._root[name]
            if arr.dtype != np.dtype(dtype) or tuple(arr.shape[1:]) != tuple(shape):
                raise StoreError(f"{self.path}: {name} is {arr.dtype} {tuple(arr.shape[1:])}, "
                                 f"the schema says {dtype} {tuple(shape)}")
        # The commit marker is read once, before any length: a writer may be committing while this runs,
        # and everything it commits was written before its marker, so lengths read after it cover it.
        ends = self.episode_ends
        if len(ends) and (np.any(np.diff(ends) <= 0) or ends[0] <= 0):
            raise StoreError(f"{self.path}: meta/episode_ends is not strictly increasing: {ends.tolist()}")
        frames, episodes = (int(ends[-1]) if len(ends) else 0), len(ends)
        for key in self.keys:
            got = self.array(key).shape[0]
            if got < frames:
                raise StoreError(f"{self.path}: data/{key} has {got} frames but meta/episode_ends says {frames}")
        for key in META_KEYS:
            if f"meta/{key}" not in self._root:
                continue  # an ADDED_META array of an older store opened read-only
            got = self._root[f"meta/{key}"].shape[0]
            if got < episodes:
                raise StoreError(f"{self.path}: meta/{key} has {got} entries but there are {episodes} episodes")

    def _check_no_uncommitted_tail(self) -> None:
        tail = self._tail_report()
        if tail:
            raise StoreError(
                f"{self.path} has an uncommitted tail from an interrupted write ({'; '.join(tail)}); "
                "run EpisodeStore.open(path, 'a').repair() first"
            )

    def repair(self) -> list[str]:
        """Trim arrays back to the last committed episode. Returns what was trimmed."""
        if not self.writable:
            raise PermissionError(f"{self.path} is open read-only")
        trimmed = self._tail_report()
        for key in self.keys:
            arr = self.array(key)
            arr.resize((self.num_frames, *arr.shape[1:]))
        for key in [*META_KEYS, "episode_ends"]:
            self._root[f"meta/{key}"].resize((self.num_episodes,))
        for partial in self.path.rglob("*.partial"):
            partial.unlink()
        return trimmed

    def drop_episodes(self, indices: list[int]) -> EpisodeStore:
        """Remove episodes. The kept ones are copied to a sibling store that then replaces this one, so a
        crash at any point leaves either the old store or the new one whole (plus a `.old`/`.new` sibling
        to delete). Returns the store reopened for appending."""
        if not self.writable:
            raise PermissionError(f"{self.path} is open read-only")
        bad = [i for i in indices if not 0 <= i < self.num_episodes]
        if bad:
            raise IndexError(f"episodes {bad} out of range (store has {self.num_episodes})")
        self._check_no_uncommitted_tail()
        new_path, old_path = self.path.with_name(self.path.name + ".new"), self.path.with_name(self.path.name + ".old")
        shutil.rmtree(new_path, ignore_errors=True)
        new = EpisodeStore.create(new_path, self.schema)
        drop = set(indices)
        for i in range(self.num_episodes):
            if i not in drop:
                ep = self.episode(i)
                new.add_episode({k: ep[k] for k in self.keys}, ep[TASK_KEY], ep["seed"], ep["success"],
                                ep["env_task"], ep["source"], ep["goal"])
        os.replace(self.path, old_path)
        os.replace(new_path, self.path)
        shutil.rmtree(old_path)
        return EpisodeStore.open(self.path, "a")

    def summary(self) -> dict:
        success = self.episode_meta("episode_success")
        per_task: dict[str, int] = {}
        for t in self.episode_tasks():
            per_task[t] = per_task.get(t, 0) + 1
        return {"path": str(self.path), "episodes": self.num_episodes, "frames": self.num_frames,
                "successes": int(success.sum()), "episodes_per_task": per_task, "sources": self.sources}


def _env_task(index: int, instruction: str, names: list[str], by_instruction: dict[str, str]) -> str | None:
    """An episode's env task: its own entry, or for a store older than those, the instruction's env task."""
    return names[index] if index >= 0 else by_instruction.get(instruction)

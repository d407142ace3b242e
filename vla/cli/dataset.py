"""vla-dataset {info,export,import,viz} key=value...

  vla-dataset info src=data/demos.zarr                  episodes, frames, tasks, successes, schema, stats
  vla-dataset export src=data/demos.zarr dst=data/demos_lerobot format=lerobot
  vla-dataset import src=data/demos_lerobot dst=data/imported.zarr
  vla-dataset viz src=data/demos.zarr episode=3 out=episode3.mp4

`src` may be a zarr episode store or a LeRobotDataset v3 root everywhere a dataset is read."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from rich.console import Console
from rich.table import Table

from vla.cli.config import UsageError, cli_main, compose_dict, print_usage, require_path
from vla.datasets.chunk_dataset import open_source
from vla.datasets.stats import store_stats
from vla.schema import ACTION_KEY, STATE_KEY

COMMANDS = ("info", "export", "import", "viz")


@dataclass
class DatasetConfig:
    src: str = "data/demos.zarr"
    dst: str | None = None
    format: str = "lerobot"
    episode: int = 0
    out: str | None = None


def info(cfg: DatasetConfig, console: Console) -> None:
    source = open_source(cfg.src)
    success = source.episode_meta("episode_success")
    console.print(f"[bold]{cfg.src}[/bold]: {source.num_episodes} episodes, {source.num_frames} frames, "
                  f"{int(success.sum())} successful, fps {source.schema.fps:g}")
    tasks = Table("task (instruction)", "simulator task", "episodes", "successful", title="tasks")
    by_task: dict[str, list[bool]] = {}
    for task, ok in zip(source.episode_tasks(), success.tolist(), strict=True):
        by_task.setdefault(task, []).append(bool(ok))
    for task, oks in by_task.items():
        tasks.add_row(task, source.env_tasks.get(task, "-"), str(len(oks)), str(sum(oks)))
    console.print(tasks)
    schema = Table("key", "shape", "dtype", "names", title="schema")
    for key, feat in source.schema.features.items():
        schema.add_row(key, str(feat.shape), feat.dtype, ", ".join(feat.names or []))
    console.print(schema)
    stats = store_stats(source, [STATE_KEY, ACTION_KEY])
    for key, s in stats.items():
        feat = source.schema.features[key]
        names = feat.names or [str(i) for i in range(feat.shape[-1])]
        table = Table("stat", *names, title=f"{key} statistics")
        for stat, values in s.items():
            table.add_row(stat, *[f"{v:.4g}" for v in values])
        console.print(table)


def viz(cfg: DatasetConfig) -> Path:
    from vla.plots import episode_frames_with_actions

    source = open_source(cfg.src)
    if not 0 <= cfg.episode < source.num_episodes:
        raise SystemExit(f"episode={cfg.episode} is out of range: {cfg.src} has {source.num_episodes} episodes")
    end = int(source.episode_ends[cfg.episode])
    start = int(source.episode_ends[cfg.episode - 1]) if cfg.episode else 0
    frames = np.arange(start, end)
    images = np.concatenate([source.array(k)[frames] for k in source.schema.image_keys], axis=2)  # side by side
    actions = np.asarray(source.array(ACTION_KEY)[start:end])
    names = list(source.schema.action.names or [f"a{i}" for i in range(actions.shape[1])])
    title = f"episode {cfg.episode}: {source.episode_tasks()[cfg.episode]}"
    video = episode_frames_with_actions(images, actions, names, title)
    out = Path(cfg.out or f"{Path(cfg.src).with_suffix('')}_episode{cfg.episode}.mp4")
    fps = min(source.schema.fps, 30)
    iio.imwrite(out, video, plugin="pyav", codec="libx264", fps=fps)
    return out


def _main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        print_usage("dataset", __doc__)
        raise SystemExit(0 if args and args[0] in ("-h", "--help") else 2)
    command, values = args[0], compose_dict("dataset", args[1:])
    unknown = sorted(set(values) - set(DatasetConfig.__dataclass_fields__))
    if unknown:
        raise UsageError(f"configs/dataset.yaml: unknown key(s) {unknown}")
    cfg, console = DatasetConfig(**values), Console()
    require_path(cfg.src, "src")
    if command == "info":
        return info(cfg, console)
    if command == "viz":
        return console.print(f"wrote {viz(cfg)}")
    if cfg.dst is None:
        raise UsageError(f"vla-dataset {command} needs dst=")
    from vla.datasets.lerobot_io import export_lerobot, import_lerobot

    if command == "export":
        if cfg.format != "lerobot":
            raise UsageError(f"format={cfg.format!r}: the only export format is 'lerobot' (LeRobotDataset v3)")
        console.print(f"wrote LeRobotDataset {export_lerobot(cfg.src, cfg.dst)}")
    else:
        store = import_lerobot(cfg.src, cfg.dst)
        console.print(f"wrote {store.path}: {store.num_episodes} episodes, {store.num_frames} frames")


def main() -> None:
    cli_main("vla-dataset", _main)


if __name__ == "__main__":
    main()

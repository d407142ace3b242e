"""The stages a suite benchmark runs (record, train, evaluate), each resuming where an interrupted run stopped,
and the time each took over every sitting. Shared by metaworld_mt.py and tabletop.py."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vla.evaluate import DEFAULT_EVAL_SEED as EVAL_SEED
from vla.runtime.chunking import LOCKSTEP_METHODS


class Progress:
    """DIR/progress.json: the seconds each stage took, over every sitting. Recording and evaluation add their
    finished parts; training takes the time its last checkpoint has counted, so a sitting killed midway
    keeps the time up to its last checkpoint."""

    def __init__(self, out: Path):
        self.path = out / "progress.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"stage_s": {}}

    def add(self, stage: str, seconds: float) -> None:
        self.set(stage, self.data["stage_s"].get(stage, 0.0) + seconds)

    def set(self, stage: str, seconds: float) -> None:
        self.data["stage_s"][stage] = seconds
        self.path.write_text(json.dumps(self.data, indent=2))

    @property
    def wall_s(self) -> float:
        return float(sum(self.data["stage_s"].values()))


def record_stage(out: Path, tasks: list[str], demos: int, image_size: int, progress: Progress,
                 cameras: list[str] | None = None, demos_for: dict[str, int] | None = None,
                 **options) -> tuple[Path, dict]:
    """`demos` successful expert demonstrations per task into out/demos.zarr, or `demos_for[task]` where it names
    the task (`options`: vla.record.RecordConfig's action_noise, start_noise, after_success); -> (store, record
    report), the report also saved as out/record_report.json. Tasks are recorded in order of their counts, fewest
    first, each continuing from its seeds so far."""
    from vla.record import RecordConfig, print_report, record

    store, t0 = out / "demos.zarr", time.perf_counter()
    counts = {task: (demos_for or {}).get(task, demos) for task in tasks}
    report: dict = {}
    for n in sorted(set(counts.values())):
        part = record(RecordConfig(tasks=[t for t in tasks if counts[t] == n], episodes=n, out=str(store),
                                   image_size=image_size, cameras=cameras, **options))
        report = part | {"tasks": report.get("tasks", {}) | part["tasks"]}  # the last part counts the whole store
    print_report(report)
    (out / "record_report.json").write_text(json.dumps(report, indent=2))
    progress.add("record", time.perf_counter() - t0)
    return store, report


def train_stage(out: Path, store: Path, steps: int, save_every: int, overrides: list[str],
                progress: Progress) -> Path:
    """One VLA on the store into out/train, resuming from its last checkpoint; -> the final checkpoint."""
    from vla.cli.config import load
    from vla.train import TRAINER_STATE_FILE, latest_checkpoint, train

    run = out / "train"
    last = latest_checkpoint(run)
    final = run / "checkpoints" / f"step_{steps:06d}"  # complete once it exists (renamed into place)
    if last != final:
        cfg = load("train", [f"dataset={store}", f"out={run}", f"steps={steps}", f"save_every={save_every}",
                            f"resume={last is not None}", *overrides])
        train(cfg)
        progress.set("train", json.loads((final / TRAINER_STATE_FILE).read_text())["train_s"])
    return final


def eval_folder(out: Path, own: dict, decoding: str | None = None, argmax_dims: list[int] | None = None,
                chunking: str = "naive") -> Path:
    """Where a run's per-task evaluations are kept, so one checkpoint's decodings never mix: out/eval with the
    checkpoint's own decoding (`own`: its model config's `decoding` and `argmax_dims`; also where an override is
    None); out/eval-<decoding> where another decoding overrides it, `-argmax<dims>` added where other
    dimensions are decoded by their likeliest bin (eval-argmax3; eval-expected: none, every one by expected value),
    and `-<chunking>` where chunks become actions otherwise than naively (eval-ensemble)."""
    name = "eval" if decoding in (None, own.get("decoding")) else f"eval-{decoding}"
    if argmax_dims is not None and list(argmax_dims) != list(own.get("argmax_dims", [])):
        name += f"-argmax{''.join(map(str, argmax_dims))}" if argmax_dims else "-expected"
    return out / (name if chunking == "naive" else f"{name}-{chunking}")


def at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def add_eval_options(parser) -> None:
    """--decoding, --argmax-dims and --chunking: evaluate the same weights decoded otherwise than the checkpoint
    says, each decoding's results kept apart (`eval_folder`), so one run can be compared with itself;
    --eval-workers: how many processes evaluate (on an MT10 checkpoint every episode ended the same either way)."""
    from vla.model.vla_model import DECODING

    parser.add_argument("--decoding", choices=DECODING, default=None,
                        help="evaluate with this decoding instead of the checkpoint's; the same weights either way, "
                             "kept apart in DIR/eval-<decoding>")
    parser.add_argument("--argmax-dims", type=int, nargs="*", default=None,
                        help="evaluate with these action dimensions decoded by their likeliest bin instead of the "
                             "checkpoint's (3: the gripper; none: every one by expected value), kept apart in "
                             "DIR/eval[-<decoding>]-argmax<dims> (DIR/eval[-<decoding>]-expected)")
    parser.add_argument("--chunking", choices=LOCKSTEP_METHODS, default="naive",
                        help="ensemble: average every live chunk's action for each tick (ACT's temporal ensembling), "
                             "kept apart in DIR/eval...-ensemble")
    parser.add_argument("--eval-workers", type=at_least_one, default=2,
                        help="processes that evaluate tasks side by side, one torch thread each (1: in this process)")


def own_decoding(checkpoint: Path) -> dict:
    """The decoding a checkpoint itself asks for, {"decoding", "argmax_dims"}, from its config as loading fills it
    (without loading the weights); {} for a policy that has none (a lerobot baseline's config has no "config")."""
    from vla.model.vla_model import VLAConfig
    from vla.policies.vla_policy import PREDATING_DEFAULTS

    config = json.loads((checkpoint / "config.json").read_text())
    if "config" not in config:
        return {}
    cfg = VLAConfig(**(PREDATING_DEFAULTS | config["config"]))
    return {"decoding": cfg.decoding, "argmax_dims": cfg.argmax_dims}


def decoding_used(checkpoint: Path, decoding: str | None, argmax_dims: list[int] | None) -> tuple[str, list[int]]:
    """The decoding and likeliest-bin dimensions an evaluation ran with: the overrides, else the checkpoint's own."""
    own = own_decoding(checkpoint)
    return decoding or own["decoding"], own["argmax_dims"] if argmax_dims is None else list(argmax_dims)


def checkpoint_settings(checkpoint: Path) -> dict[str, dict]:
    """{"model": ..., "train": ...}: a checkpoint's model and training configs, filled as `fill_settings` does."""
    config = json.loads((checkpoint / "config.json").read_text())
    return fill_settings(config["config"], config["meta"]["train_config"])


def fill_settings(model: dict, train: dict) -> dict[str, dict]:
    """{"model": ..., "train": ...}: model and training configs (a checkpoint's, or as a results file kept them)
    with the defaults of fields added since filled in, so that a run predating a field compares equal to one at
    its default."""
    from dataclasses import MISSING, asdict, fields

    from vla.model.vla_model import VLAConfig
    from vla.policies.vla_policy import PREDATING_DEFAULTS
    from vla.train import TrainConfig

    train_defaults = {f.name: f.default_factory() if f.default is MISSING else f.default
                      for f in fields(TrainConfig) if f.name != "model"}
    return {"model": asdict(VLAConfig(**(PREDATING_DEFAULTS | model))),
            "train": train_defaults | {k: v for k, v in train.items() if k != "model"}}


def describe_decoding(results: dict) -> str:
    """How a benchmark's results were decoded, from their `decoding`, `argmax_dims` and `chunking` (naive where
    results predate it)."""
    dims, ensembled = results["argmax_dims"], results.get("chunking", "naive") == "ensemble"
    return (f"{results['decoding']} decoding" + (f", dimensions {dims} by their likeliest bin" if dims else "")
            + (", overlapping chunks averaged (temporal ensembling)" if ensembled else ""))


_eval_policy = None  # one per evaluation worker process


def _load_eval_policy(checkpoint: Path, decoding: str | None, argmax_dims: list[int] | None, chunking: str,
                      threads: int | None = None) -> None:
    """The checkpoint's policy, decoded as asked, in this process (`threads`: torch's, in a worker)."""
    import torch

    from vla.evaluate import override_decoding
    from vla.policies.registry import load_policy
    from vla.runtime.chunking import lockstep

    global _eval_policy
    if threads:
        torch.set_num_threads(threads)
    _eval_policy = lockstep(override_decoding(load_policy(checkpoint), decoding, source=str(checkpoint),
                                              argmax_dims=argmax_dims), chunking)


def _evaluate_task(job: tuple[str, int, int | None]) -> tuple[str, dict]:
    from vla.evaluate import evaluate_policy

    task, episodes, max_episode_steps = job
    r = evaluate_policy(_eval_policy, [task], episodes, EVAL_SEED, max_episode_steps, episodes, _eval_policy.schema,
                        out=None, video=False)
    return task, r["tasks"][task]


def evaluate_stage(out: Path, checkpoint: Path, tasks: list[str], episodes: int, max_episode_steps: int | None,
                   progress: Progress, decoding: str | None = None, argmax_dims: list[int] | None = None,
                   chunking: str = "naive", workers: int = 2) -> dict[str, dict]:
    """`episodes` episodes per task on held-out seeds (EVAL_SEED+); each task's result is saved as it finishes
    (`eval_folder`/<task>.json), so a rerun skips it. `decoding` and `argmax_dims` override the checkpoint's;
    `chunking` is vla.evaluate.EvalConfig's. Tasks run in `workers` processes of one torch thread each: one
    process steps, renders and decodes in turn and leaves much of the second core idle (two: 1.6x on an MT10
    checkpoint, every episode ending the same way; README). -> task -> vla.evaluate's per-task result."""
    import multiprocessing as mp

    folder = eval_folder(out, own_decoding(checkpoint), decoding, argmax_dims, chunking)
    folder.mkdir(exist_ok=True)
    todo = [(task, episodes, max_episode_steps) for task in tasks if not (folder / f"{task}.json").is_file()]
    pool = None
    if workers > 1 and len(todo) > 1:
        pool = mp.get_context("spawn").Pool(min(workers, len(todo)), initializer=_load_eval_policy,
                                            initargs=(checkpoint, decoding, argmax_dims, chunking, 1))
        finished = pool.imap_unordered(_evaluate_task, todo)
    else:
        if todo:
            _load_eval_policy(checkpoint, decoding, argmax_dims, chunking)
        finished = map(_evaluate_task, todo)
    last = time.perf_counter()
    try:
        for task, result in finished:  # saved as each finishes; the stage's time is its wall time
            (folder / f"{task}.json").write_text(json.dumps(result))
            now = time.perf_counter()
            progress.add("evaluate", now - last)
            last = now
            print(f"{task}: {result['success_rate']:.0%}", flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    return {task: json.loads((folder / f"{task}.json").read_text()) for task in tasks}


def plot_cameras(path: Path, tasks: list[str], image_size: int, cameras: list[str] | None = None) -> None:
    """What the policy sees at the start of the first evaluation episode of each task (at most 5): one row per
    camera at the training resolution, with the instruction it is given."""
    from vla.envs import make_env, suite_of
    from vla.plots import plt

    tasks = tasks[:5]
    envs = [make_env(t, suite_of(t).default_schema(image_size, cameras)) for t in tasks]
    keys = envs[0].schema.image_keys
    fig, axes = plt.subplots(len(keys), len(tasks), figsize=(3 * len(tasks), 3.2 * len(keys)), squeeze=False)
    for col, env in enumerate(envs):
        obs, _ = env.reset(seed=EVAL_SEED)
        for row, key in enumerate(keys):
            camera = key.rsplit(".", 1)[-1]
            axes[row, col].imshow(obs[key])
            axes[row, col].set_axis_off()
            axes[row, col].set_title(f"{camera}: \"{env.instruction}\"" if row == 0 else camera, fontsize=8)
        env.close()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

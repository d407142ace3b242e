"""Record scripted-expert demonstrations into an episode store, until each task has N successful ones.

Every suite's expert sometimes fails (a Meta-World expert solves most seeds of most tasks, not all), so a task
is recorded until it has `episodes` successful demonstrations or has used `max_attempts` seeds; failed
attempts are dropped and counted, and the report gives each expert's own success rate and every shortfall.
Attempt i of a task uses seed `seed + i`. Re-running on the same store resumes: each task continues from the
seed after the last one it stored, so an interrupted recording loses at most the episode in progress (one per
worker: tasks are recorded `workers` at a time in processes of their own, this one alone writing the store).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla.datasets.episode_store import EpisodeStore
from vla.envs import resolve_tasks, suite_of, suites_by_task
from vla.policies.protocol import batch_observation
from vla.schema import TASK_KEY

# vla-demo's tasks, and vla-record's when none are named: three easy Meta-World tasks its defaults solve.
DEMO_TASKS = ("drawer-close-v3", "door-open-v3", "door-close-v3")


@dataclass
class RecordConfig:
    tasks: list[str] = field(default_factory=lambda: list(DEMO_TASKS))  # task names, groups (mt10, easy, ...) or suites
    episodes: int = 30  # successful demonstrations wanted per task
    max_attempts: int | None = None  # seeds tried per task at most; None: 2 x episodes + 10
    out: str = "data/demos.zarr"
    image_size: int = 96
    cameras: list[str] | None = None  # None: each suite's default (Meta-World: corner2; tabletop: scene, wrist)
    max_episode_steps: int | None = None  # None: the suite's own limit (Meta-World: 500)
    seed: int = 0  # attempt i of a task uses seed `seed + i`
    # DART (Laskey et al. 2017): the env executes the expert's action plus Gaussian noise of this std, and the
    # store keeps the expert's own action. The closed-loop expert corrects the drift, so the demonstrations
    # cover the states a learned policy drifts into, labelled with how to recover. 0: clean demonstrations.
    action_noise: float = 0.0
    # The hand's start drawn per episode within +-start_noise metres of the suite's fixed one, on each axis, for
    # suites with one fixed start (Meta-World; `Suite.fixed_start`). From one start the hand's position tells
    # how far into the demonstration a frame is and where it is heading, so a policy can fit the demonstrations
    # from its state and ignore the image (the tabletop suite draws its start per episode for this reason, and
    # a Meta-World reach policy's first command was the same for every goal: README). Evaluation keeps the
    # suite's own start. 0: the suite's start.
    start_noise: float = 0.0
    # Steps the expert keeps acting after the task's first success, recorded into the same episode (capped by the
    # episode limit). Meta-World's episode ends at its first success, and reach succeeds within 5 cm of its goal,
    # so a demonstration that stops there ends on a 5-cm shell around the goal and shows no state nearer it.
    # Evaluation still ends at the first success. Measured at 20 on MT10 (one seed, session 53): 81.5% against 80.5%,
    # reach 35% against 55% with the hand-aimed reach expert of the time (benchmarks/results/metaworld_history.md),
    # so 0 (stop there) is kept.
    after_success: int = 0
    # Tasks recorded at once, each in a spawned process of its own that sends its episodes back to this one, which
    # alone writes the store. Recording one task keeps one core busy (measured on Meta-World: 101% CPU), so two
    # workers on this 2-core machine take about half the time. A task's episodes stay in seed order, so resuming
    # works alike; the tasks interleave in the store. 1: every task in this process, one after another.
    workers: int = 2

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not self.tasks:
            raise ValueError("tasks must name at least one task")
        for name in ("action_noise", "start_noise", "after_success"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_attempts is not None and self.max_attempts < self.episodes:
            raise ValueError(f"max_attempts ({self.max_attempts}) must be >= episodes ({self.episodes})")

    @property
    def attempts_cap(self) -> int:
        return self.max_attempts if self.max_attempts is not None else 2 * self.episodes + 10


def run_episode(env, policy, seed: int, action_noise: float = 0.0, start_noise: float = 0.0,
                after_success: int = 0) -> tuple[dict, bool, dict | None]:
    """-> (frames, success, the structured goal the env reported at reset, if it has one).

    action_noise: std of the noise added to the executed action (DART); the frames keep the policy's action.
    start_noise: how far the hand's start may move from the env's fixed one (RecordConfig.start_noise).
    after_success: steps still recorded once the env has ended the episode on its first success
    (RecordConfig.after_success); success is that first one."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    obs, reset_info = env.reset(seed=seed, options={"start_noise": start_noise} if start_noise else None)
    policy.reset()
    frames: dict[str, list] = {k: [] for k in obs if k != TASK_KEY}
    frames["action"] = []
    success, left = False, None  # left: steps still to record after the first success
    while True:
        action = policy.select_action(batch_observation(obs))[0]
        for k in obs:
            if k != TASK_KEY:
                frames[k].append(obs[k])
        frames["action"].append(action)
        if action_noise > 0:
            action = np.clip(action + rng.normal(0, action_noise, action.shape), low, high).astype(action.dtype)
        obs, _, terminated, truncated, info = env.step(action)
        success = success or bool(info["is_success"])
        if terminated and left is None:
            left = after_success
        if truncated or left == 0:
            break
        if left is not None:
            left -= 1
    return {k: np.stack(v) for k, v in frames.items()}, success, reset_info.get("goal")


def episode_source(task: str, cfg: RecordConfig) -> str:
    """The store's source tag of a recorded episode of `task`: its suite, and DART's noise, the start's, the steps
    after success and the suite's expert tag when there are any, so that a resumed recording cannot mix
    demonstrations recorded otherwise unseen."""
    suite = suite_of(task)
    expert = suite.expert_tag(task)
    return (f"sim:{suite.name}" + (f" dart={cfg.action_noise:g}" if cfg.action_noise else "")
            + (f" start={cfg.start_noise:g}" if cfg.start_noise else "")
            + (f" after_success={cfg.after_success}" if cfg.after_success else "")
            + (f" expert={expert}" if expert else ""))


def stored_progress(store: EpisodeStore, seed: int) -> tuple[dict[str, tuple[int, int]], dict[str, set[str]]]:
    """For a store being resumed: env task -> (successful episodes stored, next seed to try), and env task ->
    the sources its episodes were recorded with."""
    progress: dict[str, tuple[int, int]] = {}
    sources: dict[str, set[str]] = {}
    for env_task, instruction, episode_seed, source in zip(
            store.episode_env_tasks(), store.episode_tasks(), store.episode_meta("episode_seed").tolist(),
            store.episode_meta("episode_source_index").tolist(), strict=True):
        task = env_task or instruction
        kept, next_seed = progress.get(task, (0, seed))
        progress[task] = (kept + 1, max(next_seed, episode_seed + 1))
        sources.setdefault(task, set()).add(store.sources[source])
    return progress, sources


def check_resumable(cfg: RecordConfig) -> None:
    """Raises ValueError, naming the task, if cfg asks a start_noise of a suite that draws its own start, or if
    the store at cfg.out already holds episodes of one of cfg's tasks recorded with another source tag (another
    action_noise, start_noise, after_success or expert) than this run would give them, or an episode whose goal
    its suite no longer gives its seed (check_stored_goals)."""
    tasks = resolve_tasks(cfg.tasks)
    if cfg.start_noise:
        for task in tasks:
            if not suite_of(task).fixed_start:
                raise ValueError(f"start_noise: {task}'s suite ({suite_of(task).name}) draws the hand's start per "
                                 "episode itself; start_noise is for suites with one fixed start (metaworld)")
    out = Path(cfg.out)
    if not out.exists():
        return
    store = EpisodeStore.open(out)
    _, stored = stored_progress(store, cfg.seed)
    for task in tasks:
        source = episode_source(task, cfg)
        if stored.get(task, {source}) != {source}:
            raise ValueError(f"{out}: {task}'s stored episodes were recorded as {sorted(stored[task])}, this run "
                             f"records {source!r} (another action_noise, start_noise, after_success or expert): "
                             "record into a new store")
    check_stored_goals(store)


def check_stored_goals(store: EpisodeStore) -> None:
    """Raises ValueError naming the first stored episode whose structured goal differs from the one its suite now
    gives that task and seed (Suite.episode_goal): the store was recorded under other splits or scenes, and
    training on it could train a pair the suite now holds out. Episodes of tasks no registered suite has, or
    without a goal, are not checked."""
    suite_of_task = suites_by_task()
    for i, (task, seed, goal) in enumerate(zip(store.episode_env_tasks(), store.episode_meta("episode_seed").tolist(),
                                               store.episode_goals(), strict=True)):
        suite = suite_of_task.get(task)
        expected = suite.episode_goal(task, seed) if suite is not None and goal is not None else None
        if expected is not None and expected != goal:
            raise ValueError(f"{store.path}: episode {i} ({task}, seed {seed}) was recorded with the goal {goal}, "
                             f"but the {suite.name} suite now gives that seed {expected}: the store was "
                             "recorded under other splits or scenes; record into a new store")


def open_store(out: Path, schema) -> EpisodeStore:
    store = EpisodeStore.open(out, "a") if out.exists() else EpisodeStore.create(out, schema)
    for trimmed in store.repair():  # what an interrupted earlier run left uncommitted
        print(f"{out}: trimmed the uncommitted tail of an interrupted run: {trimmed}")
    schema.require_compatible(store.schema, f"store {out}")
    return store


def record_task(cfg: RecordConfig, task: str, kept: int, next_seed: int, emit: Callable[..., None]) -> dict:
    """Record `task` from `kept` stored successes and seed `next_seed` on, until it has cfg.episodes or has used
    its attempts; each success goes to emit(episode, instruction=, seed=, goal=) at once. -> its report row."""
    suite = suite_of(task)
    env = suite.make_env(task, suite.default_schema(cfg.image_size, cfg.cameras), cfg.max_episode_steps)
    expert = suite.make_expert(env)
    try:
        while kept < cfg.episodes and next_seed - cfg.seed < cfg.attempts_cap:
            episode, success, goal = run_episode(env, expert, next_seed, cfg.action_noise, cfg.start_noise,
                                                 cfg.after_success)
            if success:  # env.instruction: the one this episode was given (grounding suites draw one per episode)
                emit(episode, instruction=env.instruction, seed=next_seed, goal=goal)
                kept += 1
            next_seed += 1
    finally:
        env.close()
    attempts = next_seed - cfg.seed
    return {"kept": kept, "attempts": attempts, "expert_success": kept / max(attempts, 1),
            "short": max(cfg.episodes - kept, 0)}


def _record_worker(cfg: RecordConfig, todo, results) -> None:
    """A worker process: records the tasks it takes from `todo` ((task, kept, next_seed), None: stop), sending
    ("episode", task, episode, meta), ("done", task, report) or ("error", task, traceback) to `results`."""
    while (job := todo.get()) is not None:
        task = job[0]
        try:
            report = record_task(cfg, *job, emit=lambda episode, **meta: results.put(("episode", task, episode, meta)))
            results.put(("done", task, report))
        except BaseException:
            results.put(("error", task, traceback.format_exc()))
            return


def record(cfg: RecordConfig) -> dict:
    tasks = resolve_tasks(cfg.tasks)
    out = Path(cfg.out)
    check_resumable(cfg)
    store = open_store(out, suite_of(tasks[0]).default_schema(cfg.image_size, cfg.cameras))
    progress, _ = stored_progress(store, cfg.seed)
    start = {task: progress.get(task, (0, cfg.seed)) for task in tasks}
    bar = tqdm(total=len(tasks) * cfg.episodes, initial=sum(min(k, cfg.episodes) for k, _ in start.values()),
               desc="recording", unit="demo")

    def write(task: str, episode: dict, instruction: str, seed: int, goal) -> None:
        store.add_episode(episode, task=instruction, seed=seed, success=True, env_task=task, goal=goal,
                          source=episode_source(task, cfg))
        bar.update(1)
        bar.set_postfix(task=task, seed=seed)

    workers = min(cfg.workers, len(tasks))
    if workers == 1:
        report = {task: record_task(cfg, task, *start[task], emit=lambda e, task=task, **meta: write(task, e, **meta))
                  for task in tasks}
    else:
        report = record_in_workers(cfg, tasks, start, workers, write)
    bar.close()
    return {"store": str(out), "tasks": {task: report[task] for task in tasks}, **store.summary()}


def record_in_workers(cfg: RecordConfig, tasks: list[str], start: dict, workers: int, write) -> dict[str, dict]:
    """record_task for every task in `workers` spawned processes, every episode written here as it arrives."""
    ctx = mp.get_context("spawn")  # a forked child would inherit this process's MuJoCo and EGL state
    todo, results = ctx.Queue(), ctx.Queue()
    for task in tasks:
        todo.put((task, *start[task]))
    for _ in range(workers):
        todo.put(None)
    procs = [ctx.Process(target=_record_worker, args=(cfg, todo, results), daemon=True) for _ in range(workers)]
    for proc in procs:
        proc.start()
    report: dict[str, dict] = {}
    try:
        while len(report) < len(tasks):
            try:
                kind, task, *rest = results.get(timeout=10)
            except queue.Empty:
                if not any(proc.is_alive() for proc in procs):  # killed without a word (the OOM killer, a crash)
                    raise RuntimeError(f"every recording worker died; unfinished: {sorted(set(tasks) - set(report))}")
                continue
            if kind == "episode":
                write(task, rest[0], **rest[1])
            elif kind == "done":
                report[task] = rest[0]
            else:
                raise RuntimeError(f"recording {task} failed in a worker process:\n{rest[0]}")
    finally:
        for proc in procs:
            if len(report) < len(tasks):  # stopped early: what the workers still record would be lost anyway
                proc.terminate()
            proc.join()
    return report


def print_report(report: dict) -> None:
    for task, r in report["tasks"].items():
        short = f", SHORT by {r['short']}" if r["short"] else ""
        print(f"{task}: kept {r['kept']} of {r['attempts']} attempts (expert success {r['expert_success']:.0%}){short}")
    short = {t: r["short"] for t, r in report["tasks"].items() if r["short"]}
    if short:
        print(f"{len(short)} task(s) fell short of the demonstrations asked for: {short}")
    print(f"{report['store']}: {report['episodes']} episodes, {report['frames']} frames")

"""`vla-robot`: build the policy source, the robot and the guard from a config, and run episodes."""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vla.runtime.clock import InferenceDelay, RealClock, SimulatedClock
from vla.runtime.controller import Controller, LocalPolicy, RemotePolicy, RunReport
from vla.runtime.guard import SafetyGuard


@dataclass
class RobotConfig:
    policy: str = "runs/demo"
    token: str | None = None
    robot: str = "sim"
    tasks: list[str] | None = None
    episodes: int = 10
    seed: int = 100_000
    max_episode_steps: int = 300
    control_hz: float = 20.0
    chunking: str = "naive"  # naive | prefix (real-time chunking) | ensemble (ACT's temporal ensembling)
    ensemble_coeff: float = 0.01
    refill_at: int | None = None
    sim_time: bool = False  # step the sim in simulated real time (reproducible on any machine)
    delay_ms: float = 0.0  # injected inference delay: fixed part...
    delay_jitter_ms: float = 0.0  # ...plus an exponential tail of this mean
    recv_timeout_s: float = 1.0
    hold_after_s: float = 0.25
    stop_after_s: float = 1.0
    max_delta: float = 1.0
    record: str | None = None
    lerobot: dict = field(default_factory=dict)
    out: str | None = None

    def __post_init__(self) -> None:
        from vla.runtime.chunking import METHODS

        if self.robot not in ("sim", "lerobot", "mock"):
            raise ValueError(f"robot={self.robot!r}: expected sim, lerobot or mock")
        if self.chunking not in METHODS:
            raise ValueError(f"chunking={self.chunking!r}: expected one of {list(METHODS)}")
        if self.sim_time and self.robot == "lerobot":
            raise ValueError("sim_time=true is for robot=sim or mock; a real robot runs on the wall clock")
        missing = [k for k in ("type", "task") if self.robot == "lerobot" and k not in self.lerobot]
        if missing:
            raise ValueError(f"robot=lerobot needs lerobot.{missing[0]}= (e.g. lerobot.type=so101_follower "
                             f"lerobot.task='pick up the cube' lerobot.port=/dev/ttyACM0)")
        if self.delay_ms < 0 or self.delay_jitter_ms < 0 or self.control_hz <= 0:
            raise ValueError(f"delay_ms and delay_jitter_ms must be >= 0 and control_hz > 0, got {self.delay_ms}, "
                             f"{self.delay_jitter_ms} and {self.control_hz}")


def policy_source(cfg: RobotConfig):
    if cfg.policy.startswith(("ws://", "wss://")):
        from vla.runtime.client import PolicyClient

        return RemotePolicy(PolicyClient(cfg.policy, token=cfg.token, recv_timeout_s=cfg.recv_timeout_s))
    from vla.policies.registry import load_policy

    return LocalPolicy(load_policy(cfg.policy))


def trained_tasks(source) -> list[str]:
    if isinstance(source, LocalPolicy):
        return list(source.policy.meta.get("env_tasks", []))
    return list(source.client.metadata.get("env_tasks") or [])


def run_robot(cfg: RobotConfig, policy=None) -> dict:
    """Episodes of `cfg.policy` on `cfg.robot`; `policy`, when given, is that checkpoint already loaded."""
    source = policy_source(cfg) if policy is None else LocalPolicy(policy)
    controllers: list[Controller] = []

    def stop(signum, _frame):  # Ctrl-C / SIGTERM: the loop ends, ramps down and disconnects
        for c in controllers:
            c.request_stop(f"signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"vla-robot: driving robot={cfg.robot} at {cfg.control_hz:g} Hz; Ctrl-C or SIGTERM stops it safely",
          file=sys.stderr, flush=True)
    try:
        return _run(cfg, source, controllers)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _episodes(cfg: RobotConfig, source):
    """(label, robot) pairs: one per sim episode, or the one lerobot/mock robot."""
    if cfg.robot == "sim":
        from vla.envs import resolve_tasks
        from vla.runtime.robots import SimRobot

        for task in resolve_tasks(cfg.tasks) if cfg.tasks else trained_tasks(source):
            for i in range(cfg.episodes):
                yield task, SimRobot(task, cfg.seed + i, source.schema, cfg.max_episode_steps, cfg.max_delta)
    elif cfg.robot == "lerobot":
        from vla.runtime.robots import LeRobotRobot

        options = dict(cfg.lerobot)
        robot_type, task = options.pop("type"), options.pop("task")
        yield robot_type, LeRobotRobot(robot_type, source.schema, task, **options)
    elif cfg.robot == "mock":
        from vla.runtime.guard import Limits
        from vla.runtime.robots import MockRobot

        dim = source.schema.action_dim
        yield "mock", MockRobot(source.schema, Limits(-np.ones(dim), np.ones(dim), cfg.max_delta))


def _run(cfg: RobotConfig, source, controllers: list) -> dict:
    from rich.console import Console

    results: dict = {"tasks": {}, "episodes": []}
    store = None
    for label, robot in _episodes(cfg, source):
        guard = SafetyGuard(robot.limits, cfg.control_hz, cfg.hold_after_s, cfg.stop_after_s)
        max_ticks = None if cfg.robot == "sim" else cfg.max_episode_steps  # the sim env ends its own episodes
        seed = getattr(robot, "seed", None) or 0
        controller = Controller(robot, source, cfg.control_hz, guard, chunking=cfg.chunking,
                                clock=SimulatedClock() if cfg.sim_time else RealClock(),
                                delay=InferenceDelay(cfg.delay_ms, cfg.delay_jitter_ms, seed), refill_at=cfg.refill_at,
                                max_ticks=max_ticks, record=cfg.record is not None, ensemble_coeff=cfg.ensemble_coeff)
        controllers[:] = [controller]
        report: RunReport = controller.run()
        jitter = report.jitter_ms(cfg.control_hz)
        row = {"label": label, "seed": getattr(robot, "seed", None), "success": report.success,
               "ticks": report.ticks, "ended_by": report.ended_by, "guard": report.guard_counts,
               "faults": report.faults, "inference_errors": len(report.inference_errors),
               "jitter_ms_p50": float(np.percentile(jitter, 50)) if len(jitter) else None,
               "jitter_ms_p99": float(np.percentile(jitter, 99)) if len(jitter) else None,
               "inference_ms_p50": float(np.median(report.inference_ms)) if report.inference_ms else None,
               "late_ticks_max": max(report.late_ticks, default=None),
               "switch_jump_mean": float(np.mean(report.switch_jumps)) if report.switch_jumps else None}
        results["episodes"].append(row)
        if cfg.record and controller.frames:
            store = _save(cfg.record, robot, controller.frames, row, store)
        if controller.stop_requested.is_set():
            break
    for label in dict.fromkeys(r["label"] for r in results["episodes"]):
        rows = [r for r in results["episodes"] if r["label"] == label and r["success"] is not None]
        if rows:
            results["tasks"][label] = {"success_rate": float(np.mean([r["success"] for r in rows])),
                                       "episodes": len(rows)}
    if results["tasks"]:
        results["mean_success_rate"] = float(np.mean([t["success_rate"] for t in results["tasks"].values()]))
    results["config"] = asdict(cfg)
    console = Console()
    for label, t in results["tasks"].items():
        console.print(f"{label}: success {t['success_rate']:.0%} over {t['episodes']} episodes")
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(results, indent=2))
    return results


def _save(path: str, robot, frames: list[dict], row: dict, store):
    from vla.datasets.episode_store import EpisodeStore

    if store is None:
        store = EpisodeStore.open(path, "a") if Path(path).exists() else EpisodeStore.create(path, robot.schema)
    episode = {k: np.stack([f[k] for f in frames]).astype(store.schema.features[k].dtype) for k in store.keys}
    task = robot.observe()["task"]
    store.add_episode(episode, task=task, seed=row["seed"] if row["seed"] is not None else -1,
                      success=bool(row["success"]), env_task=getattr(robot, "task", None), source=f"robot:{row['label']}")
    return store

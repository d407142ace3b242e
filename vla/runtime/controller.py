"""The robot controller: a fixed-rate loop between a policy and a robot, with the safety guard between.

Each tick reads an observation, tops up the action-chunk queue, and sends one guarded command. When the
queue is down to `refill_at` actions it asks for the next chunk in a background thread, so the loop never
waits on inference; a chunk computed from the observation of tick k and arriving at tick k + d has its
first d actions dropped (they belong to ticks already past). By default `refill_at` follows the measured
inference latency (in ticks, from the slowest of the last 10 calls), so the queue does not run dry. No fresh action (inference late, server
gone) is the guard's watchdog business: hold, then a controlled stop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from vla.runtime.guard import SafetyGuard
from vla.schema import ACTION_KEY, TASK_KEY

log = logging.getLogger("vla.robot")


class LocalPolicy:
    """An in-process Policy (a VLAPolicy checkpoint, a baseline) seen as a chunk source."""

    def __init__(self, policy):
        from vla.policies.protocol import batch_observation

        self.policy, self._batch = policy, batch_observation
        self.schema = policy.schema
        self.actions_per_chunk = policy.n_action_steps

    def infer(self, obs: dict) -> np.ndarray:
        return self.policy.predict_chunk(self._batch(obs))[0]

    def reset(self) -> None:
        self.policy.reset()


class RemotePolicy:
    """A policy server reached through PolicyClient."""

    def __init__(self, client):
        from vla.schema import Schema

        self.client = client
        meta = client.metadata or client.connect()
        self.schema = Schema.from_json(meta["schema"])
        self.actions_per_chunk = meta.get("n_action_steps")

    def infer(self, obs: dict) -> np.ndarray:
        return self.client.infer(obs)

    def reset(self) -> None:
        self.client.reset()


@dataclass
class RunReport:
    ticks: int = 0
    success: bool | None = None
    ended_by: str = ""
    guard_counts: dict = field(default_factory=dict)
    faults: list = field(default_factory=list)
    tick_starts: list = field(default_factory=list)
    inference_ms: list = field(default_factory=list)
    inference_errors: list = field(default_factory=list)

    def jitter_ms(self, control_hz: float) -> np.ndarray:
        """|actual tick interval - nominal| per tick, in ms."""
        return np.abs(np.diff(self.tick_starts) - 1.0 / control_hz) * 1000


class Controller:
    def __init__(self, robot, policy, control_hz: float, guard: SafetyGuard | None = None,
                 actions_per_chunk: int | None = None, refill_at: int | None = None, max_ticks: int | None = None,
                 record: bool = False):
        self.robot, self.policy, self.control_hz = robot, policy, control_hz
        self.guard = guard or SafetyGuard(robot.limits, control_hz)
        self.actions_per_chunk = actions_per_chunk or policy.actions_per_chunk
        self.refill_at, self.max_ticks, self.record = refill_at, max_ticks, record
        policy.schema.require_compatible(robot.schema, "robot")
        self.stop_requested = threading.Event()
        self.frames: list[dict] = []

    def request_stop(self, reason: str = "stop requested") -> None:
        log.warning("controller: %s", reason)
        self._stop_reason = reason
        self.stop_requested.set()

    def _submit(self, pool: ThreadPoolExecutor, obs: dict, report: RunReport) -> Future:
        def timed():
            t0 = time.perf_counter()
            chunk = self.policy.infer(obs)
            report.inference_ms.append((time.perf_counter() - t0) * 1000)
            return chunk
        return pool.submit(timed)

    def run(self) -> RunReport:
        report, dt = RunReport(), 1.0 / self.control_hz
        queue: deque = deque()
        pending: Future | None = None
        pending_tick = 0
        self._stop_reason = ""
        self.frames = []
        self.robot.connect()
        self.policy.reset()
        pool = ThreadPoolExecutor(1, thread_name_prefix="inference")
        next_tick = time.perf_counter()
        try:
            while True:
                if self.stop_requested.is_set():
                    report.ended_by = self._stop_reason
                    break
                if getattr(self.robot, "done", False):
                    report.ended_by = "episode done"
                    break
                if self.max_ticks is not None and report.ticks >= self.max_ticks:
                    report.ended_by = "max ticks"
                    break
                if self.guard.stopped:
                    report.ended_by = "guard stop"
                    break
                now = time.perf_counter()
                report.tick_starts.append(now)
                obs = self.robot.observe()
                if pending is not None and pending.done():
                    queue = self._take_chunk(pending, report.ticks - pending_tick, report) or queue
                    pending = None
                if pending is None and len(queue) <= self._refill_at(report):
                    pending, pending_tick = self._submit(pool, obs, report), report.ticks
                command = self.guard.step(queue.popleft() if queue else None, now)
                self.robot.act(command)
                if self.record:
                    self.frames.append({**{k: v for k, v in obs.items() if k != TASK_KEY}, ACTION_KEY: command})
                report.ticks += 1
                next_tick += dt
                delay = next_tick - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_tick = time.perf_counter()  # overran: do not try to catch up with a burst
        finally:
            self._ramp_down()
            pool.shutdown(wait=False, cancel_futures=True)
            self.robot.disconnect()
        report.success = getattr(self.robot, "success", None)
        report.guard_counts, report.faults = dict(self.guard.counts), list(self.guard.faults)
        return report

    def _refill_at(self, report: RunReport) -> int:
        if self.refill_at is not None:
            return self.refill_at
        recent = report.inference_ms[-10:]
        latency_ticks = math.ceil(max(recent) / 1000 * self.control_hz) if recent else 1
        return max(1, min(latency_ticks, self.actions_per_chunk - 1))

    def _take_chunk(self, future: Future, late: int, report: RunReport) -> deque | None:
        try:
            chunk = np.asarray(future.result(), np.float64)
        except Exception as e:  # a timeout, a lost server, a failed inference: the guard's watchdog covers it
            report.inference_errors.append(f"{type(e).__name__}: {e}")
            log.warning("inference failed: %s: %s", type(e).__name__, e)
            return None
        if chunk.ndim != 2 or chunk.shape[1] != self.guard.last.shape[0]:
            report.inference_errors.append(f"chunk of shape {chunk.shape}")
            return None
        return deque(chunk[: self.actions_per_chunk][late:])

    def _ramp_down(self) -> None:
        """Controlled stop: rate-limited commands towards the hold target, at the control rate (<= 1 s)."""
        self.guard.stopped = True
        target = self.guard.hold_target()
        for _ in range(int(self.control_hz)):
            if np.allclose(self.guard.last, target):
                return
            try:
                self.robot.act(self.guard.step(None, time.perf_counter()))
            except Exception:  # the robot is gone already: nothing more to send
                log.exception("robot failed during the stop ramp")
                return
            time.sleep(1.0 / self.control_hz)

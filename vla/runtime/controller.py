"""The robot controller: a fixed-rate loop between a policy and a robot, with the safety guard between.

Each tick reads an observation, takes a chunk that has arrived, asks for the next one when the plan runs
low, and sends one guarded command. Inference never blocks the loop: on the wall clock it runs in a
background thread; on a simulated clock (`vla.runtime.clock`) it is delivered after its injected delay. How
chunks become one action per tick (`naive`, `prefix` for real-time chunking, `ensemble`) is
`vla.runtime.chunking`. The expected latency in ticks is the slowest of the last 10 measured (ticks from a
request's observation to its chunk's arrival). No fresh action (inference late, server gone) is the guard's
watchdog business: hold, then a controlled stop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from vla.runtime.chunking import ChunkPlan
from vla.runtime.clock import InferenceDelay, RealClock
from vla.runtime.guard import SafetyGuard
from vla.schema import ACTION_KEY, TASK_KEY

log = logging.getLogger("vla.robot")


class LocalPolicy:
    """An in-process Policy (a VLAPolicy checkpoint, a baseline) seen as a chunk source."""

    def __init__(self, policy):
        from vla.policies.protocol import batch_observation

        self.policy, self._batch = policy, batch_observation
        self.schema = policy.schema
        self.chunk_size, self.n_action_steps = policy.chunk_size, policy.n_action_steps
        self.accepts_prefix = policy.accepts_prefix

    def infer(self, obs: dict, prefix: np.ndarray | None = None) -> np.ndarray:
        if prefix is None:
            return self.policy.predict_chunk(self._batch(obs))[0]
        return self.policy.predict_chunk(self._batch(obs), prefix=prefix[None])[0]

    def reset(self) -> None:
        self.policy.reset()


class RemotePolicy:
    """A policy server reached through PolicyClient."""

    def __init__(self, client):
        from vla.schema import Schema

        self.client = client
        meta = client.metadata or client.connect()
        self.schema = Schema.from_json(meta["schema"])
        self.chunk_size, self.n_action_steps = meta["chunk_size"], meta["n_action_steps"]
        self.accepts_prefix = bool(meta.get("accepts_prefix", False))

    def infer(self, obs: dict, prefix: np.ndarray | None = None) -> np.ndarray:
        return self.client.infer(obs, prefix=prefix)

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
    inference_ms: list = field(default_factory=list)  # request to chunk available (compute + injected delay)
    late_ticks: list = field(default_factory=list)  # ticks from a request's observation to its chunk's use
    switch_jumps: list = field(default_factory=list)  # |new plan - old plan| at each chunk switch
    inference_errors: list = field(default_factory=list)

    def jitter_ms(self, control_hz: float) -> np.ndarray:
        """|actual tick interval - nominal| per tick, in ms."""
        return np.abs(np.diff(self.tick_starts) - 1.0 / control_hz) * 1000


class Controller:
    def __init__(self, robot, policy, control_hz: float, guard: SafetyGuard | None = None, chunking: str = "naive",
                 clock=None, delay: InferenceDelay | None = None, refill_at: int | None = None,
                 max_ticks: int | None = None, record: bool = False, ensemble_coeff: float = 0.01):
        self.robot, self.policy, self.control_hz = robot, policy, control_hz
        self.guard = guard or SafetyGuard(robot.limits, control_hz)
        self.plan = ChunkPlan(chunking, policy.chunk_size, policy.n_action_steps, ensemble_coeff, refill_at)
        if chunking == "prefix" and not policy.accepts_prefix:
            raise ValueError("chunking=prefix needs a policy that conditions on given actions; this one does not "
                             "(accepts_prefix is false): use naive or ensemble")
        self.clock = clock or RealClock()
        self.delay = delay or InferenceDelay()
        self.max_ticks, self.record = max_ticks, record
        policy.schema.require_compatible(robot.schema, "robot")
        self.stop_requested = threading.Event()
        self.frames: list[dict] = []

    def request_stop(self, reason: str = "stop requested") -> None:
        log.warning("controller: %s", reason)
        self._stop_reason = reason
        self.stop_requested.set()

    def _submit(self, obs: dict, prefix: np.ndarray | None, report: RunReport):
        delay_s = self.delay.sample_s()

        def infer():
            t0 = time.perf_counter()
            chunk = self.policy.infer(obs, prefix)
            compute_ms = 0.0 if self.clock.simulated else (time.perf_counter() - t0) * 1000  # simulated: no time
            report.inference_ms.append(compute_ms + delay_s * 1000)
            return chunk
        return self.clock.submit(infer, delay_s)

    def _end_reason(self, report: RunReport) -> str | None:
        if self.stop_requested.is_set():
            return self._stop_reason
        if getattr(self.robot, "done", False):
            return "episode done"
        if self.max_ticks is not None and report.ticks >= self.max_ticks:
            return "max ticks"
        if self.guard.stopped:
            return "guard stop"
        return None

    def run(self) -> RunReport:
        report, dt, clock = RunReport(), 1.0 / self.control_hz, self.clock
        pending, pending_tick = None, 0
        self._stop_reason = ""
        self.frames = []
        self.plan.reset()
        self.robot.connect()
        self.policy.reset()
        next_tick = clock.now()
        try:
            while (reason := self._end_reason(report)) is None:
                now, tick = clock.now(), report.ticks
                report.tick_starts.append(now)
                obs = self.robot.observe()
                for attempt in range(2):  # take an arrived chunk; ask for the next; take it if it is in already
                    if pending is not None and pending.done():
                        self._take_chunk(pending, pending_tick, report)
                        pending = None
                    delay_ticks = self._delay_ticks(report)
                    if attempt == 0 and pending is None and self.plan.wants_chunk(tick, delay_ticks):
                        prefix = self.plan.prefix(tick, delay_ticks)
                        pending, pending_tick = self._submit(obs, prefix, report), tick
                command = self.guard.step(self.plan.action(tick), now)
                self.robot.act(command)
                if self.record:
                    self.frames.append({**{k: v for k, v in obs.items() if k != TASK_KEY}, ACTION_KEY: command})
                report.ticks += 1
                next_tick += dt
                if clock.now() < next_tick:
                    clock.sleep_until(next_tick)
                else:
                    next_tick = clock.now()  # overran: do not try to catch up with a burst
            report.ended_by = reason
        finally:
            self._ramp_down()
            clock.close()
            self.robot.disconnect()
        report.success = getattr(self.robot, "success", None)
        report.guard_counts, report.faults = dict(self.guard.counts), list(self.guard.faults)
        return report

    def _delay_ticks(self, report: RunReport) -> int:
        """The expected latency in ticks: the slowest of the last 10 chunks (1 before any has arrived)."""
        recent = report.late_ticks[-10:]
        return max(recent) if recent else 1

    def _take_chunk(self, future, start: int, report: RunReport) -> None:
        try:
            chunk = np.asarray(future.result(), np.float64)
        except Exception as e:  # a timeout, a lost server, a failed inference: the guard's watchdog covers it
            report.inference_errors.append(f"{type(e).__name__}: {e}")
            log.warning("inference failed: %s: %s", type(e).__name__, e)
            return
        if chunk.ndim != 2 or chunk.shape[1] != self.guard.last.shape[0]:
            report.inference_errors.append(f"chunk of shape {chunk.shape}")
            return
        report.late_ticks.append(report.ticks - start)
        jump = self.plan.add(chunk, start, report.ticks)
        if jump is not None:
            report.switch_jumps.append(jump)

    def _ramp_down(self) -> None:
        """Controlled stop: rate-limited commands towards the hold target, at the control rate (<= 1 s)."""
        self.guard.stopped = True
        target = self.guard.hold_target()
        for _ in range(int(self.control_hz)):
            if np.allclose(self.guard.last, target):
                return
            try:
                self.robot.act(self.guard.step(None, self.clock.now()))
            except Exception:  # the robot is gone already: nothing more to send
                log.exception("robot failed during the stop ramp")
                return
            self.clock.sleep_until(self.clock.now() + 1.0 / self.control_hz)

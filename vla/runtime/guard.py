"""The safety guard between a policy and a robot. On by default; every command a robot receives passes it.

Per tick, `guard.step(action, now)` turns the policy's proposal (or None: no fresh action) into the command
to send:

1. A proposal that is not finite is refused: a fault is raised (counted, logged, `faults` grows) and the
   guard holds. NaN is never clamped into a number.
2. Watchdog: with no valid proposal for `hold_after_s` the guard holds; after `stop_after_s` it performs a
   controlled stop and `stopped` turns true (the controller then ends the run).
3. Holding means moving towards the hold target: the last command on the dimensions in `limits.hold`
   (position-like: a joint target stays where it is) and `limits.rest` on the others (velocity-like: an
   end-effector delta goes to zero).
4. The target is clamped to [low, high] and then rate-limited: the change from the previous command is at
   most `max_delta` per tick, `max_velocity * dt`, and within `max_acceleration * dt^2` of the previous
   change. Holds and stops are rate-limited the same way, so no command ever jumps.

Every intervention (clamp, rate limit, non-finite, hold, stop) is counted in `counts` and logged.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("vla.guard")


@dataclass
class Limits:
    low: np.ndarray
    high: np.ndarray
    max_delta: np.ndarray  # per tick
    max_velocity: np.ndarray | None = None  # units/s
    max_acceleration: np.ndarray | None = None  # units/s^2
    hold: np.ndarray | None = None  # bool per dim: hold the last command (True) or go to `rest` (False)
    rest: np.ndarray | None = None

    def __post_init__(self) -> None:
        f = lambda v: None if v is None else np.broadcast_to(np.asarray(v, np.float64), self.low.shape).copy()  # noqa: E731
        self.low, self.high = np.asarray(self.low, np.float64), np.asarray(self.high, np.float64)
        self.max_delta, self.max_velocity, self.max_acceleration = map(f, (self.max_delta, self.max_velocity,
                                                                           self.max_acceleration))
        self.hold = np.ones(self.low.shape, bool) if self.hold is None else np.asarray(self.hold, bool)
        self.rest = np.clip(f(0.0 if self.rest is None else self.rest), self.low, self.high)
        for name in ("low", "high", "max_delta", "rest"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"guard limit {name} must be finite, got {getattr(self, name)}")
        if np.any(self.low > self.high) or np.any(self.max_delta <= 0):
            raise ValueError(f"guard limits need low <= high and max_delta > 0 (low {self.low}, high "
                             f"{self.high}, max_delta {self.max_delta})")


@dataclass
class SafetyGuard:
    limits: Limits
    control_hz: float
    hold_after_s: float = 0.25
    stop_after_s: float = 1.0
    initial: np.ndarray | None = None  # the robot's command at start (default: rest)
    counts: Counter = field(default_factory=Counter)
    faults: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dt = 1.0 / self.control_hz
        self.last = np.array(self.limits.rest if self.initial is None else np.clip(self.initial, self.limits.low,
                                                                                     self.limits.high), np.float64)
        self.last_change = np.zeros_like(self.last)
        self.last_valid_time: float | None = None
        self.stopped = False

    def _intervene(self, kind: str, message: str | None = None) -> None:
        self.counts[kind] += 1
        if message is not None:
            self.faults.append(message)
            log.warning("guard: %s", message)
        elif self.counts[kind] == 1 or self.counts[kind] % 100 == 0:
            log.info("guard: %s (%d so far)", kind, self.counts[kind])

    def hold_target(self) -> np.ndarray:
        return np.where(self.limits.hold, self.last, self.limits.rest)

    def step(self, action: np.ndarray | None, now: float) -> np.ndarray:
        if self.last_valid_time is None:
            self.last_valid_time = now  # the watchdog starts with the first tick
        target = None
        if action is not None:
            action = np.asarray(action, np.float64)
            if action.shape != self.last.shape:
                self._intervene("bad_shape", f"action of shape {action.shape}, expected {self.last.shape}")
            elif not np.all(np.isfinite(action)):
                self._intervene("non_finite", f"non-finite action {action.tolist()}: holding")
            elif not self.stopped:
                target, self.last_valid_time = action, now
        if target is None:
            waited = now - self.last_valid_time
            if waited >= self.stop_after_s and not self.stopped:
                self.stopped = True
                self._intervene("stop", f"no valid action for {waited:.3f} s: controlled stop")
            elif waited >= self.hold_after_s or action is not None:
                self._intervene("hold")
            target = self.hold_target()
        return self._limit(target)

    def _limit(self, target: np.ndarray) -> np.ndarray:
        lim = self.limits
        clamped = np.clip(target, lim.low, lim.high)
        if np.any(clamped != target):
            self._intervene("clamp")
        change = clamped - self.last
        bound = lim.max_delta.copy()
        if lim.max_velocity is not None:
            bound = np.minimum(bound, lim.max_velocity * self.dt)
        low_c, high_c = -bound, bound
        if lim.max_acceleration is not None:
            dv = lim.max_acceleration * self.dt * self.dt
            # keep the change within dv of the previous change, but always allow slowing towards zero
            low_c = np.maximum(low_c, np.minimum(self.last_change - dv, 0.0))
            high_c = np.minimum(high_c, np.maximum(self.last_change + dv, 0.0))
        limited = np.clip(change, low_c, high_c)
        if np.any(limited != change):
            self._intervene("rate_limit")
        command = np.clip(self.last + limited, lim.low, lim.high)
        self.last_change, self.last = command - self.last, command
        return command.astype(np.float32)

"""Time for the controller: the wall clock, or simulated real time; and an injected inference delay.

`RealClock` is the robot's: ticks are paced by sleeping and inference runs in a background thread, so the
loop never waits on it. `SimulatedClock` makes a simulated robot's run mean the same thing on any machine:
time advances only from tick to tick, an inference takes no simulated time (it runs to completion when it is
asked for), and its chunk becomes available `delay` after the observation it was computed from. With it, a
run at 50 Hz with 60 ms of delay is the same experiment on a laptop and on a GPU box, and is reproducible.

`InferenceDelay` is what either clock adds to each inference: a fixed part plus an optional exponential tail
(mean `jitter_ms`), drawn from a seeded generator: a latency floor with the occasional slow reply, as
networks and shared GPUs give.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np


class InferenceDelay:
    def __init__(self, delay_ms: float = 0.0, jitter_ms: float = 0.0, seed: int = 0):
        if delay_ms < 0 or jitter_ms < 0:
            raise ValueError(f"delay_ms and delay_jitter_ms must be >= 0, got {delay_ms} and {jitter_ms}")
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms
        self._rng = np.random.default_rng(seed)

    def sample_s(self) -> float:
        extra = self._rng.exponential(self.jitter_ms) if self.jitter_ms > 0 else 0.0
        return (self.delay_ms + extra) / 1000.0


class RealClock:
    simulated = False

    def __init__(self):
        self._pool: ThreadPoolExecutor | None = None

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, t: float) -> None:
        delay = t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    def submit(self, fn: Callable, delay_s: float = 0.0) -> Future:
        """fn runs in the inference thread; its result is ready delay_s after it returns."""
        def delayed():
            result = fn()
            time.sleep(delay_s)
            return result
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="inference")
        return self._pool.submit(delayed)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class SimulatedResult:
    """A result computed already, that counts as done once simulated time reaches `ready_at`."""

    def __init__(self, clock: SimulatedClock, fn: Callable, ready_at: float):
        self._clock, self.ready_at = clock, ready_at
        self._value = self._error = None
        try:
            self._value = fn()
        except Exception as e:  # delivered when the result is read, as a Future would
            self._error = e

    def done(self) -> bool:
        return self._clock.now() >= self.ready_at - 1e-9

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value


class SimulatedClock:
    simulated = True

    def __init__(self, start: float = 0.0):
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)

    def submit(self, fn: Callable, delay_s: float = 0.0) -> SimulatedResult:
        return SimulatedResult(self, fn, self.t + delay_s)

    def close(self) -> None:
        pass

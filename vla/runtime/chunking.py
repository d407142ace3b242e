"""How the controller turns asynchronous action chunks into one action per tick.

A chunk is computed from the observation of tick `start` and arrives some ticks later (`late`); its action
for tick t is `chunk[t - start]`. With H actions per chunk, s = `n_action_steps` (how many the policy
executes per chunk in lockstep) and d the expected latency in ticks:

- `naive`: the plan is the newest chunk; a new one replaces it the tick it arrives (its first `late`
  actions are past). The switch can jump: the new chunk was not planned to continue the old one.
- `prefix` (real-time chunking): the same, but each request carries the d actions of the current plan that
  will run before the new chunk can arrive, and the policy predicts the rest of the chunk to follow them
  (`Policy.accepts_prefix`). The switch lands where the old plan would have been.
- `ensemble` (ACT's temporal ensembling): the action for tick t is the average of every live chunk's
  prediction for t, weighted exp(-coeff * i) with i = 0 for the oldest (ACT's and LeRobot's convention;
  coeff 0.01 is nearly uniform). ACT queries every tick, at H / s times the compute; here chunks come on
  the same schedule as for the other two, so all three spend the same inference.

The next chunk is requested when `refill_at(d)` actions of the newest chunk are left, so that a chunk is
planned every max(s, d) ticks and arrives before the plan runs out: lockstep's schedule when d = 0. When
d > H / 2 no schedule with one request in flight can keep the plan from running out; then the guard holds
between chunks.
"""

from __future__ import annotations

import numpy as np

from vla.schema import TASK_KEY

METHODS = ("naive", "prefix", "ensemble")
LOCKSTEP_METHODS = ("naive", "ensemble")  # with no latency, a prefix has nothing to condition on: it is naive


class ChunkPlan:
    def __init__(self, method: str, chunk_size: int, n_action_steps: int, ensemble_coeff: float = 0.01,
                 refill_at: int | None = None):
        if method not in METHODS:
            raise ValueError(f"chunking must be one of {METHODS}, got {method!r}")
        self.method, self.chunk_size, self.n_action_steps = method, chunk_size, n_action_steps
        self.ensemble_coeff, self.fixed_refill_at = ensemble_coeff, refill_at
        self.chunks: list[tuple[int, np.ndarray]] = []  # (start tick, (H, D) actions), oldest first

    def refill_at(self, delay_ticks: int) -> int:
        """How many planned actions may be left when the next chunk is asked for (a fixed `refill_at` wins)."""
        if self.fixed_refill_at is not None:
            return self.fixed_refill_at
        h, s, d = self.chunk_size, self.n_action_steps, delay_ticks
        return min(h - 1, max(d, h - max(s, d), 1 if h > 1 else 0))

    def remaining(self, tick: int) -> int:
        """Actions of the newest chunk for this tick and after."""
        if not self.chunks:
            return 0
        start, chunk = self.chunks[-1]
        return max(0, start + len(chunk) - tick)

    def wants_chunk(self, tick: int, delay_ticks: int) -> bool:
        return self.remaining(tick) <= self.refill_at(delay_ticks)

    def prefix(self, tick: int, delay_ticks: int) -> np.ndarray | None:
        """The plan's actions for the next `delay_ticks` ticks, this one included: what will run while the
        chunk being requested is computed (None: nothing planned, or no delay)."""
        k = min(delay_ticks, self.remaining(tick), self.chunk_size - 1)
        if self.method != "prefix" or k <= 0:
            return None
        start, chunk = self.chunks[-1]
        return chunk[tick - start : tick - start + k]

    def add(self, chunk: np.ndarray, start: int, tick: int) -> float | None:
        """Takes a chunk computed at tick `start`, at tick `tick`. Returns the size of the switch (L2 distance
        between the new and the old plan's action for this tick) when both have one."""
        before = self.action(tick)
        if self.method == "ensemble":
            self.chunks = [(s, c) for s, c in self.chunks if s + len(c) > tick]
            self.chunks.append((start, chunk))
        else:
            self.chunks = [(start, chunk)]
        after = self.action(tick)
        if before is None or after is None or self.method == "ensemble" or not np.all(np.isfinite(after - before)):
            return None
        return float(np.linalg.norm(after - before))

    def action(self, tick: int) -> np.ndarray | None:
        live = [(c[tick - s]) for s, c in self.chunks if s <= tick < s + len(c)]
        if not live:
            return None
        if len(live) == 1:
            return live[0]
        weights = np.exp(-self.ensemble_coeff * np.arange(len(live)))
        return np.average(np.stack(live), axis=0, weights=weights)

    def reset(self) -> None:
        self.chunks = []


class LockstepPlans:
    """A batched policy acting through one ChunkPlan per env with no latency (d = 0), as evaluation runs it:
    a chunk for the whole batch every `n_action_steps` ticks, each env's action for the tick from its own plan.
    With `naive` this is the policy's own `select_action`; with `ensemble` every live chunk's prediction for the
    tick is averaged (ACT's temporal ensembling), H / s chunks deep, at the cost of decoding whole chunks."""

    def __init__(self, policy, method: str, ensemble_coeff: float = 0.01):
        check_lockstep_method(method)
        self.policy, self.method, self.ensemble_coeff = policy, method, ensemble_coeff
        self.plans: list[ChunkPlan] = []
        self.tick = 0

    def __getattr__(self, name: str):  # schema, meta, chunk_size, n_action_steps, predict_chunk: the policy's
        return getattr(self.policy, name)

    def reset(self) -> None:
        self.policy.reset()
        self.plans, self.tick = [], 0

    def select_action(self, obs: dict) -> np.ndarray:
        if not self.plans:
            self.plans = [ChunkPlan(self.method, self.policy.chunk_size, self.policy.n_action_steps,
                                    self.ensemble_coeff) for _ in range(len(obs[TASK_KEY]))]
        if self.plans[0].wants_chunk(self.tick, 0):  # every env's plan is on the same schedule
            for plan, chunk in zip(self.plans, self.policy.predict_chunk(obs), strict=True):
                plan.add(chunk, self.tick, self.tick)
        actions = np.stack([plan.action(self.tick) for plan in self.plans])
        self.tick += 1
        return actions


def check_lockstep_method(method: str) -> None:
    if method not in LOCKSTEP_METHODS:
        raise ValueError(f"chunking must be one of {LOCKSTEP_METHODS}, got {method!r}")


def lockstep(policy, method: str, ensemble_coeff: float = 0.01):
    """The policy as lockstep evaluation runs it with `method`: itself where that is naive (its own replanning
    decodes only the actions it runs), else through LockstepPlans."""
    return policy if method == "naive" else LockstepPlans(policy, method, ensemble_coeff)

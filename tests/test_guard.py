"""The safety guard: exact behaviour on faults, and properties over arbitrary action sequences."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vla.runtime.guard import Limits, SafetyGuard

LOW, HIGH = np.array([-1.0, -1.0, 0.0]), np.array([1.0, 1.0, 2.0])


def make_guard(**kw) -> SafetyGuard:
    limits = Limits(LOW, HIGH, max_delta=np.array([0.2, 0.2, 0.5]), max_velocity=kw.pop("max_velocity", None),
                    max_acceleration=kw.pop("max_acceleration", None), hold=[False, False, True],
                    rest=[0.0, 0.0, 1.0])
    return SafetyGuard(limits, control_hz=50, **kw)


def test_nan_is_never_clamped_the_guard_holds_and_faults():
    guard = make_guard()
    for t in range(5):
        guard.step(np.array([0.5, -0.5, 1.5]), t * 0.02)
    before = guard.last.copy()
    command = guard.step(np.array([np.nan, 0.3, 1.0]), 0.1)
    # hold: velocity-like dims move towards rest (0) within the rate limit, the held dim stays
    np.testing.assert_allclose(command, [max(before[0] - 0.2, 0), min(before[1] + 0.2, 0), before[2]], atol=1e-6)
    assert guard.counts["non_finite"] == 1 and "non-finite" in guard.faults[0]
    guard.step(np.array([np.inf, 0, 0]), 0.12)
    assert guard.counts["non_finite"] == 2 and not guard.stopped


def test_huge_actions_are_clamped_and_rate_limited():
    guard = make_guard()
    commands = [guard.step(np.array([1e9, -1e9, 1e9]), t * 0.02) for t in range(20)]
    np.testing.assert_allclose(commands[0], [0.2, -0.2, 1.5])  # one max_delta from rest (0, 0, 1)
    np.testing.assert_allclose(commands[-1], HIGH * [1, -1, 1])
    assert guard.counts["clamp"] == 20 and guard.counts["rate_limit"] >= 4


def test_watchdog_holds_then_stops():
    guard = make_guard(hold_after_s=0.1, stop_after_s=0.3)
    guard.step(np.array([0.6, 0.6, 1.5]), 0.0)
    guard.step(None, 0.05)
    assert guard.counts["hold"] == 0  # within the hold deadline: no intervention counted yet
    guard.step(None, 0.15)
    assert guard.counts["hold"] == 1 and not guard.stopped
    guard.step(None, 0.31)
    assert guard.stopped and guard.counts["stop"] == 1 and "controlled stop" in guard.faults[-1]
    # stopped: later actions are ignored and the commands settle at the hold target
    for t in range(10):
        command = guard.step(np.array([1.0, 1.0, 2.0]), 0.4 + t * 0.02)
    np.testing.assert_allclose(command, [0.0, 0.0, 1.5], atol=1e-6)  # xyz at rest, the held dim where it was


def test_acceleration_limit_ramps_the_change():
    guard = make_guard(max_acceleration=np.array([100.0, 100.0, 100.0]))  # 0.04 per tick^2 at 50 Hz
    changes = []
    for t in range(6):
        before = guard.last.copy()
        changes.append((guard.step(np.array([1.0, 0.0, 1.0]), t * 0.02) - before)[0])
    np.testing.assert_allclose(changes[:5], [0.04, 0.08, 0.12, 0.16, 0.2], atol=1e-6)


actions = st.one_of(
    st.none(),
    st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-3, 3)), min_size=3, max_size=3)
    .map(np.array),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(actions, min_size=1, max_size=60), st.floats(0, 0.05), st.booleans())
def test_every_command_is_finite_inside_limits_and_rate_limited(sequence, tick_jitter, accel):
    guard = make_guard(max_velocity=np.array([8.0, 8.0, 8.0]),
                       max_acceleration=np.array([200.0, 200.0, 200.0]) if accel else None)
    previous, t = guard.last.copy(), 0.0
    for action in sequence:
        t += 0.02 + tick_jitter
        command = guard.step(action, t)
        assert command.dtype == np.float32 and np.all(np.isfinite(command))
        assert np.all(command >= LOW - 1e-6) and np.all(command <= HIGH + 1e-6)
        bound = np.minimum([0.2, 0.2, 0.5], 8.0 / 50)
        assert np.all(np.abs(command - previous) <= bound + 1e-5), (command, previous)
        previous = command.astype(np.float64)

"""Real-time chunking: given actions in decoding, the chunk schedule and stitching, simulated time, and the
guard's properties with stitched chunks."""

import math

import numpy as np
import pytest
import torch
from conftest import TINY_IMAGE, TINY_INSTRUCTIONS, fake_stats, tiny_model_config
from hypothesis import given, settings
from hypothesis import strategies as st

from vla.envs.metaworld import metaworld_schema
from vla.policies.protocol import batch_observation
from vla.policies.vla_policy import VLAPolicy
from vla.runtime.chunking import ChunkPlan, LockstepPlans
from vla.runtime.clock import InferenceDelay, SimulatedClock
from vla.runtime.controller import Controller, LocalPolicy
from vla.runtime.guard import Limits, SafetyGuard
from vla.runtime.robots import MockRobot

SCHEMA = metaworld_schema(TINY_IMAGE, "corner2")
LIMITS = Limits(-np.ones(4), np.ones(4), max_delta=0.25, hold=[False, False, False, True], rest=np.zeros(4))


def make_policy(**cfg):
    torch.manual_seed(0)
    return VLAPolicy.create(tiny_model_config(**cfg), SCHEMA, fake_stats(), TINY_INSTRUCTIONS)


@pytest.mark.parametrize("decoding", ["parallel", "autoregressive"])
def test_a_prefix_is_the_chunks_start_and_conditions_the_rest(decoding):
    policy = make_policy(decoding=decoding)
    obs = batch_observation(SCHEMA.fake_observation(task="close it"))
    free = policy.predict_chunk(obs)
    prefix = np.array([[[0.9, -0.9, 0.5, -0.5], [0.8, -0.8, 0.4, -0.4]]], np.float32)
    chunk = policy.predict_chunk(obs, prefix=prefix)
    assert chunk.shape == (1, 4, 4) and np.all(np.isfinite(chunk))
    np.testing.assert_array_equal(chunk[:, :2], prefix)  # exactly as given, not their bins
    assert not np.allclose(chunk[:, 2:], free[:, 2:])  # what follows was predicted from them
    with pytest.raises(ValueError, match=r"prefix must be \(batch 1, k < 4, 4\).*\(1, 4, 4\)"):
        policy.predict_chunk(obs, prefix=np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        policy.predict_chunk(obs, prefix=np.full((1, 1, 4), np.nan))


def test_prefix_training_masks_everything_after_a_real_prefix():
    for step_tokens, per_step in ((False, 4), (True, 1)):  # tokens per timestep
        model = make_policy(prefix_prob=1.0, step_tokens=step_tokens).model
        drop = model.masked_inputs(64, torch.Generator().manual_seed(0))
        for row in drop.tolist():
            k = row.index(True)
            assert k % per_step == 0 and 1 <= k // per_step <= 3 and all(row[k:])  # whole timesteps, 1..H-1, then all MASK
    mixed = make_policy(token_dropout=0.5).model.masked_inputs(64, torch.Generator().manual_seed(0))
    assert 0.3 < mixed.float().mean() < 0.7
    with pytest.raises(ValueError, match="prefix_prob must be in"):
        tiny_model_config(prefix_prob=1.5)
    with pytest.raises(ValueError, match="input_noise must be >= 0"):
        tiny_model_config(input_noise=-0.1)


def test_schedule_plans_a_chunk_every_max_s_d_ticks():
    plan = ChunkPlan("naive", chunk_size=8, n_action_steps=4)
    assert [plan.refill_at(d) for d in (0, 1, 3, 4, 5, 10)] == [4, 4, 4, 4, 5, 7]
    assert ChunkPlan("naive", 8, 4, refill_at=2).refill_at(5) == 2


def test_stitching():
    chunk_a, chunk_b = np.zeros((8, 2)), np.ones((8, 2))
    naive = ChunkPlan("naive", 8, 4)
    naive.add(chunk_a, 0, 0)
    assert naive.prefix(4, 3) is None and naive.remaining(4) == 4
    assert naive.add(chunk_b, 4, 6) == pytest.approx(math.sqrt(2))  # a jump at the switch
    np.testing.assert_array_equal(naive.action(6), [1, 1])
    prefix = ChunkPlan("prefix", 8, 4)
    prefix.add(np.arange(16.0).reshape(8, 2), 0, 0)
    np.testing.assert_array_equal(prefix.prefix(4, 3), [[8, 9], [10, 11], [12, 13]])
    ensemble = ChunkPlan("ensemble", 8, 4, ensemble_coeff=1.0)
    ensemble.add(chunk_a, 0, 0)
    ensemble.add(chunk_b, 4, 4)
    w = np.exp(-np.arange(2.0))
    np.testing.assert_allclose(ensemble.action(5), [w[1] / w.sum()] * 2)  # the oldest weighs most
    np.testing.assert_array_equal(ensemble.action(9), [1, 1])  # only the newer chunk reaches tick 9


class BatchTickPolicy:
    """Chunk k of a batch of 2: env i's actions are all k + 10 i."""

    chunk_size, n_action_steps = 8, 4

    def __init__(self):
        self.calls = 0

    def reset(self):
        self.calls = 0

    def predict_chunk(self, obs):
        self.calls += 1
        return np.stack([np.full((8, 4), self.calls + 10.0 * i, np.float32) for i in range(len(obs["task"]))])


def test_lockstep_ensembling_averages_each_envs_live_chunks():
    obs = {"task": ["a", "b"]}
    plans = LockstepPlans(BatchTickPolicy(), "ensemble", ensemble_coeff=0.0)  # equal weights
    actions = [plans.select_action(obs) for _ in range(9)]
    assert plans.policy.calls == 3  # a chunk every n_action_steps ticks
    np.testing.assert_array_equal(actions[0][:, 0], [1, 11])  # only the first chunk is live
    np.testing.assert_array_equal(actions[4][:, 0], [1.5, 11.5])  # chunks 1 and 2 overlap at ticks 4..7
    np.testing.assert_array_equal(actions[8][:, 0], [2.5, 12.5])  # chunks 2 and 3 at ticks 8..11
    plans.reset()
    np.testing.assert_array_equal(plans.select_action(obs)[:, 0], [1, 11])  # a new episode starts afresh
    with pytest.raises(ValueError, match=r"one of \('naive', 'ensemble'\), got 'prefix'"):
        LockstepPlans(BatchTickPolicy(), "prefix")


def test_lockstep_naive_chunking_is_the_policys_own_replanning():
    obs = batch_observation(SCHEMA.fake_observation(task="close it"))
    own, planned = make_policy(decoding="parallel"), LockstepPlans(make_policy(decoding="parallel"), "naive")
    for _ in range(6):
        np.testing.assert_allclose(planned.select_action(obs), own.select_action(obs), atol=1e-6)


class TickPolicy:
    """Chunk k's actions are all k / 10; records what it was given."""

    schema, chunk_size, n_action_steps, accepts_prefix, meta = SCHEMA, 8, 4, True, {}

    def __init__(self):
        self.prefixes, self.calls = [], 0

    def reset(self):
        pass

    def predict_chunk(self, obs, prefix=None):
        self.calls += 1
        self.prefixes.append(None if prefix is None else prefix[0])
        chunk = np.full((1, 8, 4), self.calls / 10, np.float32)
        if prefix is not None:
            chunk[:, : prefix.shape[1]] = prefix
        return chunk


@pytest.mark.parametrize(("hz", "delay_ms", "ticks"), [(50, 0, 0), (50, 60, 3), (100, 30, 3), (20, 30, 1)])
def test_simulated_time_delivers_each_chunk_its_delay_later(hz, delay_ms, ticks):
    policy, robot = TickPolicy(), MockRobot(SCHEMA, LIMITS)
    controller = Controller(robot, LocalPolicy(policy), hz, SafetyGuard(LIMITS, hz), chunking="prefix",
                            clock=SimulatedClock(), delay=InferenceDelay(delay_ms), max_ticks=60)
    report = controller.run()
    assert report.ticks == 60 and set(report.late_ticks) == {ticks}
    assert report.inference_ms == [delay_ms] * len(report.inference_ms)
    # one chunk every max(s, d) ticks; after the first, each request carries the d planned actions
    assert policy.calls == pytest.approx(60 / max(4, ticks), abs=1.5)
    if ticks:  # the planned actions of the chunk before, for the ticks until the new one arrives
        for i, prefix in enumerate(policy.prefixes[1:], start=1):
            np.testing.assert_allclose(prefix, np.full((ticks, 4), i / 10), rtol=1e-6)
    else:
        assert all(p is None for p in policy.prefixes)


def test_prefix_needs_a_policy_that_accepts_one():
    policy = TickPolicy()
    policy.accepts_prefix = False
    with pytest.raises(ValueError, match="accepts_prefix"):
        Controller(MockRobot(SCHEMA, LIMITS), LocalPolicy(policy), 50, chunking="prefix")


class ScriptedPolicy:
    """Returns the chunks it is given, in turn (NaN and huge values included)."""

    schema, chunk_size, n_action_steps, accepts_prefix, meta = SCHEMA, 4, 2, True, {}

    def __init__(self, chunks):
        self.chunks, self.i = chunks, 0

    def reset(self):
        pass

    def predict_chunk(self, obs, prefix=None):
        chunk = self.chunks[self.i % len(self.chunks)]
        self.i += 1
        return chunk[None]


values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-3, 3), st.floats(-3, 3))
chunks = st.lists(st.lists(st.lists(values, min_size=4, max_size=4), min_size=4, max_size=4)
                  .map(np.array), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(chunks, st.sampled_from(["naive", "prefix", "ensemble"]), st.sampled_from([0, 20, 60, 150]),
       st.sampled_from([20, 50, 100]))
def test_stitched_chunks_still_give_finite_limited_rate_limited_commands(chunk_list, method, delay_ms, hz):
    robot = MockRobot(SCHEMA, LIMITS)
    guard = SafetyGuard(LIMITS, hz, hold_after_s=0.05, stop_after_s=10.0)
    controller = Controller(robot, LocalPolicy(ScriptedPolicy(chunk_list)), hz, guard, chunking=method,
                            clock=SimulatedClock(), delay=InferenceDelay(delay_ms, jitter_ms=10, seed=1), max_ticks=40)
    controller.run()
    commands = np.stack(robot.commands)
    assert np.all(np.isfinite(commands)) and np.all(np.abs(commands) <= 1 + 1e-6)
    steps = np.abs(np.diff(np.vstack([np.zeros(4), commands]), axis=0))
    assert np.all(steps <= 0.25 + 1e-6)

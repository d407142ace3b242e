import numpy as np
import pytest

from vla.envs import list_tasks, make_env
from vla.envs.metaworld import MetaWorldEnv, MetaWorldExpert
from vla.schema import IMAGE_PREFIX, STATE_KEY, TASK_KEY

ALL_TASKS = list_tasks("metaworld")  # the tabletop suite has its own tests (test_tabletop.py)


def test_registry_has_every_metaworld_v3_task():
    assert len(ALL_TASKS) == 50
    assert all(t.endswith("-v3") for t in ALL_TASKS)
    with pytest.raises(KeyError, match="no registered suite has task 'nope-v3'"):
        make_env("nope-v3")


@pytest.mark.parametrize("task", ALL_TASKS)
def test_every_task_resets_and_steps_with_valid_observations(task):
    env = make_env(task, image_size=32, max_episode_steps=5)
    try:
        obs, info = env.reset(seed=1)
        env.schema.validate_observation(obs)  # shapes, dtypes, no NaN
        assert isinstance(obs[TASK_KEY], str) and obs[TASK_KEY]
        rng = np.random.default_rng(0)
        for _ in range(5):
            obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
            env.schema.validate_observation(obs)
            assert np.isfinite(reward) and "is_success" in info
        assert truncated, "max_episode_steps must truncate"
    finally:
        env.close()


def test_policy_inputs_are_images_state_and_instruction_only():
    env = make_env("push-v3", image_size=32)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {IMAGE_PREFIX + "corner2", STATE_KEY, TASK_KEY}
    # state is proprioception only: end-effector xyz and gripper, not the puck or goal
    assert obs[STATE_KEY].shape == (4,)
    np.testing.assert_allclose(obs[STATE_KEY], env.privileged_observation()[:4].astype(np.float32))
    env.close()


def test_seed_decides_the_variation_and_renders_identically():
    env = make_env("drawer-close-v3", image_size=32)
    expert = MetaWorldExpert(env)
    key = IMAGE_PREFIX + "corner2"
    a, _ = env.reset(seed=5)
    pa = env.privileged_observation().copy()
    for _ in range(20):  # move the arm, so a stale scene would show
        env.step(expert.select_action(a)[0])
    b, _ = env.reset(seed=5)
    np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(pa, env.privileged_observation())
    env.reset(seed=6)
    assert not np.array_equal(pa, env.privileged_observation())
    env.close()


def test_expert_solves_a_task_and_step_rejects_bad_actions():
    env = MetaWorldEnv("button-press-topdown-v3", image_size=32, max_episode_steps=200)
    expert = MetaWorldExpert(env)
    obs, _ = env.reset(seed=0)
    for _ in range(200):
        obs, _, terminated, truncated, info = env.step(expert.select_action(obs)[0])
        if terminated or truncated:
            break
    assert info["is_success"]
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0, 0, 0], np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(4,\)"):
        env.step(np.zeros(3, np.float32))
    env.close()


def test_object_to_goal_is_the_distance_success_is_judged_by():
    env = MetaWorldEnv("pick-place-v3", image_size=32, max_episode_steps=200)
    expert = MetaWorldExpert(env)
    obs, _ = env.reset(seed=0)
    with pytest.raises(AssertionError, match="step"):
        env.object_to_goal()  # Meta-World computes it in step()
    for _ in range(200):
        obs, _, terminated, truncated, info = env.step(expert.select_action(obs)[0])
        state = env.privileged_observation()
        assert env.object_to_goal() == pytest.approx(np.linalg.norm(state[4:7] - state[-3:]))
        assert info["is_success"] == (env.object_to_goal() <= 0.07)  # pick-place's success distance
        if terminated or truncated:
            break
    assert info["is_success"]
    env.close()

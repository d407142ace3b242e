import subprocess
import sys

import numpy as np
import pytest

from vla.envs import get_suite, make_env, resolve_tasks
from vla.schema import IMAGE_PREFIX, Feature, Schema


def test_suite_names_resolve_to_the_published_task_lists():
    suite = get_suite("metaworld")
    mt10 = resolve_tasks(["mt10"])
    assert mt10 == ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
                    "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3"]
    groups = {g: resolve_tasks([g]) for g in suite.difficulty_groups}
    assert {g: len(t) for g, t in groups.items()} == {"easy": 28, "medium": 11, "hard": 6, "very_hard": 5}
    everything = [t for tasks in groups.values() for t in tasks]
    assert len(set(everything)) == 50 and set(everything) == set(resolve_tasks(["mt50"]))
    assert set(resolve_tasks(["metaworld"])) == set(everything)
    assert all(suite.group_of(t) == g for g, tasks in groups.items() for t in tasks)


def test_names_mix_and_repeat_without_duplicates_and_unknown_names_are_named():
    assert resolve_tasks(["reach-v3", "mt10", "reach-v3"]) == resolve_tasks(["mt10"])
    assert resolve_tasks(["very_hard", "easy"])[:5] == resolve_tasks(["very_hard"])
    with pytest.raises(KeyError, match="unknown task or task group 'mt11'.*groups: .*'mt10'"):
        resolve_tasks(["mt11"])


def test_env_builds_from_a_policy_schema_and_refuses_one_it_cannot_produce():
    suite = get_suite("metaworld")
    schema = suite.default_schema(32)
    env = make_env("reach-v3", schema, max_episode_steps=3)
    obs, _ = env.reset(seed=0)
    schema.validate_observation(obs)
    assert env.max_episode_steps == 3
    limits = suite.limits(env)
    assert limits.hold.tolist() == [False, False, False, True] and np.all(limits.low < limits.high)
    env.close()
    unknown_camera = Schema(observation={**schema.observation, IMAGE_PREFIX + "wrist": Feature(
        IMAGE_PREFIX + "wrist", (32, 32, 3), "uint8")}, action=schema.action, fps=schema.fps)
    with pytest.raises(ValueError, match=r"Meta-World env renders cameras \['corner2', .*asks for \['corner2', 'wrist'\]"):
        make_env("reach-v3", unknown_camera)
    assert make_env("reach-v3", image_size=32).max_episode_steps == suite.max_episode_steps == 500


def test_metaworld_renders_a_wrist_camera_beside_corner2_and_records_both(tmp_path):
    from vla.datasets.episode_store import EpisodeStore
    from vla.record import RecordConfig, record

    suite = get_suite("metaworld")
    schema = suite.default_schema(32, ("corner2", "gripperPOV"))
    env = make_env("reach-v3", schema, max_episode_steps=3)
    obs, _ = env.reset(seed=0)
    schema.validate_observation(obs)
    wrist, corner = obs[IMAGE_PREFIX + "gripperPOV"], obs[IMAGE_PREFIX + "corner2"]
    assert wrist.std() > 0 and not np.array_equal(wrist, corner)  # a real, different view
    env.close()
    with pytest.raises(ValueError, match="metaworld renders cameras .* asked for \\['scene'\\]"):
        suite.default_schema(32, ("scene",))
    record(RecordConfig(tasks=["reach-v3"], episodes=1, out=str(tmp_path / "d.zarr"), image_size=32,
                        cameras=["corner2", "gripperPOV"]))
    assert EpisodeStore.open(tmp_path / "d.zarr").schema.image_keys == [IMAGE_PREFIX + "corner2",
                                                                         IMAGE_PREFIX + "gripperPOV"]


def test_recording_in_worker_processes_stores_the_same_episodes_as_in_one(tmp_path):
    from vla.datasets.episode_store import EpisodeStore
    from vla.record import RecordConfig, record

    stores = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.zarr"
        report = record(RecordConfig(tasks=["reach-v3", "drawer-close-v3"], episodes=2, out=str(out), image_size=32,
                                     max_episode_steps=120, workers=workers))
        assert list(report["tasks"]) == ["reach-v3", "drawer-close-v3"] and report["episodes"] == 4
        store = EpisodeStore.open(out)
        stores[workers] = {(task, seed): store.episode(i) for i, (task, seed) in enumerate(
            zip(store.episode_env_tasks(), store.episode_meta("episode_seed").tolist(), strict=True))}
    assert stores[1].keys() == stores[2].keys()
    for key, episode in stores[1].items():
        for name, value in episode.items():
            assert np.array_equal(value, stores[2][key][name]), (key, name)


def test_recording_reports_each_experts_success_and_every_shortfall(tmp_path):
    from vla.record import RecordConfig, record

    # 5 steps are too few for the expert: every attempt fails, the cap ends the task, the report says so
    report = record(RecordConfig(tasks=["reach-v3"], episodes=2, max_attempts=3, out=str(tmp_path / "d.zarr"),
                                 image_size=32, max_episode_steps=5))
    assert report["tasks"]["reach-v3"] == {"kept": 0, "attempts": 3, "expert_success": 0.0, "short": 2}


def test_a_resumed_recording_refuses_another_noise_level_and_keeps_the_store(tmp_path):
    from vla.datasets.episode_store import EpisodeStore
    from vla.record import RecordConfig, record

    out = str(tmp_path / "d.zarr")
    record(RecordConfig(tasks=["reach-v3"], episodes=1, out=out, image_size=32))
    with pytest.raises(ValueError, match="reach-v3's stored episodes were recorded as \\['sim:metaworld "
                       "expert=fingers'\\], this run records 'sim:metaworld dart=0.3 expert=fingers'"):
        record(RecordConfig(tasks=["reach-v3"], episodes=2, out=out, image_size=32, action_noise=0.3))
    cli = subprocess.run([sys.executable, "-m", "vla.cli.record", "tasks=[reach-v3]", "episodes=2", f"out={out}",
                          "image_size=32", "action_noise=0.3"], capture_output=True, text=True, timeout=120, check=False)
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert "reach-v3's stored episodes were recorded as ['sim:metaworld expert=fingers']" in cli.stderr
    store = EpisodeStore.open(out)
    assert store.num_episodes == 1 and store.sources == ["sim:metaworld expert=fingers"]


def test_a_store_of_reachs_hand_aimed_expert_is_not_resumed_with_the_fingers_aimed_one(tmp_path, monkeypatch):
    from vla.envs.metaworld import MetaWorldSuite
    from vla.record import RecordConfig, record

    out = str(tmp_path / "d.zarr")
    with monkeypatch.context() as before:  # the tag the stores recorded before the fingers-aimed expert have
        before.setattr(MetaWorldSuite, "expert_tag", lambda self, task: "")
        record(RecordConfig(tasks=["reach-v3", "drawer-close-v3"], episodes=1, out=out, image_size=32))
    with pytest.raises(ValueError, match="reach-v3's stored episodes were recorded as \\['sim:metaworld'\\], "
                                         "this run records 'sim:metaworld expert=fingers'"):
        record(RecordConfig(tasks=["reach-v3"], episodes=2, out=out, image_size=32))
    assert record(RecordConfig(tasks=["drawer-close-v3"], episodes=2, out=out, image_size=32))["tasks"][
        "drawer-close-v3"]["kept"] == 2  # its expert is the same: resumed


def test_start_noise_moves_metaworlds_hand_start_per_seed_and_a_plain_reset_restores_it():
    suite = get_suite("metaworld")
    env = suite.make_env("reach-v3", suite.default_schema(32), 3)
    home = env.reset(seed=3)[0]["observation.state"][:3]
    moved = [env.reset(seed=s, options={"start_noise": 0.1})[0]["observation.state"][:3] for s in (3, 3, 4)]
    np.testing.assert_array_equal(moved[0], moved[1])  # the seed decides the start
    assert not np.allclose(moved[0], moved[2]) and not np.allclose(moved[0], home, atol=0.01)
    assert np.all(np.abs(np.stack(moved) - home) < 0.1 + 0.01)  # within the noise (the mocap settles ~mm off)
    np.testing.assert_allclose(env.reset(seed=3)[0]["observation.state"][:3], home)  # evaluation's start again
    with pytest.raises(ValueError, match="start_noise.*must be >= 0"):
        env.reset(seed=3, options={"start_noise": -0.1})
    env.close()


def test_start_noise_is_tagged_in_the_store_and_refused_for_a_suite_that_draws_its_own_start(tmp_path):
    from vla.datasets.episode_store import EpisodeStore
    from vla.record import RecordConfig, record

    out = str(tmp_path / "d.zarr")
    report = record(RecordConfig(tasks=["reach-v3"], episodes=1, out=out, image_size=32, start_noise=0.1))
    assert report["tasks"]["reach-v3"]["kept"] == 1
    assert EpisodeStore.open(out).sources == ["sim:metaworld start=0.1 expert=fingers"]
    # resuming without it is refused
    with pytest.raises(ValueError, match="this run records 'sim:metaworld expert=fingers'"):
        record(RecordConfig(tasks=["reach-v3"], episodes=2, out=out, image_size=32))
    cli = subprocess.run([sys.executable, "-m", "vla.cli.record", "tasks=[tabletop-touch]", "episodes=1",
                          f"out={tmp_path / 't.zarr'}", "start_noise=0.1"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert "tabletop-touch's suite (tabletop) draws the hand's start per episode itself" in cli.stderr
    assert not (tmp_path / "t.zarr").exists()


def test_after_success_records_the_expert_past_the_first_success_and_tags_the_store(tmp_path):
    from vla.datasets.episode_store import EpisodeStore
    from vla.record import RecordConfig, record, run_episode

    suite = get_suite("metaworld")
    env = suite.make_env("reach-v3", suite.default_schema(32), 120)
    expert = suite.make_expert(env)
    plain, success, _ = run_episode(env, expert, seed=3)
    longer, still, _ = run_episode(env, expert, seed=3, after_success=7)
    capped, _, _ = run_episode(env, expert, seed=3, after_success=1000)  # the episode limit still ends it
    # reach's expert brings the fingers' center, where Meta-World measures success, to the goal, not the hand
    goal, hand = env.unwrapped.privileged_observation()[-3:], capped["observation.state"][-1, :3]
    assert np.linalg.norm(env.unwrapped.fingers_center() - goal) < 0.025 < 0.04 < np.linalg.norm(hand - goal)
    env.close()
    assert success and still and len(plain["action"]) < 120
    assert len(longer["action"]) == len(plain["action"]) + 7 and len(capped["action"]) == 120
    np.testing.assert_array_equal(longer["action"][: len(plain["action"])], plain["action"])
    assert np.linalg.norm(np.diff(longer["observation.state"][-3:, :3], axis=0)) < np.linalg.norm(
        np.diff(plain["observation.state"][-3:, :3], axis=0))  # and slows as it arrives

    out = str(tmp_path / "d.zarr")
    record(RecordConfig(tasks=["reach-v3"], episodes=1, out=out, image_size=32, after_success=5))
    assert EpisodeStore.open(out).sources == ["sim:metaworld after_success=5 expert=fingers"]
    # resuming without it is refused
    with pytest.raises(ValueError, match="this run records 'sim:metaworld expert=fingers'"):
        record(RecordConfig(tasks=["reach-v3"], episodes=2, out=out, image_size=32))
    with pytest.raises(ValueError, match="after_success must be >= 0"):
        RecordConfig(after_success=-1)


def test_pick_places_expert_brings_the_object_to_the_goal_and_tags_the_store(tmp_path):
    from vla.datasets.episode_store import EpisodeStore
    from vla.record import RecordConfig, record, run_episode

    suite = get_suite("metaworld")
    env = suite.make_env("pick-place-v3", suite.default_schema(32), 200)
    _, success, _ = run_episode(env, suite.make_expert(env), seed=3, after_success=60)
    state = env.unwrapped.privileged_observation()
    # Meta-World's own expert holds the hand on the goal and leaves the object ~4 cm below it (its success is 7 cm)
    assert success and np.linalg.norm(state[4:7] - state[-3:]) < 0.015 < 0.03 < np.linalg.norm(state[:3] - state[-3:])
    env.close()
    out = str(tmp_path / "d.zarr")
    record(RecordConfig(tasks=["pick-place-v3"], episodes=1, out=out, image_size=32))
    assert EpisodeStore.open(out).sources == ["sim:metaworld expert=object"]


def test_dart_noise_perturbs_the_executed_action_and_keeps_the_experts_label():
    from vla.envs import get_suite
    from vla.record import run_episode

    suite = get_suite("metaworld")
    env = suite.make_env("drawer-close-v3", suite.default_schema(32), 20)
    executed = []
    step = env.step
    env.step = lambda action: (executed.append(np.array(action)), step(action))[1]
    expert = suite.make_expert(env)
    clean, _, _ = run_episode(env, expert, seed=3)
    executed_clean, executed[:] = list(executed), []
    noisy, _, _ = run_episode(env, expert, seed=3, action_noise=0.3)
    np.testing.assert_allclose(np.stack(executed_clean), clean["action"])  # no noise: executed as labelled
    gap = np.abs(np.stack(executed) - noisy["action"])
    assert gap.mean() > 0.1 and np.all(np.stack(executed) <= 1) and np.all(np.stack(executed) >= -1)
    again, _, _ = run_episode(env, expert, seed=3, action_noise=0.3)  # seeded: the same noise again
    env.close()
    np.testing.assert_array_equal(again["action"], noisy["action"])

"""The tabletop grounding suite: experts, scenes where only the instruction names the target, disjoint splits,
both cameras, and a tiny record -> train -> eval -> sim robot run on it."""

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from conftest import TINY_IMAGE

from vla.envs import get_suite, make_env, resolve_tasks
from vla.envs.tabletop.env import sample_episode, swapped_goal
from vla.envs.tabletop.language import (
    DIRECTION_WORDS,
    HELDOUT_PAIRS,
    HELDOUT_SKILL_PAIRS,
    SKILLS,
    seen_pairs,
    templates,
)
from vla.envs.tabletop.scene import COLORS, SHAPES
from vla.policies.protocol import batch_observation
from vla.schema import TASK_KEY

SUITE = get_suite("tabletop")


@pytest.mark.parametrize("task", ["tabletop-touch", "tabletop-push", "tabletop-lift", "tabletop-place",
                                  "tabletop-place-heldout-compositions", "tabletop-push-swapped",
                                  "tabletop-lift-by-shape", "tabletop-place-by-color"])
def test_expert_solves_every_skill(task):
    env = make_env(task, image_size=TINY_IMAGE)
    expert = SUITE.make_expert(env)
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        expert.reset()
        for _ in range(env.max_episode_steps):
            obs, _, terminated, truncated, info = env.step(expert.select_action(batch_observation(obs))[0])
            if terminated or truncated:
                break
        assert info["is_success"], f"{task} seed {seed}: {env.instruction!r} not done"
        assert info["outcome"] == "named object", (task, seed, info["outcome"])
    env.close()


def test_outcome_says_which_object_the_hand_went_to():
    """The seen expert's actions replayed in the swapped episode (same scene, another object named) reach the
    other object; standing still reaches none."""
    seen, swapped = make_env("tabletop-touch", image_size=TINY_IMAGE), make_env("tabletop-touch-swapped", image_size=TINY_IMAGE)
    expert = SUITE.make_expert(seen)
    obs, _ = seen.reset(seed=0)
    swapped.reset(seed=0)
    expert.reset()
    for _ in range(seen.max_episode_steps):
        action = expert.select_action(batch_observation(obs))[0]
        obs, _, done, _, _ = seen.step(action)
        _, _, _, _, info = swapped.step(action)
        if done:
            break
    assert info["outcome"] == "other object" and not info["is_success"]
    swapped.reset(seed=1)
    assert swapped.step(np.zeros(4, np.float32))[4]["outcome"] == "no object"


@pytest.mark.parametrize("split", ["seen", "heldout-compositions", "heldout-paraphrases", "heldout-words"])
def test_every_instruction_names_exactly_one_object_of_its_scene(split):
    for skill in SKILLS:
        for seed in range(150):
            scene, goal = sample_episode(skill, split, seed)
            for g in (goal, swapped_goal(scene, goal, seed)):
                names = [o.name for o in scene.objects]
                assert sum(name in g.instruction for name in names) == 1, (g.instruction, names)
                assert f"{g.color} {g.shape}" in names and f"{g.color} {g.shape}" in g.instruction
                if g.pad:
                    assert g.pad in [c for c, _ in scene.pads] and f"{g.pad} pad" in g.instruction
                if g.direction:
                    assert DIRECTION_WORDS[g.direction] in g.instruction
            # two colors x two shapes: each object shares its color with one other and its shape with one other,
            # so the scene alone does not single out the target
            assert sorted(Counter(o.color for o in scene.objects).values()) == [2, 2]
            assert sorted(Counter(o.shape for o in scene.objects).values()) == [2, 2]
            xy = np.array([o.xy for o in scene.objects] + [xy for _, xy in scene.pads])
            gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1)[np.triu_indices(len(xy), 1)]
            assert gaps.min() >= 0.11 - 1e-3  # nothing overlaps (positions are rounded to 0.1 mm)


@pytest.mark.parametrize("naming", ["shape", "color"])
def test_an_instruction_naming_one_attribute_picks_its_target_by_that_attribute_alone(naming):
    """by-shape: the target's shape is its own in the scene and its color another's, and the instruction says the
    shape but not the color (by-color: the other way round); targets and distractors stay within training's pairs."""
    said, unsaid = (1, 0) if naming == "shape" else (0, 1)  # index in (color, shape)
    for skill in SKILLS:
        for seed in range(100):
            scene, goal = sample_episode(skill, f"by-{naming}", seed)
            target = (goal.color, goal.shape)
            pairs = [(o.color, o.shape) for o in scene.objects]
            assert goal.naming == naming and target in seen_pairs(skill) and pairs.count(target) == 1
            assert [p[said] for p in pairs].count(target[said]) == 1, (pairs, target)
            assert [p[unsaid] for p in pairs].count(target[unsaid]) == 2, (pairs, target)
            assert not set(pairs) & HELDOUT_PAIRS
            words = goal.instruction.replace(f"{goal.pad} pad", "").split()
            assert target[said] in words and target[unsaid] not in words, goal.instruction
            assert goal.to_json()["naming"] == naming
    assert "naming" not in sample_episode("touch", "seen", 0)[1].to_json()  # goals stored before it still match


def test_splits_are_disjoint():
    for skill in SKILLS:
        heldout = HELDOUT_PAIRS | HELDOUT_SKILL_PAIRS[skill]
        assert not heldout & set(seen_pairs(skill))
        held = templates(skill, "heldout-paraphrases") + templates(skill, "heldout-words")
        assert len(set(held)) == 2 and not set(templates(skill, "seen")) & set(held)
        for seed in range(200):
            scene, goal = sample_episode(skill, "seen", seed)
            assert (goal.color, goal.shape) not in heldout
            # the pairs held out everywhere are in no training scene, not even as distractors
            assert not {(o.color, o.shape) for o in scene.objects} & HELDOUT_PAIRS
            goal = sample_episode(skill, "heldout-compositions", seed)[1]
            assert (goal.color, goal.shape) in heldout
    train = {i for t in resolve_tasks(["tabletop", "tabletop-by-shape", "tabletop-by-color"])
             for i in SUITE.instructions(t)}
    for group in ("tabletop-heldout-compositions", "tabletop-heldout-paraphrases", "tabletop-heldout-words"):
        held = {i for t in resolve_tasks([group]) for i in SUITE.instructions(t)}
        assert held and not held & train, group
    # only the combinations are held out: every color stays each skill's target on at least two shapes, and every
    # shape in at least four colors (place's split once kept green on cubes alone)
    for skill in SKILLS:
        shapes_of, colors_of = Counter(c for c, _ in seen_pairs(skill)), Counter(s for _, s in seen_pairs(skill))
        assert set(shapes_of) == set(COLORS) and min(shapes_of.values()) >= 2, (skill, shapes_of)
        assert set(colors_of) == set(SHAPES) and min(colors_of.values()) >= 4, (skill, colors_of)
    assert resolve_tasks(["tabletop"]) == [f"tabletop-{s}" for s in SKILLS]  # the suite's name: its training tasks


def test_renamings_name_only_objects_the_skill_trains_and_move_the_targets_with_them():
    train = {i for t in resolve_tasks(["tabletop"]) for i in SUITE.instructions(t)}
    for skill in SKILLS:
        for seed in range(50):
            scene, goal = sample_episode(skill, "seen", seed)
            renamings = SUITE.renamings(f"tabletop-{skill}", seed)
            xy = {f"{o.color} {o.shape}": np.array(o.xy) for o in scene.objects}
            named = [next(n for n in xy if n in r.instruction) for r in renamings]
            assert len(set(named)) == len(renamings) >= 2  # the own goal and at least one other object
            own = renamings[[r.instruction for r in renamings].index(goal.instruction)]
            assert not own.final_shift.any() and not own.keyframe_shift.any()
            for r, name in zip(renamings, named, strict=True):
                assert tuple(name.split()) in seen_pairs(skill) and r.instruction in train  # never a held-out target
                moved = xy[name] - xy[f"{goal.color} {goal.shape}"]
                np.testing.assert_allclose(r.keyframe_shift, [*moved, 0, 0], atol=1e-6)
                # a place ends over its pad, wherever the object was
                np.testing.assert_allclose(r.final_shift, [0] * 4 if skill == "place" else [*moved, 0, 0], atol=1e-6)
    # an evaluation split's or an attribute variant's episode is never renamed
    assert SUITE.renamings("tabletop-touch-heldout-compositions", 0) == []
    assert SUITE.renamings("tabletop-lift-by-shape", 0) == []
    assert get_suite("metaworld").renamings("reach-v3", 0) == []


def test_both_cameras_are_schema_valid_and_the_ablations_keep_the_scene():
    seen, blind, swapped = (make_env(t, image_size=TINY_IMAGE) for t in
                            ("tabletop-lift", "tabletop-lift-blind", "tabletop-lift-swapped"))
    schema = SUITE.default_schema(TINY_IMAGE)
    assert schema.image_keys == ["observation.images.scene", "observation.images.wrist"]
    (obs, info), (obs_blind, info_blind), (obs_swap, info_swap) = (e.reset(seed=7) for e in (seen, blind, swapped))
    for o in (obs, obs_blind, obs_swap):
        schema.validate_observation(o)  # shapes, dtypes, finite
    scene, wrist = obs["observation.images.scene"], obs["observation.images.wrist"]
    assert scene.std() > 10 and wrist.std() > 10 and not np.array_equal(scene, wrist)
    assert info["scene"] == info_blind["scene"] == info_swap["scene"]
    assert obs_blind[TASK_KEY] == "" and info_blind["goal"] == info["goal"]  # judged against the hidden goal
    assert obs_swap[TASK_KEY] != obs[TASK_KEY] and info_swap["goal"] != info["goal"]
    np.testing.assert_array_equal(obs["observation.images.scene"], obs_swap["observation.images.scene"])
    for task, i in (("tabletop-lift", info), ("tabletop-lift-blind", info_blind), ("tabletop-lift-swapped", info_swap)):
        assert SUITE.episode_goal(task, 7) == i["goal"]  # what a resumed recording checks its store against
    obs, *_ = seen.step(np.array([0.5, 0.5, -0.5, 1.0], np.float32))
    schema.validate_observation(obs)
    with pytest.raises(ValueError, match="tabletop env renders cameras"):
        make_env("tabletop-touch", get_suite("metaworld").default_schema(TINY_IMAGE))
    for e in (seen, blind, swapped):
        e.close()


def test_a_resumed_recording_refuses_a_store_recorded_under_other_splits(tmp_path, monkeypatch):
    from vla.datasets.episode_store import EpisodeStore
    from vla.envs.tabletop import TabletopSuite
    from vla.record import RecordConfig, check_resumable, record

    out = str(tmp_path / "d.zarr")
    record(RecordConfig(tasks=["tabletop-place"], episodes=1, out=out, image_size=TINY_IMAGE))
    check_resumable(RecordConfig(tasks=["tabletop-place"], episodes=2, out=out, image_size=TINY_IMAGE))  # as recorded
    stored = EpisodeStore.open(out).episode_goals()[0]
    # the suite now gives that seed another target, as a change of the held-out pairs would
    other = {**stored, "color": "red" if stored["color"] != "red" else "blue"}
    monkeypatch.setattr(TabletopSuite, "episode_goal", lambda self, task, seed: other)
    with pytest.raises(ValueError, match=r"episode 0 \(tabletop-place, seed \d+\) was recorded with the goal .* "
                                         "recorded under other splits or scenes"):
        record(RecordConfig(tasks=["tabletop-place"], episodes=2, out=out, image_size=TINY_IMAGE))
    assert EpisodeStore.open(out).num_episodes == 1  # nothing recorded, nothing lost


def _run(*args):
    result = subprocess.run([sys.executable, "-m", *args], env={**os.environ, "MUJOCO_GL": "egl"},
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_tiny_record_train_eval_and_sim_robot_on_the_suite(tmp_path):
    from vla.datasets.episode_store import EpisodeStore

    store, run_dir = tmp_path / "demos.zarr", tmp_path / "run"
    out = _run("vla.cli.record", "tasks=[tabletop]", "episodes=1", f"out={store}", f"image_size={TINY_IMAGE}")
    assert all(f"tabletop-{s}: kept 1 of 1 attempts" in out for s in SKILLS)
    demos = EpisodeStore.open(store)
    assert demos.schema.image_keys == ["observation.images.scene", "observation.images.wrist"]
    goals = demos.episode_goals()
    # the structured goal of every episode is kept (tasks are recorded two at a time, so in either order)
    assert [f"tabletop-{g['skill']}" for g in goals] == demos.episode_env_tasks()
    assert sorted(g["skill"] for g in goals) == sorted(SKILLS)
    assert all(f"{g['color']} {g['shape']}" in t for g, t in zip(goals, demos.episode_tasks(), strict=True))
    tiny = [f"model.backbone.image_size={TINY_IMAGE}", "model.backbone.patch_size=8",
            "model.backbone.vision_hidden=32", "model.backbone.vision_layers=1", "model.backbone.text_hidden=64",
            "model.backbone.text_layers=1", "model.backbone.head_dim=32", "model.chunk_size=4",
            "model.n_action_steps=4"]
    _run("vla.cli.train", f"dataset={store}", f"out={run_dir}", "steps=2", "batch_size=4", *tiny)
    _run("vla.cli.evaluate", f"checkpoint={run_dir}", "tasks=[tabletop-touch,tabletop-touch-swapped]",
         "episodes=2", "max_episode_steps=4", f"out={run_dir / 'eval'}")
    results = json.loads((run_dir / "eval/results.json").read_text())
    assert set(results["tasks"]) == {"tabletop-touch", "tabletop-touch-swapped"}
    for r in results["tasks"].values():  # which object each episode's hand acted on, as shares of the episodes
        assert set(r["outcomes"]) <= {"named object", "other object", "no object"}
        assert sum(r["outcomes"].values()) == pytest.approx(1.0)
        assert len(r["episode_outcomes"]) == 2  # and for each episode, in seed order
        assert {o: r["episode_outcomes"].count(o) / 2 for o in r["outcomes"]} == r["outcomes"]
    assert (run_dir / "eval/tabletop-touch.mp4").stat().st_size > 0
    _run("vla.cli.robot", f"policy={run_dir}", "robot=sim", "tasks=[tabletop-push-blind]", "episodes=1",
         "max_episode_steps=4", "control_hz=50", f"out={tmp_path / 'robot.json'}")
    robot = json.loads((tmp_path / "robot.json").read_text())
    assert [e["ticks"] for e in robot["episodes"]] == [4]

"""A user's mistake on the command line ends in one line that names it and exit code 2, before any work."""

import subprocess
import sys

import pytest

CASES = [
    ("vla.cli.record", ["tasks=[mt11]"], "unknown task or task group 'mt11'"),
    ("vla.cli.record", ["episodes=0"], "episodes must be >= 1"),
    ("vla.cli.record", ["nope=1"], "Could not override 'nope'"),
    ("vla.cli.record", ["cameras=[corner2,wrist]"], "metaworld renders cameras ['corner2', 'gripperPOV'"),
    ("vla.cli.train", ["dataset=/no/such/store.zarr"], "dataset /no/such/store.zarr does not exist"),
    ("vla.cli.train", ["model.backbone.path=/no/model", "dataset=."], "backbone path /no/model has no config.json"),
    ("vla.cli.train", ["backbone@model.backbone=qwen2_5_vl", "dataset=."], "Missing mandatory value: path"),
    ("vla.cli.train", ["model.backbone.instruction_first=maybe"], "model.backbone.instruction_first must be bool, got 'maybe'"),
    ("vla.cli.train", ["steps=1e3"], "steps must be int, got 1000.0"),
    ("vla.cli.serve", ["dtype=fp8"], "dtype must be one of ('float32', 'bfloat16'), got 'fp8'"),
    ("vla.cli.evaluate", ["checkpoint=/no/ckpt"], "checkpoint /no/ckpt does not exist"),
    ("vla.cli.evaluate", ["checkpoint=."], "no config.json, so not a checkpoint directory"),
    ("vla.cli.serve", ["checkpoint=."], "checkpoint .: no config.json, so not a checkpoint directory"),
    ("vla.cli.robot", ["policy=."], "policy checkpoint .: no config.json, so not a checkpoint directory"),
    ("vla.cli.evaluate", ["decoding=beam"], "decoding must be one of ('autoregressive', 'parallel'), got 'beam'"),
    ("vla.cli.evaluate", ["chunking=prefix"], "chunking must be one of ('naive', 'ensemble'), got 'prefix'"),
    ("vla.cli.evaluate", ["argmax_dims=[3,3]"], "argmax_dims must be distinct action indices >= 0, got [3, 3]"),
    ("vla.cli.demo", ["tasks=[drawer-close-v9]"], "unknown task or task group 'drawer-close-v9'"),
    ("vla.cli.demo", ["cameras=[wrist]"], "metaworld renders cameras ['corner2', 'gripperPOV'"),
    ("vla.cli.demo", ["steps=many"], "steps must be int, got 'many'"),
    ("vla.cli.robot", ["chunking=smooth"], "chunking='smooth': expected one of ['naive', 'prefix', 'ensemble']"),
    ("vla.cli.robot", ["robot=lerobot", "sim_time=true"], "sim_time=true is for robot=sim or mock"),
    ("vla.cli.robot", ["robot=lerobot", "+lerobot.type=so101_follower"], "robot=lerobot needs lerobot.task="),
]


@pytest.mark.parametrize(("module", "args", "message"), CASES, ids=[f"{m}:{a[0]}" for m, a, _ in CASES])
def test_user_mistakes_are_one_line_and_exit_2(module, args, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not list(tmp_path.iterdir()), "nothing may be written before the input is checked"


def _tiny_checkpoint(directory):
    from conftest import TINY_IMAGE, TINY_INSTRUCTIONS, fake_stats, tiny_model_config

    from vla.envs.metaworld import metaworld_schema
    from vla.policies.vla_policy import VLAPolicy

    VLAPolicy.create(tiny_model_config(), metaworld_schema(TINY_IMAGE, "corner2"), fake_stats(),
                     TINY_INSTRUCTIONS).save_pretrained(directory)
    return directory


def _one_line_exit_2(args, cwd, message):
    cwd.mkdir()
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not list(cwd.iterdir())


def test_an_override_the_checkpoint_does_not_fit_is_one_line_and_exit_2(tmp_path):
    """What only the checkpoint can refuse (the gripper's index on a 4-dim action is 3) is refused once it loads,
    before any episode runs or anything is written."""
    checkpoint = _tiny_checkpoint(tmp_path / "ckpt")
    _one_line_exit_2(["vla.cli.evaluate", f"checkpoint={checkpoint}", "argmax_dims=[7]", "tasks=[drawer-close-v3]"],
                     tmp_path / "cwd", "argmax_dims [7] name dimensions beyond the action's 4")
    assert not (checkpoint / "eval").exists()


@pytest.mark.parametrize("module", ["vla.cli.robot", "vla.cli.serve"])
def test_a_checkpoint_whose_weights_cannot_load_is_one_line_and_exit_2(module, tmp_path):
    """Its config.json reads, so only loading finds the weights gone; that is still the user's path, not a bug."""
    checkpoint = _tiny_checkpoint(tmp_path / "ckpt")
    (checkpoint / "model.safetensors").unlink()
    key = "policy" if module == "vla.cli.robot" else "checkpoint"
    _one_line_exit_2([module, f"{key}={checkpoint}", "robot=mock" if key == "policy" else "port=0"],
                     tmp_path / "cwd", "checkpoint file model.safetensors is missing")


@pytest.mark.parametrize("name", ["train", "record", "eval", "serve", "robot", "dataset", "demo"])
def test_each_yaml_composes_to_its_dataclass_defaults(name):
    """The dataclass is the one source of defaults: a YAML that repeated one would drift from it."""
    from vla.cli.config import config_class, load

    assert load(name, []) == config_class(name)()


def test_a_group_option_overrides_the_dataclass_defaults():
    from vla.cli.config import load

    cfg = load("train", ["backbone@model.backbone=smolvlm2", "model.backbone.path=/models/x",
                         "model.backbone.image_size=512"])
    assert (cfg.model.backbone.path, cfg.model.backbone.finetune, cfg.model.backbone.image_size) == \
        ("/models/x", "frozen_vision", 512)

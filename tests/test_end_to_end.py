import json
import os
import subprocess
import sys

from conftest import TINY_IMAGE, vla_serve


def run(*args, timeout=600):
    env = {**os.environ, "MUJOCO_GL": "egl"}
    result = subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_record_train_eval_from_the_command_line(tmp_path):
    store, run_dir = tmp_path / "demos.zarr", tmp_path / "run"
    out = run("vla.cli.record", "tasks=[drawer-close-v3]", "episodes=2", f"out={store}",
              f"image_size={TINY_IMAGE}", "max_episode_steps=150")
    assert "drawer-close-v3: kept 2 of 2 attempts" in out
    tiny = [f"model.backbone.image_size={TINY_IMAGE}", "model.backbone.patch_size=8",
            "model.backbone.vision_hidden=32", "model.backbone.vision_layers=1",
            "model.backbone.text_hidden=64", "model.backbone.text_layers=1", "model.backbone.head_dim=32",
            "model.chunk_size=4", "model.n_action_steps=4"]
    run("vla.cli.train", f"dataset={store}", f"out={run_dir}", "steps=3", "batch_size=4", *tiny)
    for name in ("model.safetensors", "config.json", "norm_stats.json", "action_tokenizer.json", "loss.png"):
        assert (run_dir / name).is_file(), name
    run("vla.cli.evaluate", f"checkpoint={run_dir}", "episodes=2", "max_episode_steps=10", f"out={run_dir / 'eval'}")
    results = json.loads((run_dir / "eval/results.json").read_text())
    assert set(results["tasks"]) == {"drawer-close-v3"}  # defaults to the tasks trained on
    task = results["tasks"]["drawer-close-v3"]
    assert task["episodes"] == 2 and 0.0 <= task["success_rate"] <= 1.0
    assert 0.0 <= results["mean_success_rate"] <= 1.0
    assert min(results["seeds"]) >= 100_000
    assert (run_dir / "eval/drawer-close-v3.mp4").stat().st_size > 0
    assert (run_dir / "eval/success.png").stat().st_size > 0

    # the same checkpoint served by vla-serve on loopback drives the sim robot through vla-robot
    with vla_serve(run_dir) as port:
        run("vla.cli.robot", f"policy=ws://127.0.0.1:{port}", "robot=sim", "episodes=2", "max_episode_steps=15",
            "control_hz=50", f"record={tmp_path / 'ran.zarr'}", f"out={tmp_path / 'robot.json'}")
    robot = json.loads((tmp_path / "robot.json").read_text())
    assert [e["seed"] for e in robot["episodes"]] == [100_000, 100_001]
    assert all(e["ended_by"] == "episode done" and e["ticks"] == 15 for e in robot["episodes"])
    from vla.datasets.episode_store import EpisodeStore

    ran = EpisodeStore.open(tmp_path / "ran.zarr")
    assert ran.num_episodes == 2 and ran.episode(0)["source"] == "robot:drawer-close-v3"
    assert abs(ran.episode(0)["action"]).max() <= 1.0  # what the guard let through

    # real-time chunking in simulated time: 60 ms at 50 Hz is 3 ticks, on any machine
    run("vla.cli.robot", f"policy={run_dir}", "robot=sim", "episodes=1", "max_episode_steps=15", "control_hz=50",
        "sim_time=true", "delay_ms=60", "chunking=prefix", f"out={tmp_path / 'rtc.json'}")
    episode = json.loads((tmp_path / "rtc.json").read_text())["episodes"][0]
    assert episode["ticks"] == 15 and episode["late_ticks_max"] == 3 and episode["inference_errors"] == 0


def test_eval_refuses_training_seeds(tmp_path, tiny_store):
    import pytest
    from conftest import tiny_model_config

    from vla.evaluate import EvalConfig, evaluate_checkpoint
    from vla.train import TrainConfig, train

    out = train(TrainConfig(dataset=str(tiny_store), out=str(tmp_path / "r"), steps=1, batch_size=2,
                            model=tiny_model_config()))
    with pytest.raises(ValueError, match="were used for training"):
        evaluate_checkpoint(EvalConfig(checkpoint=str(out), seed=0, episodes=1))


def test_unknown_override_is_named():
    env = {**os.environ}
    result = subprocess.run([sys.executable, "-m", "vla.cli.train", "stepz=3"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "stepz" in result.stderr

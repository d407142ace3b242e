"""LeRobot's ACT and Diffusion Policy, trained by lerobot-train on an exported dataset, behind our protocol."""

import numpy as np
import pytest

from vla.datasets.episode_store import EpisodeStore
from vla.datasets.lerobot_io import export_lerobot
from vla.envs.metaworld import metaworld_schema
from vla.policies.lerobot_baselines import LeRobotPolicy, train_baseline
from vla.policies.protocol import batch_observation
from vla.policies.registry import load_policy

SCHEMA = metaworld_schema(32, "corner2")
# small models: this checks the machinery (lerobot's loop, processors, units), not the benchmark settings
SMALL = {
    "act": ["--policy.dim_model=64", "--policy.n_heads=2", "--policy.dim_feedforward=128",
            "--policy.n_encoder_layers=1", "--policy.n_vae_encoder_layers=1", "--policy.latent_dim=8",
            "--policy.optimizer_lr=1e-3", "--policy.optimizer_lr_backbone=1e-4"],
    "diffusion": ["--policy.down_dims=[32,64]", "--policy.crop_shape=[28,28]", "--policy.horizon=8",
                  "--policy.n_action_steps=4", "--policy.diffusion_step_embed_dim=32",
                  "--policy.num_inference_steps=4", "--optimizer.lr=1e-3"],
}


@pytest.fixture(scope="module")
def joint_units_dataset(tmp_path_factory):
    """Actions around 150 +- 50 (joint degrees, say): far from [-1, 1], so units cannot be confused."""
    root = tmp_path_factory.mktemp("baselines")
    store = EpisodeStore.create(root / "s.zarr", SCHEMA)
    rng = np.random.default_rng(0)
    for e in range(4):
        t = np.arange(40)[:, None] / 40
        action = (150 + 50 * np.sin(2 * np.pi * t + np.arange(4) + e)).astype(np.float32)
        images = np.zeros((40, 32, 32, 3), np.uint8)
        images[np.arange(40), :, np.clip((t[:, 0] * 31).astype(int), 0, 31)] = 255  # a bar that moves with t
        state = (action + rng.normal(0, 1, action.shape)).astype(np.float32)
        store.add_episode({"observation.images.corner2": images, "observation.state": state, "action": action},
                          task="track the bar", seed=e, success=True)
    return export_lerobot(store.path, root / "lerobot"), store


@pytest.mark.parametrize("name", ["act", "diffusion"])
def test_lerobot_baseline_trains_and_acts_in_dataset_units(name, joint_units_dataset, tmp_path):
    root, store = joint_units_dataset
    run = train_baseline(name, root, tmp_path / name, steps=40, batch_size=8, seed=0, extra=SMALL[name],
                         log_freq=5, log=tmp_path / "train.log")
    losses = run["losses"]
    assert len(losses) >= 6 and np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    policy = load_policy(run["checkpoints"][40])  # dispatched on lerobot's config, its schema read from it
    assert isinstance(policy, LeRobotPolicy) and policy.schema.to_json() == store.schema.to_json()
    assert policy.n_action_steps == {"act": 8, "diffusion": 4}[name] and policy.meta["lerobot_type"] == name
    episode = store.episode(0)
    obs = {k: episode[k][10] for k in ("observation.images.corner2", "observation.state")}
    obs["task"] = episode["task"]
    policy.reset()
    action = policy.select_action(batch_observation(obs))
    assert action.shape == (1, 4) and np.all(np.isfinite(action))
    assert np.all((action > 60) & (action < 240)), action  # unnormalized into the data's range
    chunk = policy.predict_chunk(batch_observation(obs))
    assert chunk.ndim == 3 and chunk.shape[0] == 1 and chunk.shape[2] == 4 and np.all((chunk > 60) & (chunk < 240))

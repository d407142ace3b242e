"""LeRobot's ACT and Diffusion Policy as baselines: trained by lerobot's own `lerobot-train` on our
demonstrations exported as a LeRobotDataset, and run through our Policy protocol (so `vla-eval`'s evaluator
and the robot runtime serve them unchanged), each with its own pre- and post-processor.

Settings are lerobot's defaults, except where this machine or these demos require otherwise:
- no pretrained ResNet weights (`pretrained_backbone_weights=null`): nothing may be downloaded here;
- ACT: `chunk_size=32, n_action_steps=8`. The default 100-step chunk is longer than a whole Meta-World
  demonstration (~80 steps), so the policy would run open loop for the entire episode;
- Diffusion Policy: lerobot's settings for 96x96 images trained from scratch (its PushT configuration):
  `crop_shape=[84,84]`, `horizon=16`, `n_action_steps=8`, `n_obs_steps=2`, and GroupNorm instead of
  BatchNorm in the ResNet (`use_group_norm=true`, as the Diffusion Policy paper does without pretraining),
  and DDIM with 10 inference steps over the 100 training steps (`noise_scheduler_type=DDIM,
  num_inference_steps=10`), the paper's setting for real-time control. lerobot's default, 100 DDPM steps of
  its 250M-parameter U-Net, takes 18 s per chunk at batch 1 on 2 CPU cores (2.1 s with DDIM 10): a 30-episode
  evaluation would take hours, and no robot could wait for it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vla.schema import STATE_KEY, TASK_KEY, Schema

BASELINES: dict[str, list[str]] = {
    "act": ["--policy.type=act", "--policy.pretrained_backbone_weights=null", "--policy.chunk_size=32",
            "--policy.n_action_steps=8"],
    "diffusion": ["--policy.type=diffusion", "--policy.pretrained_backbone_weights=null",
                  "--policy.crop_shape=[84,84]", "--policy.horizon=16", "--policy.n_action_steps=8",
                  "--policy.n_obs_steps=2", "--policy.use_group_norm=true", "--policy.noise_scheduler_type=DDIM",
                  "--policy.num_inference_steps=10"],
}


def lerobot_train_command(name: str, dataset_root: str | Path, out: str | Path, steps: int, batch_size: int = 8,
                          save_freq: int | None = None, seed: int = 0, log_freq: int = 1,
                          extra: list[str] | None = None) -> list[str]:
    """The `lerobot-train` command line for a baseline on a LeRobotDataset root (run it with HF_HUB_OFFLINE=1:
    the dataset is local and nothing may reach for the hub)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; have {sorted(BASELINES)}")
    dataset_root = Path(dataset_root)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return [sys.executable, "-m", "lerobot.scripts.lerobot_train",
            f"--dataset.repo_id=local/{dataset_root.name}", f"--dataset.root={dataset_root}",
            "--dataset.video_backend=pyav", f"--policy.device={device}", "--policy.push_to_hub=false",
            *BASELINES[name], f"--output_dir={out}", f"--steps={steps}", f"--batch_size={batch_size}",
            f"--save_freq={save_freq or steps}", f"--log_freq={log_freq}", "--num_workers=1",
            "--wandb.enable=false", f"--seed={seed}", *(extra or [])]


def step_seconds(log_text: str) -> list[float]:
    """Seconds per step (update + data loading) from a lerobot-train log written with log_freq=1.

    lerobot logs the max over each log window, so with a longer window the first step's data-loader
    start-up (~9 s here) would pass for a step time; the first two steps are skipped for the same reason."""
    return [float(u) + float(d) for u, d in re.findall(r"updt_s:([0-9.]+) data_s:([0-9.]+)", log_text)][2:]


def checkpoints_of(out: str | Path) -> dict[int, Path]:
    """{step: pretrained_model directory} of a lerobot-train output directory."""
    return {int(p.name): p / "pretrained_model" for p in (Path(out) / "checkpoints").iterdir() if p.name.isdigit()}


def train_baseline(name: str, dataset_root: str | Path, out: str | Path, steps: int, batch_size: int = 8,
                   save_freq: int | None = None, seed: int = 0, extra: list[str] | None = None,
                   log: Path | None = None, log_freq: int = 1) -> dict:
    """Run `lerobot-train` (lerobot's own training loop) on a LeRobotDataset root. Returns timing, the logged
    losses and the checkpoint directories ({step: path}); raises with the tail of lerobot's log if it fails."""
    cmd = lerobot_train_command(name, dataset_root, out, steps, batch_size, save_freq, seed, log_freq, extra)
    t0 = time.perf_counter()
    result = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    text = result.stdout + result.stderr
    if log is not None:
        log.write_text(text)
    if result.returncode != 0:
        raise RuntimeError(f"lerobot-train {name} failed (exit {result.returncode}):\n{text[-3000:]}")
    step_s = step_seconds(text)
    return {"wall_s": wall, "checkpoints": checkpoints_of(out), "steps": steps, "batch_size": batch_size,
            "step_s": float(np.median(step_s)) if step_s else None,
            "losses": [float(x) for x in re.findall(r" loss:([0-9.]+)", text)]}


def lerobot_checkpoint_schema(path: str | Path) -> Schema:
    """The schema of a lerobot-train checkpoint: that of the LeRobotDataset it was trained on (its
    train_config.json names the dataset's root), limited to the cameras its config.json takes."""
    from vla.datasets.lerobot_io import schema_from_lerobot
    from vla.policies.vla_policy import CheckpointError

    path = Path(path)
    try:
        root = Path(json.loads((path / "train_config.json").read_text())["dataset"]["root"])
        info = json.loads((root / "meta" / "info.json").read_text())
    except (FileNotFoundError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: its schema is its training dataset's, and train_config.json does not lead "
                              f"to that dataset's meta/info.json ({type(e).__name__}: {e})") from None
    schema = schema_from_lerobot(info["features"], info["fps"], root)
    inputs = json.loads((path / "config.json").read_text())["input_features"]
    observation = {k: f for k, f in schema.observation.items() if k in inputs}
    return Schema(observation=observation, action=schema.action, fps=schema.fps)


class LeRobotPolicy:
    """A trained lerobot policy behind our Policy protocol, with its own pre- and post-processor."""

    def __init__(self, policy, preprocessor, postprocessor, schema: Schema):
        self.policy, self.preprocessor, self.postprocessor, self.schema = policy, preprocessor, postprocessor, schema
        self.policy.eval()
        config = policy.config
        # ACT names its chunk chunk_size, Diffusion Policy horizon
        self.chunk_size = int(getattr(config, "chunk_size", None) or config.horizon)
        self.n_action_steps = int(config.n_action_steps)
        self.accepts_prefix = False  # ACT and Diffusion Policy cannot condition a chunk on given actions
        self.meta = {"policy_type": "lerobot", "lerobot_type": config.type}

    @classmethod
    def from_pretrained(cls, path: str | Path, schema: Schema | None = None) -> LeRobotPolicy:
        """`schema` defaults to the checkpoint's own (`lerobot_checkpoint_schema`)."""
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        schema = schema or lerobot_checkpoint_schema(path)
        cfg = PreTrainedConfig.from_pretrained(str(path))
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
        policy = get_policy_class(cfg.type).from_pretrained(str(path), config=cfg)
        pre, post = make_pre_post_processors(cfg, pretrained_path=str(path))
        return cls(policy, pre, post, schema)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.policy.parameters())

    def _batch(self, obs: dict) -> dict:
        self.schema.validate_observation(obs, batched=True)
        batch = {k: torch.from_numpy(np.asarray(obs[k])).permute(0, 3, 1, 2).float() / 255.0
                 for k in self.schema.image_keys}  # lerobot's layout: (B, C, H, W) in [0, 1]
        batch[STATE_KEY] = torch.from_numpy(np.asarray(obs[STATE_KEY], np.float32))
        batch[TASK_KEY] = list(obs[TASK_KEY])
        return self.preprocessor(batch)

    def reset(self) -> None:
        self.policy.reset()

    @torch.no_grad()
    def select_action(self, obs: dict) -> np.ndarray:
        action = self.postprocessor(self.policy.select_action(self._batch(obs)))
        return action.float().cpu().numpy()

    @torch.no_grad()
    def predict_chunk(self, obs: dict) -> np.ndarray:
        batch = self._batch(obs)
        n_obs = getattr(self.policy.config, "n_obs_steps", 1)
        if n_obs > 1:  # no history here: repeat the current observation, as lerobot does at an episode start
            batch = {k: (v.unsqueeze(1).repeat(1, n_obs, *[1] * (v.ndim - 1)) if k in
                         (STATE_KEY, *self.schema.image_keys) else v) for k, v in batch.items()}
            self.policy.reset()
        chunk = self.policy.predict_action_chunk(batch)  # (B, H, D) normalized
        return self.postprocessor(chunk).float().cpu().numpy()

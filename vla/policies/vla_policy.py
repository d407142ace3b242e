"""The VLA as a Policy, and its checkpoint directory.

A checkpoint is a directory:
    config.json            policy config, observation/action schema, the backbone's HF config, training meta
    model.safetensors      every weight: the backbone's, and the model's own heads' under "heads."
    norm_stats.json        per-key mean/std/min/max/q01/q99 of the training data
    action_tokenizer.json  the fitted action tokenizer
    text_tokenizer.json    the fitted text tokenizer (embedded backbone with text_tokenizer="bpe")
Nothing is pickled. Loading checks every file and key and names the first one that is missing or wrong.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vla.datasets.stats import stats_from_json, stats_to_json
from vla.model.action_tokenizer import BinActionTokenizer
from vla.model.backbone import Backbone, torch_dtype
from vla.model.vla_model import VLAConfig, VLAModel
from vla.policies.protocol import check_prefix
from vla.schema import ACTION_KEY, STATE_KEY, TASK_KEY, Schema

CONFIG_FILE, WEIGHTS_FILE, STATS_FILE = "config.json", "model.safetensors", "norm_stats.json"
HEADS = "heads."  # the prefix of VLAModel.heads' weights in WEIGHTS_FILE (the backbone's have none)
POLICY_TYPE = "vla"
# 2: the embedded backbone's text tokenizer is named in its config (format 1 checkpoints are all ByT5).
CHECKPOINT_FORMAT = 2
# Config keys added after checkpoints were written without them, with the value those checkpoints were trained
# with (where it differs from today's default).
PREDATING_DEFAULTS = {"step_tokens": False}


class CheckpointError(ValueError):
    """A checkpoint directory is missing a file or key, or holds one that does not fit."""


class VLAPolicy:
    def __init__(self, model: VLAModel, schema: Schema, stats: dict, meta: dict | None = None):
        self.model = model
        self.cfg = model.cfg
        self.schema = schema
        self.stats = stats
        self.meta = meta or {}
        self._queue: deque[np.ndarray] = deque()

    @classmethod
    def create(cls, cfg: VLAConfig, schema: Schema, stats: dict, instructions: list[str],
               meta: dict | None = None, backbone: Backbone | None = None) -> VLAPolicy:
        """A new policy for data with this schema, these normalization stats and these instructions (a fitted
        text tokenizer is fitted on them). backbone: one already built (`reference.random_backbone`), instead
        of the one `cfg.backbone` describes."""
        tok = BinActionTokenizer(cfg.tokenizer, stats[ACTION_KEY]["q01"], stats[ACTION_KEY]["q99"])
        if backbone is None:
            prompts = [VLAModel.prompt_text(i) for i in instructions]
            backbone = Backbone.build(cfg.backbone, VLAModel.n_new_tokens(cfg, tok.action_dim), prompts=prompts,
                                      n_cameras=len(schema.image_keys))
        policy = cls._assemble(cfg, backbone, tok, schema, stats, meta)
        policy.model.init_bin_embeddings()
        backbone.apply_finetune(cfg.backbone)
        return policy

    @classmethod
    def _assemble(cls, cfg, backbone, tok, schema, stats, meta) -> VLAPolicy:
        if tok.action_dim != schema.action_dim:
            raise CheckpointError(f"action tokenizer has {tok.action_dim} dims, schema action has {schema.action_dim}")
        model = VLAModel(cfg, backbone, tok, stats[STATE_KEY]["q01"], stats[STATE_KEY]["q99"],
                         n_cameras=len(schema.image_keys))
        return cls(model, schema, stats, meta)

    # ---- Policy protocol ------------------------------------------------------------------------------
    @property
    def chunk_size(self) -> int:
        return self.cfg.chunk_size

    @property
    def n_action_steps(self) -> int:
        return self.cfg.n_action_steps

    accepts_prefix = True  # predict_chunk(obs, prefix=...) conditions the chunk on the given first actions

    def reset(self) -> None:
        self._queue.clear()

    def select_action(self, obs: dict) -> np.ndarray:
        """Batched obs -> (B, action_dim). Replans every `n_action_steps` actions."""
        if not self._queue:
            chunk = self._predict(obs, self.cfg.n_action_steps)  # decode only what will be executed
            self._queue.extend(chunk.transpose(1, 0, 2))
        return self._queue.popleft()

    def predict_chunk(self, obs: dict, prefix: np.ndarray | None = None) -> np.ndarray:
        """Batched obs -> (B, H, action_dim) float32 in the data's units.

        prefix: (B, k, action_dim), k < H, the actions that will run before this chunk can (real-time
        chunking). They are the chunk's first k actions, exactly, and the rest is predicted to follow them."""
        return self._predict(obs, self.cfg.chunk_size, prefix)

    def _predict(self, obs: dict, steps: int, prefix: np.ndarray | None = None) -> np.ndarray:
        self.schema.validate_observation(obs, batched=True)
        tok = self.model.action_tokenizer
        given = None
        if prefix is not None:
            prefix = check_prefix(prefix, len(obs[TASK_KEY]), self.cfg.chunk_size, tok.action_dim)
            given = torch.from_numpy(tok.normalize(prefix).reshape(len(prefix), -1))
        images = torch.from_numpy(np.stack([np.asarray(obs[k]) for k in self.schema.image_keys], axis=1))
        self.model.eval()
        inputs = self.model.build_prefix(images, np.asarray(obs[STATE_KEY]), list(obs[TASK_KEY]))
        normalized = self.model.generate(inputs, n_tokens=steps * tok.action_dim, given=given).cpu().numpy()
        chunk = tok.unnormalize(normalized.reshape(len(normalized), steps, tok.action_dim))
        if prefix is not None:
            chunk[:, : prefix.shape[1]] = prefix[:, :steps]  # as given, not their bins
        if not np.all(np.isfinite(chunk)):  # cannot happen by construction; never let it reach a motor
            raise FloatingPointError("VLA produced a non-finite action chunk")
        return chunk

    # ---- checkpoints ----------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = unique_state_dict(self.model.backbone) | {HEADS + k: v for k, v in self.model.heads.state_dict().items()}
        weights = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        save_file(weights, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        config = {
            "format": CHECKPOINT_FORMAT,
            "policy_type": POLICY_TYPE,
            "config": asdict(self.cfg),
            "schema": self.schema.to_json(),
            "backbone_hf_config": self.model.backbone.hf_config_dict(),
            "meta": self.meta,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        (directory / STATS_FILE).write_text(json.dumps(stats_to_json(self.stats), indent=2))
        self.model.action_tokenizer.save(directory)
        self.model.backbone.save_text_tokenizer(directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu", dtype: str = "float32",
                        compile: bool = False, merge_lora: bool = True) -> VLAPolicy:
        """dtype "bfloat16" runs inference in bf16 (the GPU path); compile: torch.compile the forward.
        merge_lora: a LoRA checkpoint's adapters are folded into the weights (the policy is then an ordinary
        full model, and says so in its config); training resumes with False, to keep training the adapters."""
        inference_dtype = torch_dtype(dtype)
        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE, STATS_FILE):
            if not (directory / name).is_file():
                raise CheckpointError(f"{directory}: checkpoint file {name} is missing")
        config = json.loads((directory / CONFIG_FILE).read_text())
        for key in ("format", "policy_type", "config", "schema", "backbone_hf_config"):
            if key not in config:
                raise CheckpointError(f"{directory / CONFIG_FILE}: missing key {key!r}")
        if config["policy_type"] != POLICY_TYPE:
            raise CheckpointError(f"{directory}: policy_type {config['policy_type']!r} is not {POLICY_TYPE!r}")
        if config["format"] == 1:
            config["config"]["backbone"]["text_tokenizer"] = "byt5"
        cfg = VLAConfig(**(PREDATING_DEFAULTS | config["config"]))
        schema = Schema.from_json(config["schema"])
        try:
            stats = stats_from_json(json.loads((directory / STATS_FILE).read_text()), [STATE_KEY, ACTION_KEY])
        except KeyError as e:
            raise CheckpointError(f"{directory / STATS_FILE}: {e.args[0]}") from None
        tok = BinActionTokenizer.load(directory)
        try:
            backbone = Backbone.build(cfg.backbone, VLAModel.n_new_tokens(cfg, tok.action_dim), hf_config=config["backbone_hf_config"],
                                      checkpoint=directory, n_cameras=len(schema.image_keys))
        except (FileNotFoundError, ValueError) as e:
            raise CheckpointError(str(e)) from None
        backbone.apply_finetune(cfg.backbone)  # LoRA adapters in place, so the weight names match
        weights = load_file(str(directory / WEIGHTS_FILE))
        heads = {k[len(HEADS):]: weights.pop(k) for k in list(weights) if k.startswith(HEADS)}
        _load_weights_strict(backbone, weights, directory / WEIGHTS_FILE)
        if merge_lora and cfg.backbone.finetune == "lora":
            backbone.merge_lora()
            cfg.backbone.finetune = "full"
        policy = cls._assemble(cfg, backbone, tok, schema, stats, config.get("meta", {}))
        _load_weights_strict(policy.model.heads, heads, directory / WEIGHTS_FILE, HEADS)
        policy.model.to(device, inference_dtype)
        if compile:
            backbone.compile()
        return policy


def unique_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without the second name of a tied weight (an LM head tied to the input embedding):
    safetensors stores each tensor once, and loading the first name fills both."""
    seen, unique = set(), {}
    for key, value in module.state_dict().items():
        if (value.data_ptr(), value.shape) not in seen:
            seen.add((value.data_ptr(), value.shape))
            unique[key] = value
    return unique


def _load_weights_strict(module: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path, prefix: str = "") -> None:
    """Loads `weights` (read from `path`, where their names carry `prefix`) into module, naming the first that
    is missing, unexpected or of the wrong shape."""
    expected = unique_state_dict(module)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing:
        raise CheckpointError(f"{path}: missing weight {prefix + missing[0]!r} ({len(missing)} missing in all)")
    if unexpected:
        raise CheckpointError(f"{path}: unexpected weight {prefix + unexpected[0]!r} ({len(unexpected)} in all)")
    for key, value in weights.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(f"{path}: weight {prefix + key!r} has shape {tuple(value.shape)}, the model "
                                  f"expects {tuple(expected[key].shape)}")
    module.load_state_dict(weights, strict=False)  # the names left out are tied to loaded ones

"""`load_policy(path)`: any checkpoint directory as a Policy, by the type its config names, so that the server,
the evaluator and the robot load a VLA or a LeRobot baseline without naming a class.

- a vla checkpoint: `config.json` with `"policy_type": "vla"` (VLAPolicy);
- a LeRobot checkpoint (`lerobot-train`'s `pretrained_model/`): `config.json` with lerobot's `"type"` (`act`,
  `diffusion`, ...), run by LeRobotPolicy with its own processors.

A new policy type registers a loader with `register_policy_type`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from vla.policies.protocol import Policy
from vla.policies.vla_policy import CONFIG_FILE, CheckpointError

_LOADERS: dict[str, Callable[..., Policy]] = {}


def register_policy_type(name: str, loader: Callable[..., Policy]) -> None:
    """`loader(directory, device, **inference)` builds the Policy of a checkpoint whose type is `name`."""
    _LOADERS[name] = loader


def policy_type(directory: str | Path) -> str:
    """The type a checkpoint directory's config names: `vla`, or `lerobot` for lerobot-train's checkpoints."""
    config_path = Path(directory) / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_FILE}, so not a checkpoint directory")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_path}: not JSON ({e})") from None
    if "policy_type" in config:
        return str(config["policy_type"])
    if "type" in config and "input_features" in config:  # lerobot's PreTrainedConfig
        return "lerobot"
    raise CheckpointError(f"{config_path}: names no policy type (neither vla's 'policy_type' nor lerobot's 'type')")


def load_policy(directory: str | Path, device: str = "cpu", **inference) -> Policy:
    """inference: the loader's inference options (the VLA's `dtype` and `compile`)."""
    kind = policy_type(directory)
    if kind not in _LOADERS:
        raise CheckpointError(f"{directory}: policy type {kind!r} has no loader; known: {sorted(_LOADERS)}")
    return _LOADERS[kind](Path(directory), device, **inference)


def _load_vla(directory: Path, device: str, dtype: str = "float32", compile: bool = False) -> Policy:
    from vla.policies.vla_policy import VLAPolicy

    return VLAPolicy.from_pretrained(directory, device=device, dtype=dtype, compile=compile)


def _load_lerobot(directory: Path, device: str, dtype: str = "float32", compile: bool = False) -> Policy:
    from vla.policies.lerobot_baselines import LeRobotPolicy

    if dtype != "float32" or compile:
        raise CheckpointError(f"{directory}: a lerobot baseline is served in float32 without compile")
    return LeRobotPolicy.from_pretrained(directory)


register_policy_type("vla", _load_vla)
register_policy_type("lerobot", _load_lerobot)

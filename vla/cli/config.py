"""Hydra composition of the YAML under configs/ into the config dataclasses, from command-line overrides."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types
import typing
from importlib.resources import files
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class UsageError(Exception):
    """A mistake in what the user asked for (a bad override, an unknown task, a missing path): the command
    prints it as one line and exits with code 2, before any work starts. Bugs keep their traceback."""


def cli_main(prog: str, main) -> None:
    try:
        main()
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def config_dir() -> Path:
    """configs/ beside the package in a source checkout (editable install); vla.configs in a wheel."""
    checkout = Path(__file__).resolve().parents[2] / "configs"
    if (checkout / "train.yaml").is_file():
        return checkout
    try:
        packaged = Path(str(files("vla.configs")))
    except ModuleNotFoundError:
        packaged = None
    if packaged is None or not (packaged / "train.yaml").is_file():
        raise FileNotFoundError(f"no configs/ found: neither {checkout} nor the installed vla.configs")
    return packaged


# The dataclass behind each configs/<name>.yaml. Its field defaults are the only defaults: they are registered
# as the hydra config `<name>_defaults`, which the YAML lists first and then overrides where it must.
CONFIG_CLASSES = {
    "train": "vla.train:TrainConfig",
    "record": "vla.record:RecordConfig",
    "eval": "vla.evaluate:EvalConfig",
    "serve": "vla.runtime.server:ServeConfig",
    "robot": "vla.runtime.run:RobotConfig",
    "dataset": "vla.cli.dataset:DatasetConfig",
    "demo": "vla.cli.demo:DemoConfig",
}


def config_class(name: str) -> type:
    module, cls = CONFIG_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def default_values(cls) -> dict:
    """A config dataclass's defaults as plain YAML values (nested config dataclasses as mappings)."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cls())


# Keys that each option of a config group must set itself: every backbone YAML says where its weights are
# (embedded.yaml: null; the pretrained ones: ???, so that a missing path is named). They start as ??? here,
# since a ??? merged over a default would keep the default.
SET_BY_GROUP = {"train": [("model", "backbone", "path")]}


def compose_dict(name: str, overrides: list[str]) -> dict:
    if name in CONFIG_CLASSES:
        defaults = default_values(config_class(name))
        for *parents, key in SET_BY_GROUP.get(name, []):
            node = defaults
            for parent in parents:
                node = node[parent]
            node[key] = "???"
        ConfigStore.instance().store(name=f"{name}_defaults", node=defaults)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            cfg = compose(config_name=name, overrides=overrides)
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as e:
        message = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())
        raise UsageError(f"configs/{name}.yaml: {message}") from None


def load(name: str, overrides: list[str] | None = None):
    """configs/<name>.yaml's dataclass, composed with `overrides` (hydra syntax: key=value, a.b=value, list=[x,y];
    default: the command line's)."""
    cls = config_class(name)
    values = compose_dict(name, sys.argv[1:] if overrides is None else overrides)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"configs/{name}.yaml: unknown key(s) {unknown}; {cls.__name__} has {sorted(known)}")
    check_types(cls, values)
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:  # the config dataclasses validate their values in __post_init__
        raise UsageError(f"configs/{name}.yaml: {e}") from None


def check_types(cls, values: dict, where: str = "") -> None:
    """Each bool, int and float field (nested config dataclasses included) holds a value of its type: YAML
    and hydra pass `flag=maybe` through as a string, which a dataclass would take as a true flag."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value, kind, key = values[field.name], hints[field.name], f"{where}{field.name}"
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            check_types(kind, value, f"{key}.")
        elif not _is_instance(value, kind):
            raise UsageError(f"{key} must be {getattr(kind, '__name__', kind)}, got {value!r}")


def _is_instance(value, kind) -> bool:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return any(_is_instance(value, k) for k in typing.get_args(kind))
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):  # an int is a float's value too; a bool is neither
        return isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    return kind is not type(None) or value is None  # other types are the dataclasses' own to check


def require_path(path, what: str) -> None:
    if not Path(path).exists():
        raise UsageError(f"{what} {path} does not exist")


def load_checkpoint(path, what: str, **options):
    """The policy at `path`, loaded; a path that is not a checkpoint, or one these options cannot load, is the
    user's mistake and ends in one line naming it."""
    require_path(path, what)
    from vla.policies.registry import load_policy
    from vla.policies.vla_policy import CheckpointError

    try:
        return load_policy(path, **options)
    except CheckpointError as e:
        raise UsageError(f"{what} {e}") from None


def require_backbone(backbone) -> None:
    """A pretrained backbone's directory must exist and hold a supported family (checked before training)."""
    if backbone.path is None:
        return
    from vla.model.backbone import pretrained_model_type

    try:
        pretrained_model_type(backbone.path)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None


def require_tasks(names: list[str] | None) -> None:
    """Task, group and suite names must all be known (checked before recording or evaluating starts)."""
    from vla.envs import resolve_tasks

    try:
        resolve_tasks(list(names or []))
    except KeyError as e:
        raise UsageError(e.args[0]) from None


def require_cameras(tasks: list[str], cameras: list[str] | None) -> None:
    """Every suite of `tasks` renders each of `cameras` (checked before recording starts)."""
    from vla.envs import resolve_tasks, suite_of

    for suite in {suite_of(t) for t in resolve_tasks(list(tasks))}:
        try:
            suite.check_cameras(cameras)
        except ValueError as e:
            raise UsageError(str(e)) from None


def usage_requested() -> bool:
    return any(a in ("-h", "--help") for a in sys.argv[1:])


def print_usage(name: str, doc: str) -> None:
    print(doc.strip())
    print(f"\nDefaults (configs/{name}.yaml, override any with key=value):")
    print(OmegaConf.to_yaml(compose_dict(name, [])))

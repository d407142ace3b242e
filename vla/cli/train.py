"""vla-train dataset=data/demos.zarr out=runs/demo [steps=N] [resume=true] [model.chunk_size=8 ...]

Trains the VLA on an episode store. Several processes: accelerate launch --num_processes N -m vla.cli.train ..."""

from vla.cli.config import cli_main, load, print_usage, require_backbone, require_path, usage_requested
from vla.train import train


def _main() -> None:
    if usage_requested():
        return print_usage("train", __doc__)
    cfg = load("train")
    require_path(cfg.dataset, "dataset")
    require_backbone(cfg.model.backbone)
    out = train(cfg)
    print(f"checkpoint: {out}  (loss curve: {out / 'loss.png'})")


def main() -> None:
    cli_main("vla-train", _main)


if __name__ == "__main__":
    main()

"""vla-train dataset=data/demos.zarr out=runs/demo [steps=N] [resume=true] [model.chunk_size=8 ...]

Trains the VLA on an episode store. Several processes: accelerate launch --num_processes N -m vla.cli.train ..."""

from vla.cli.config import load, print_usage, usage_requested
from vla.train import TrainConfig, train


def main() -> None:
    if usage_requested():
        return print_usage("train", __doc__)
    out = train(load("train", TrainConfig))
    print(f"checkpoint: {out}  (loss curve: {out / 'loss.png'})")


if __name__ == "__main__":
    main()

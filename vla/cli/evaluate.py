"""vla-eval checkpoint=runs/demo episodes=20 out=runs/demo/eval [tasks=[...]]

Evaluates a checkpoint in MuJoCo on seeds disjoint from its training seeds; writes results.json, a bar
chart and one video per task."""

from vla.cli.config import load, print_usage, usage_requested
from vla.evaluate import EvalConfig, evaluate_checkpoint


def main() -> None:
    if usage_requested():
        return print_usage("eval", __doc__)
    evaluate_checkpoint(load("eval", EvalConfig))


if __name__ == "__main__":
    main()

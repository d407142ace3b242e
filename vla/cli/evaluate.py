"""vla-eval checkpoint=runs/demo episodes=20 out=runs/demo/eval [tasks=[...]]

Evaluates a checkpoint in MuJoCo on seeds disjoint from its training seeds; writes results.json, a bar
chart and one video per task."""

from vla.cli.config import UsageError, cli_main, load, print_usage, require_path, require_tasks, usage_requested
from vla.evaluate import evaluate_checkpoint, load_for_evaluation


def _main() -> None:
    if usage_requested():
        return print_usage("eval", __doc__)
    cfg = load("eval")
    require_path(cfg.checkpoint, "checkpoint")
    require_tasks(cfg.tasks)
    try:
        loaded = load_for_evaluation(cfg)
    except ValueError as e:  # CheckpointError included: a directory that is not a checkpoint is the user's mistake
        raise UsageError(str(e)) from None
    evaluate_checkpoint(cfg, loaded)


def main() -> None:
    cli_main("vla-eval", _main)


if __name__ == "__main__":
    main()

"""vla-record tasks=[drawer-close-v3,door-open-v3] episodes=30 out=data/demos.zarr

Runs each task's scripted expert until it has `episodes` successful demonstrations (at most `max_attempts`
seeds) and appends them to the zarr episode store at `out` (created if missing; a re-run resumes). Tasks may
be named by group: mt10, mt50, easy, medium, hard, very_hard, or a whole suite (metaworld). `cameras` picks
the cameras (Meta-World: any of corner2, gripperPOV, behindGripper, topview, corner, corner3; default corner2).
`action_noise=0.2` records DART demonstrations; `start_noise=0.1` draws Meta-World's hand start per episode
within +-0.1 m of its fixed one; `after_success=10` records 10 more steps of each episode after its first success.
"""

from vla.cli.config import UsageError, cli_main, load, print_usage, require_cameras, require_tasks, usage_requested
from vla.record import check_resumable, print_report, record


def _main() -> None:
    if usage_requested():
        return print_usage("record", __doc__)
    cfg = load("record")
    require_tasks(cfg.tasks)
    require_cameras(cfg.tasks, cfg.cameras)
    try:
        check_resumable(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print_report(record(cfg))


def main() -> None:
    cli_main("vla-record", _main)


if __name__ == "__main__":
    main()

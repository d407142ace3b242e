"""vla-record tasks=[drawer-close-v3,door-open-v3] episodes=30 out=data/demos.zarr

Runs each task's scripted expert until it has `episodes` successful demonstrations (at most `max_attempts`
seeds) and appends them to the zarr episode store at `out` (created if missing; a re-run resumes). Tasks may
be named by group: mt10, mt50, easy, medium, hard, very_hard, or a whole suite (metaworld)."""

from vla.cli.config import load, print_usage, usage_requested
from vla.record import RecordConfig, print_report, record


def main() -> None:
    if usage_requested():
        return print_usage("record", __doc__)
    print_report(record(load("record", RecordConfig)))


if __name__ == "__main__":
    main()

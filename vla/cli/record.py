"""vla-record tasks=[drawer-close-v3,door-open-v3] episodes=30 out=data/demos.zarr

Runs the scripted expert of each task for `episodes` seeded attempts, keeps the successful ones and
appends them to the zarr episode store at `out` (created if missing)."""

from rich import print as rprint

from vla.cli.config import load, print_usage, usage_requested
from vla.record import RecordConfig, record


def main() -> None:
    if usage_requested():
        return print_usage("record", __doc__)
    report = record(load("record", RecordConfig))
    for task, r in report["tasks"].items():
        rprint(f"{task}: kept {r['kept']}, failed {r['failed']}")
    rprint(f"{report['store']}: {report['episodes']} episodes, {report['frames']} frames")


if __name__ == "__main__":
    main()

"""How far one tabletop configuration moves between training seeds: several `benchmarks/tabletop.py` runs of the
same policy, data and schedule that differ only in `--set seed=K`, side by side.

    python benchmarks/tabletop_seeds.py --runs runs/s22/tabletop_fast runs/s22/tabletop_seed1 --out DIR

Each of --runs is a run's folder or the DIR/results.json it wrote (which keeps the run's settings and every
episode's success, so a run compares once only its results are kept, as in benchmarks/results).
It trains nothing: it reads each run's evaluation (RUN/eval/<task>.json, or RUN/eval-D/ with `--decoding D` where D is
not the run's own, with `-argmax3` added for `--argmax-dims 3` and `-ensemble` for `--chunking ensemble`) and its
final checkpoint's training config, refuses runs whose model or training settings differ in more than the seed (and
their own paths), and writes `DIR/results.json`: `{"decoding": str, "argmax_dims": [int], "chunking": str, "runs":
{run: {"seed": int, "splits": {split: float}, "per_skill": {split: {skill: float}}, "episodes": {split: int}}},
"splits": {split: {"mean": float, "min": float, "max": float, "runs": int}}}` and `DIR/seeds.png`. A split counts for
a run once every skill of it is evaluated, and every run is compared on the episodes all of them have (the first N
seeds of each task), so a run still evaluating can already be shown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages import checkpoint_settings, describe_decoding, eval_folder, fill_settings
from tabletop import SPLITS

from vla.envs import get_suite
from vla.envs.tabletop.env import parse_task
from vla.envs.tabletop.language import heldout_pair_names
from vla.model.vla_model import DECODING
from vla.runtime.chunking import LOCKSTEP_METHODS

OWN_PATHS = ("seed", "dataset", "out", "resume")  # what may differ between the runs compared
# what results.json files written before session 44 held out (they have no "heldout_pairs"): place held out the
# green and the yellow ball, since then the yellow ball and the orange cylinder (vla/envs/tabletop/language.py)
SPLIT_BEFORE_SESSION_44 = {**heldout_pair_names(), "place": ["green ball", "yellow ball"]}


def held_out(run: Path) -> dict[str, list[str]]:
    """skill -> the pairs a run's held-out compositions named: from its results.json (the run's folder's, or the file
    itself), as of before session 44 where that has none, and today's for a run whose results are not written yet."""
    results = run if run.is_file() else run / "results.json"
    if not results.is_file():
        return heldout_pair_names()
    return json.loads(results.read_text()).get("heldout_pairs", SPLIT_BEFORE_SESSION_44)


def settings(run: Path) -> tuple[dict, dict]:
    """-> (model config, training config) of a run's final checkpoint (stages.checkpoint_settings)."""
    from vla.train import latest_checkpoint

    checkpoint = latest_checkpoint(run / "train")
    if checkpoint is None:
        raise FileNotFoundError(f"{run}: no training checkpoint under train/checkpoints")
    both = checkpoint_settings(checkpoint)
    return both["model"], both["train"]


def by_split(successes: dict[str, list[bool]]) -> dict[str, dict[str, list[bool]]]:
    """split -> skill -> per-episode successes, for the splits whose every task is in `successes` (task -> ...)."""
    groups = get_suite("tabletop").groups()
    return {split: {parse_task(t)[0]: successes[t] for t in groups[group]}
            for split, group in SPLITS.items() if all(t in successes for t in groups[group])}


def evaluated(run: Path, own: dict, decoding: str | None = None, argmax_dims: list[int] | None = None,
              chunking: str = "naive") -> dict[str, dict[str, list[bool]]]:
    """by_split of a run's evaluations (with `decoding` and `argmax_dims` where they override the checkpoint's
    own: `tabletop.py --decoding --argmax-dims`)."""
    folder = eval_folder(run, own, decoding, argmax_dims, chunking)
    return by_split({f.stem: json.loads(f.read_text())["successes"] for f in folder.glob("tabletop-*.json")})


def load(run: Path, decoding: str | None = None, argmax_dims: list[int] | None = None,
         chunking: str = "naive") -> tuple[tuple[dict, dict], dict[str, dict[str, list[bool]]]]:
    """-> ((model config, training config), by_split successes) of a tabletop.py run: its folder, or the
    DIR/results.json it wrote, which keeps both (`settings`, `successes`), so a run still compares once its
    folder is gone and only its results are kept (benchmarks/results)."""
    if not run.is_file():
        own = settings(run)
        return own, evaluated(run, own[0], decoding, argmax_dims, chunking)
    results = json.loads(run.read_text())
    missing = [key for key in ("settings", "successes") if key not in results]
    if missing:
        raise ValueError(f"{run}: no {' or '.join(missing)} key (results written before tabletop.py kept them); "
                         "pass the run's folder instead")
    filled = fill_settings(results["settings"]["model"], results["settings"]["train"])  # fields added since
    model, train = filled["model"], filled["train"]
    asked = {"decoding": decoding or model["decoding"], "chunking": chunking,
             "argmax_dims": model["argmax_dims"] if argmax_dims is None else list(argmax_dims)}
    if any(results.get(key, "naive") != value for key, value in asked.items()):  # chunking: naive where it predates
        raise ValueError(f"{run} was evaluated with {describe_decoding(results)}, not {describe_decoding(asked)}")
    return (model, train), by_split(results["successes"])


def compare(runs: list[Path], decoding: str | None = None, argmax_dims: list[int] | None = None,
            chunking: str = "naive") -> dict:
    loaded = {str(r): load(r, decoding, argmax_dims, chunking) for r in runs}
    configs = {run: own for run, (own, _) in loaded.items()}
    model0, train0 = configs[str(runs[0])]
    pairs0 = held_out(runs[0])
    # training does not depend on the decoding: with one asked for, checkpoints saved with either compare
    same_weights = (("decoding",) if decoding else ()) + (("argmax_dims",) if argmax_dims is not None else ())
    for run in runs[1:]:
        model, train = configs[str(run)]
        # both filled to every field (settings), so the keys are the same
        differ = sorted({k for k in train if k not in OWN_PATHS and train[k] != train0[k]}
                        | {f"model.{k}" for k in model if k not in same_weights and model[k] != model0[k]})
        if differ:
            raise ValueError(f"{run} differs from {runs[0]} in more than the seed: {', '.join(differ)}")
        pairs = held_out(run)  # the same seeds name other pairs under another split
        if pairs != pairs0:
            raise ValueError(f"{run} was evaluated on other held-out pairs than {runs[0]}: {pairs} against {pairs0}")
    results = {run: successes for run, (_, successes) in loaded.items()}
    splits = [s for s in SPLITS if all(s in per for per in results.values())]
    # the episodes every run has, per task
    n = {s: min(len(v) for per in results.values() for v in per[s].values()) for s in splits}
    report = {"decoding": decoding or model0["decoding"],
              "argmax_dims": model0["argmax_dims"] if argmax_dims is None else argmax_dims, "chunking": chunking,
              "runs": {}, "splits": {}}
    for run, per in results.items():
        per_skill = {s: {skill: sum(v[: n[s]]) / n[s] for skill, v in per[s].items()} for s in splits}
        report["runs"][run] = {"seed": configs[run][1]["seed"], "per_skill": per_skill,
                               "splits": {s: sum(per_skill[s].values()) / len(per_skill[s]) for s in splits},
                               "episodes": {s: n[s] * len(per[s]) for s in splits}}
    for s in splits:
        values = [r["splits"][s] for r in report["runs"].values()]
        report["splits"][s] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values),
                               "runs": len(values)}
    return report


def plot(report: dict, path: Path) -> None:
    from vla.plots import plt

    splits = list(report["splits"])
    fig, ax = plt.subplots(figsize=(1.4 * len(splits) + 2, 3.5))
    ax.bar(range(len(splits)), [100 * report["splits"][s]["mean"] for s in splits], color="#cccccc", label="mean")
    for run in report["runs"].values():
        ax.plot(range(len(splits)), [100 * run["splits"][s] for s in splits], "o", label=f"seed {run['seed']}")
    ax.set_xticks(range(len(splits)), [s.replace("_", "\n") for s in splits], fontsize=8)
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    ax.set_title("tabletop: one configuration, several training seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--decoding", choices=DECODING, default=None,
                        help="read the evaluations `tabletop.py --decoding` wrote (default: the checkpoints' own)")
    parser.add_argument("--argmax-dims", type=int, nargs="*", default=None,
                        help="read the evaluations `tabletop.py --argmax-dims` wrote")
    parser.add_argument("--chunking", choices=LOCKSTEP_METHODS, default="naive",
                        help="read the evaluations `tabletop.py --chunking` wrote")
    args = parser.parse_args()
    try:
        report = compare(args.runs, args.decoding, args.argmax_dims, args.chunking)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    plot(report, args.out / "seeds.png")
    print(f"{'split':22}" + "".join(f"{'seed ' + str(r['seed']):>10}" for r in report["runs"].values())
          + f"{'mean':>8}{'range':>10}  episodes per run")
    for s, agg in report["splits"].items():
        cells = "".join(f"{100 * r['splits'][s]:>9.0f}%" for r in report["runs"].values())
        episodes = next(iter(report["runs"].values()))["episodes"][s]
        print(f"{s:22}{cells}{100 * agg['mean']:>7.0f}%{100 * (agg['max'] - agg['min']):>9.0f}pt  {episodes}")


if __name__ == "__main__":
    main()

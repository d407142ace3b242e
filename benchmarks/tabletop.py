"""Instruction following in one shared scene: the tabletop suite's splits and ablations for one policy.

    python benchmarks/tabletop.py --out runs/tabletop

1. record: `--demos` successful expert demonstrations per skill of the seen split, more of lift and place
   (`--skill-demos`), and of the variants naming the target by one attribute (`--attribute-demos`), into
   DIR/demos.zarr; each expert's own success rate is the `expert` row. `--action-noise
   STD` records DART demonstrations (the env runs the expert's action plus noise, the store keeps the expert's;
   `expert` is then the noisy one's rate).
2. train: one VLA on them, both cameras, `--steps` steps (DIR/train; resumes from its last checkpoint).
3. evaluate, on seeds disjoint from training (100000+), `--eval-episodes` episodes per skill of every split:
   - seen: target compositions and templates that training used, in new scenes;
   - heldout_compositions: targets whose color-shape pair, or whose skill-target pair, training never had;
   - heldout_paraphrases: seen targets described by a new sentence made of words training has;
   - heldout_words (beyond the issue's keys): the same, with a verb training never had;
   - blind: seen episodes with the instruction blanked (success still judged against their goal);
   - swapped: the seen episodes' scenes with an instruction naming another object, judged against it.
4. report: DIR/results.json (the issue's keys, plus per-skill rows, `acted_on`: per split the share of episodes
   whose hand acted on the named object, another or none, the acceptance checks and stage times)
   DIR/splits.png, and DIR/cameras.png (both cameras at the start of one episode of each skill).

Every scene holds two colors x two shapes, so only the whole instruction picks the target: `chance` is one in
the number of objects. Every stage resumes where it stopped: rerun the same command after an interruption.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
from stages import (EVAL_SEED, Progress, add_eval_options, checkpoint_settings, decoding_used, describe_decoding,
                    evaluate_stage, plot_cameras, record_stage, train_stage)

from vla.envs import get_suite
from vla.envs.tabletop.env import OUTCOMES, parse_task
from vla.envs.tabletop.language import ATTRIBUTE_VARIANTS, SKILLS, heldout_pair_names

SPLITS = {"seen": "tabletop-seen", "heldout_compositions": "tabletop-heldout-compositions",
          "heldout_paraphrases": "tabletop-heldout-paraphrases", "heldout_words": "tabletop-heldout-words",
          "blind": "tabletop-blind",
          "swapped": "tabletop-swapped"}
# The acceptance figures: a floor for each split, a ceiling for blind (chance + 10 points) and the most
# swapped may fall below seen.
FLOORS = {"seen": 0.95, "heldout_compositions": 0.80, "heldout_paraphrases": 0.85}
BLIND_MARGIN, SWAP_MARGIN = 0.10, 0.10
# The policy: the embedded model with an instruction-conditioned CNN for each camera, its keypoint head trained
# on episodes' first frames toward where they end and where the gripper first changes, and the FiLM's bigrams
# left out of half the instructions (README, tabletop). The images in memory: two cameras of 1600 demos are 6 to
# 7 GB, over the trainer's default 4 GB; read per batch from the store, training ran 12 samples/s against 26 in
# memory (session 19, its first 100 steps, both beside a recording). It decodes autoregressively: training is the
# same either way, and over three training seeds autoregressive decoding scored 90% on seen against 84% in parallel,
# where lift's grasps had failed on a gripper command that flipped between open and closed (README, tabletop).
# Its gripper is decoded by its likeliest bin, the other dimensions by expected value: training is the same
# either way, and on the three checkpoints measured with and without it (sessions 33 and 34) it raised seen in all
# three one token at a time (82 to 95%, 68 to 83%, 85 to 92%), lift and place above all.
POLICY = ["model.backbone.connector=film_cnn", "model.final_state_weight=10.0",
          "model.backbone.film_bigram_dropout=0.5", "model.final_state_keyframe=true",
          "model.decoding=autoregressive", "model.argmax_dims=[3]", "max_memory_gb=12"]


def summarize(args, record_report: dict, per_task: dict[str, dict], progress: Progress, checkpoint: Path) -> dict:
    suite = get_suite("tabletop")
    groups = suite.groups()
    # per skill; a training variant's (--attribute-demos) as skill-variant
    expert = {"-".join(p for p in parse_task(t) if p != "seen"): r["expert_success"]
              for t, r in record_report["tasks"].items()}
    splits, episodes, per_skill, acted_on = {}, {}, {}, {}
    for split, group in SPLITS.items():
        successes = [s for t in groups[group] for s in per_task[t]["successes"]]
        splits[split], episodes[split] = float(np.mean(successes)), len(successes)
        per_skill[split] = {parse_task(t)[0]: per_task[t]["success_rate"] for t in groups[group]}
        # which object the hand acted on (the env's info["outcome"]); absent from results saved before it existed
        if all("outcomes" in per_task[t] for t in groups[group]):
            acted_on[split] = {o: float(np.mean([per_task[t]["outcomes"].get(o, 0.0) for t in groups[group]]))
                               for o in OUTCOMES}
    chance = suite.chance
    checks = {f"{s} >= {f:.0%}": splits[s] >= f for s, f in FLOORS.items()}
    checks[f"blind <= chance + {BLIND_MARGIN:.0%}"] = splits["blind"] <= chance + BLIND_MARGIN
    checks[f"swapped within {SWAP_MARGIN:.0%} of seen"] = splits["swapped"] >= splits["seen"] - SWAP_MARGIN
    # with DART the recorded rates are the noisy expert's, whose misses are the noise's (the clean expert's: README)
    noisy = f" (the expert with DART noise {args.action_noise})" if args.action_noise else ""
    checks[f"experts >= 98%{noisy}"] = all(v >= 0.98 for v in expert.values())
    checks[">= 50 episodes per split"] = all(n >= 50 for n in episodes.values())
    decoding, argmax_dims = decoding_used(checkpoint, args.decoding, args.argmax_dims)
    return {"expert": expert, "splits": splits, "episodes": episodes, "chance": chance,
            "train_s": progress.data["stage_s"].get("train", 0.0), "per_skill": per_skill, "acted_on": acted_on,
            "checks": checks,
            "demos_per_skill": args.demos_per_skill, "attribute_demos": args.attribute_tasks,
            "train_steps": args.steps, "eval_seed": EVAL_SEED,
            "decoding": decoding, "argmax_dims": argmax_dims, "chunking": args.chunking,
            # with DART noise, `expert` is the noisy expert's success (the clean one's is 100%, README)
            "action_noise": args.action_noise,
            "stage_s": progress.data["stage_s"], "wall_s": progress.wall_s,
            # enough for tabletop_seeds.py to compare this run with others once its folder is gone
            "settings": checkpoint_settings(checkpoint), "heldout_pairs": heldout_pair_names(),
            "successes": {task: r["successes"] for task, r in per_task.items()}}


def print_tables(results: dict) -> None:
    print(f"\n{'split':<22}" + "".join(f"{s:>8}" for s in SKILLS) + f"{'all':>8}{'episodes':>10}")
    for split, value in results["splits"].items():
        cells = "".join(f"{results['per_skill'][split][s]:>8.0%}" for s in SKILLS)
        print(f"{split:<22}{cells}{value:>8.0%}{results['episodes'][split]:>10}")
    print(f"{'expert':<22}" + "".join(f"{results['expert'][s]:>8.0%}" for s in SKILLS))
    if results["acted_on"]:
        print(f"\n{'acted on (all skills)':<22}" + "".join(f"{o.split()[0]:>8}" for o in OUTCOMES))
        for split, rates in results["acted_on"].items():
            print(f"{split:<22}" + "".join(f"{rates[o]:>8.0%}" for o in OUTCOMES))
    print(f"chance {results['chance']:.0%}; training {results['train_s'] / 60:.1f} min "
          f"({results['train_steps']} steps on demonstrations per skill: "
          + ", ".join(f"{skill} {n}" for skill, n in results["demos_per_skill"].items()) + "); "
          + describe_decoding(results))
    for check, ok in results["checks"].items():
        print(f"  [{'met' if ok else 'NOT met'}] {check}")


def plot(results: dict, path: Path) -> None:
    from vla.plots import plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(results["splits"])
    ax.bar(names, [100 * results["splits"][n] for n in names], color="tab:blue")
    ax.axhline(100 * results["chance"], color="gray", linestyle="--", label="chance (1 / objects)")
    for i, n in enumerate(names):
        ax.text(i, 100 * results["splits"][n] + 1, f"{results['splits'][n]:.0%}", ha="center")
    ax.set(ylabel="success %", ylim=(0, 105), title="tabletop: one policy, instruction-only grounding")
    ax.tick_params(axis="x", labelsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--demos", type=int, default=400, help="successful demonstrations per skill")
    # 600 lift and place: their misses were most of the default's with 400 of each, and two training seeds on 600
    # of each scored seen 95% and 98%, held-out compositions 77% and 67%, against 92%, 83%, 68% and 63% for the same
    # seeds on 400 (README, tabletop; sessions 39 and 40). Recording them took 7.6 min more (session 39); training
    # is the same 10,000 steps.
    parser.add_argument("--skill-demos", nargs="*", default=["lift=600", "place=600"], metavar="SKILL=N",
                        help="more (or fewer) demonstrations of these skills than --demos (default: %(default)s; "
                             "none listed: --demos of every skill)")
    parser.add_argument("--attribute-demos", nargs="*", default=[], metavar="VARIANT=N",
                        help="also N demonstrations per skill of a training variant that names the target by one "
                             "attribute: by-shape=N, by-color=N (default: none)")
    # 10,000 steps: 47.8 and 53.5 min alone on this 2-core machine (the issue allows 60). At 5200 the runs were
    # still learning when the schedule ended, and the three seeds' mean was 12 to 14 points lower (README, tabletop)
    parser.add_argument("--steps", type=int, default=10_000, help="training steps (batch 32)")
    parser.add_argument("--save-every", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=20, help="per skill and split (4 skills per split)")
    parser.add_argument("--max-episode-steps", type=int, default=None, help="default: the suite's (200)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--action-noise", type=float, default=0.0,
                        help="DART: std of the noise on the expert's executed actions while recording (0: clean)")
    add_eval_options(parser)
    parser.add_argument("--set", nargs="*", default=[],
                        help=f"vla-train overrides, after the policy's own ({' '.join(POLICY)}), so they win")
    args = parser.parse_args()
    if args.action_noise < 0:
        parser.error(f"--action-noise must be >= 0, got {args.action_noise}")
    try:
        args.demos_per_skill = demos_per_skill(args.demos, args.skill_demos)
        args.attribute_tasks = attribute_tasks(args.attribute_demos)
    except ValueError as e:
        parser.error(str(e))
    return args


def demos_per_skill(demos: int, overrides: list[str]) -> dict[str, int]:
    """--demos for every skill, then --skill-demos' SKILL=N for those it names."""
    counts = dict.fromkeys(SKILLS, demos)
    for item in overrides:
        skill, _, n = item.partition("=")
        if skill not in SKILLS or not n.isdigit() or int(n) < 1:
            raise ValueError(f"--skill-demos takes SKILL=N, SKILL one of {', '.join(SKILLS)} and N >= 1; got {item!r}")
        counts[skill] = int(n)
    return counts


def attribute_tasks(items: list[str]) -> dict[str, int]:
    """--attribute-demos' VARIANT=N -> {task: N} for every skill's task of that variant."""
    counts = {}
    for item in items:
        variant, _, n = item.partition("=")
        if variant not in ATTRIBUTE_VARIANTS or not n.isdigit() or int(n) < 1:
            raise ValueError(f"--attribute-demos takes VARIANT=N, VARIANT one of {', '.join(ATTRIBUTE_VARIANTS)} and "
                             f"N >= 1; got {item!r}")
        counts |= {f"tabletop-{skill}-{variant}": int(n) for skill in SKILLS}
    return counts


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    progress = Progress(args.out)
    groups = get_suite("tabletop").groups()
    store, report = record_stage(args.out, groups["tabletop"] + list(args.attribute_tasks), args.demos,
                                 args.image_size, progress, action_noise=args.action_noise,
                                 demos_for={f"tabletop-{k}": n for k, n in args.demos_per_skill.items()}
                                 | args.attribute_tasks)
    checkpoint = train_stage(args.out, store, args.steps, args.save_every, POLICY + args.set, progress)
    tasks = [t for group in SPLITS.values() for t in groups[group]]
    per_task = evaluate_stage(args.out, checkpoint, tasks, args.eval_episodes, args.max_episode_steps, progress,
                              args.decoding, args.argmax_dims, args.chunking, args.eval_workers)
    results = summarize(args, report, per_task, progress, checkpoint)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "splits.png")
    plot_cameras(args.out / "cameras.png", [f"tabletop-{skill}" for skill in SKILLS], args.image_size)
    print_tables(results)


if __name__ == "__main__":
    main()

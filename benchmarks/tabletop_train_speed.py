"""Training steps/s of the tabletop benchmark's policy (benchmarks/tabletop.py's POLICY, compiled as any run of
1000 steps or more is): as it trained before session 37 against now, each lever added in turn, in one run on the
same demonstrations, seeds and batches.

    python benchmarks/tabletop_train_speed.py --out runs/tabletop_train_speed [--steps 100] [--demos 20] [--rounds 3]

- before: the FiLM CNNs eager (only the language model compiled) and glibc's malloc as it comes;
- + compiled FiLM CNNs: `EmbeddedBackbone.compiled_parts` includes them;
- + freed memory kept (now): `vla.cpu_memory.keep_freed_memory` at the start of CPU training.

The "before" rows run the trainer with today's code with those two undone in its process (the first two lines of
`BEFORE`), so nothing else differs. Rounds are interleaved and each row's rate is the median of its rounds, as in
benchmarks/train_speed.py (a shared 2-core machine drifts). Nothing else may run on the machine while it measures.
The demonstrations are `--demos` expert episodes per tabletop skill (DIR/demos.zarr, recorded once, then reused).

Writes DIR/results.json ({"configs": {name: {"samples_per_s", "s_per_step", "loss_at_equal_samples", ...}},
"speedup": now over before}) and DIR/tabletop_train_speed.png.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from tabletop import POLICY
from train_speed import BATCH_SIZE, check_rounds, measure, median_of_rounds, record_demos, save

# Python run by each row's trainer process before vla-train's main: what that row leaves as it was.
EAGER_CNNS = ("from vla.model.families.embedded import EmbeddedBackbone\n"
              "EmbeddedBackbone.compiled_parts = lambda self: [self.model.model]\n")
GLIBC_DEFAULTS = "import vla.train\nvla.train.keep_freed_memory = lambda: False\n"
BEFORE = "before (CNNs eager, glibc malloc as it comes)"
NOW = "+ freed memory kept (now)"
CONFIGS = {BEFORE: EAGER_CNNS + GLIBC_DEFAULTS, "+ compiled FiLM CNNs": GLIBC_DEFAULTS, NOW: ""}
TRAINER = "{}import sys\nfrom vla.cli.train import main\nsys.argv[0] = 'vla-train'\nmain()\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/tabletop_train_speed"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20, help="steps before the clock starts (compilation included)")
    parser.add_argument("--demos", type=int, default=20, help="expert demonstrations per tabletop skill")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of every configuration, interleaved; the median counts")
    args = parser.parse_args()
    check_rounds(parser, args)
    store = record_demos(args.out, args.demos, "tabletop")
    overrides = [*POLICY, "compile=true"]
    rounds = []
    for r in range(args.rounds):
        rounds.append({name: measure(store, args.out / f"run{i}", overrides, args.steps, args.warmup,
                                     ("-c", TRAINER.format(setup))) for i, (name, setup) in enumerate(CONFIGS.items())})
        print(f"round {r + 1}: " + ", ".join(f"{row['samples_per_s']:.1f}" for row in rounds[-1].values()), flush=True)
    configs = {name: {**row, "s_per_step": BATCH_SIZE / row["samples_per_s"]}
               for name, row in median_of_rounds(rounds).items()}
    results = {"configs": configs, "speedup": configs[NOW]["samples_per_s"] / configs[BEFORE]["samples_per_s"],
               "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds, "batch_size": BATCH_SIZE,
               "dataset": str(store), "policy": overrides}
    print(f"\n{'configuration':<48} {'samples/s':>10} {'s/step':>7} {'x before':>9} {'loss at equal samples':>22}")
    for name, row in configs.items():
        print(f"{name:<48} {row['samples_per_s']:>10.1f} {row['s_per_step']:>7.3f} "
              f"{row['samples_per_s'] / configs[BEFORE]['samples_per_s']:>9.2f} {row['loss_at_equal_samples']:>22.4f}")
    save(results, args.out, "tabletop_train_speed.png")


if __name__ == "__main__":
    main()

"""Training steps/s of the tabletop benchmark's policy (benchmarks/tabletop.py's POLICY, compiled as any run of
1000 steps or more is): as it trained before session 37 against now, each lever added in turn, and the levers
that would make its step cheaper by training something else, in one run on the same demonstrations, seeds and
batches.

    python benchmarks/tabletop_train_speed.py --out runs/tabletop_train_speed [--steps 100] [--demos 20] [--rounds 3]
        [--rows before compiled kept now head16 width24 head16_width24]

- before: the FiLM CNNs eager (only the language model compiled) and glibc's malloc as it comes;
- compiled: + compiled FiLM CNNs (`EmbeddedBackbone.compiled_parts` includes them);
- kept: + freed memory kept (`vla.cpu_memory.keep_freed_memory` at the start of CPU training);
- now: + the CNNs compiled for any batch size (`embedded.mark_batch_dynamic`), not specialized to 32;
- head16, width24, head16_width24: now, with the keypoint head's first frames 16 a step instead of the batch's 32
  (`model.final_state_batch=16`) and/or each FiLM CNN 24 channels wide instead of 32
  (`model.backbone.film_cnn_width=24`). These train a different model: their success is the tabletop benchmark's
  to measure, not this script's.

The rows before "now" run the trainer with today's code with the later levers undone in its process (the setup
code of `ROWS`), so nothing else differs. Rounds are interleaved and each row's rate is the median of its rounds, as in
benchmarks/train_speed.py (a shared 2-core machine drifts). Nothing else may run on the machine while it measures.
The demonstrations are `--demos` expert episodes per tabletop skill (DIR/demos.zarr, recorded once, then reused).

Writes DIR/results.json ({"configs": {name: {"samples_per_s", "s_per_step", "loss_at_equal_samples", ...}},
"speedup": now over before, where both were measured}) and DIR/tabletop_train_speed.png.
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
STATIC_CNNS = "from vla.model.families import embedded\nembedded.mark_batch_dynamic = lambda *tensors: None\n"
HEAD16, WIDTH24 = ["model.final_state_batch=16"], ["model.backbone.film_cnn_width=24"]
# --rows key: (name, setup code, vla-train overrides beyond the policy's)
ROWS = {"before": ("before (CNNs eager, glibc malloc as it comes)", EAGER_CNNS + GLIBC_DEFAULTS + STATIC_CNNS, []),
        "compiled": ("+ compiled FiLM CNNs", GLIBC_DEFAULTS + STATIC_CNNS, []),
        "kept": ("+ freed memory kept", STATIC_CNNS, []),
        "now": ("+ the CNNs' batch dynamic (now)", "", []),
        "head16": ("now, head on 16 first frames a step", "", HEAD16),
        "width24": ("now, CNNs 24 channels wide", "", WIDTH24),
        "head16_width24": ("now, both", "", HEAD16 + WIDTH24)}
TRAINER = "{}import sys\nfrom vla.cli.train import main\nsys.argv[0] = 'vla-train'\nmain()\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/tabletop_train_speed"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20, help="steps before the clock starts (compilation included)")
    parser.add_argument("--demos", type=int, default=20, help="expert demonstrations per tabletop skill")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of every configuration, interleaved; the median counts")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS),
                        help="which configurations to measure, the first the one the others are compared with")
    args = parser.parse_args()
    check_rounds(parser, args)
    store = record_demos(args.out, args.demos, "tabletop")
    overrides = [*POLICY, "compile=true"]
    rows = {ROWS[key][0]: ROWS[key][1:] for key in dict.fromkeys(args.rows)}
    rounds = []
    for r in range(args.rounds):
        rounds.append({name: measure(store, args.out / f"run{i}", overrides + extra, args.steps, args.warmup,
                                     ("-c", TRAINER.format(setup)))
                       for i, (name, (setup, extra)) in enumerate(rows.items())})
        print(f"round {r + 1}: " + ", ".join(f"{row['samples_per_s']:.1f}" for row in rounds[-1].values()), flush=True)
    configs = {name: {**row, "s_per_step": BATCH_SIZE / row["samples_per_s"]}
               for name, row in median_of_rounds(rounds).items()}
    first = next(iter(configs))
    results = {"configs": configs, "compared_with": first, "steps": args.steps, "warmup": args.warmup,
               "rounds": args.rounds, "batch_size": BATCH_SIZE, "dataset": str(store), "policy": overrides}
    before, now = ROWS["before"][0], ROWS["now"][0]
    if before in configs and now in configs:
        results["speedup"] = configs[now]["samples_per_s"] / configs[before]["samples_per_s"]
    print(f"\n{'configuration':<48} {'samples/s':>10} {'s/step':>7} {'x first':>8} {'loss at equal samples':>22}")
    for name, row in configs.items():
        print(f"{name:<48} {row['samples_per_s']:>10.1f} {row['s_per_step']:>7.3f} "
              f"{row['samples_per_s'] / configs[first]['samples_per_s']:>8.2f} {row['loss_at_equal_samples']:>22.4f}")
    save(results, args.out, "tabletop_train_speed.png")


if __name__ == "__main__":
    main()

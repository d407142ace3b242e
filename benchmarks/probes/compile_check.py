"""Does `torch.compile` pay on this CPU? The embedded default and the Meta-World benchmark's configuration (its
final-state head on the image tokens), each trained with compile=true and compile=false on the same batches, in
interleaved rounds (session 57: on a 2-core AVX2 CPU without bf16, train_speed.py's compile row was slower than
eager, where on the AVX512-BF16 machine it had been 1.28x faster).

    python benchmarks/probes/compile_check.py OUT_DIR [--steps 200] [--warmup 20] [--rounds 2]

Reuses train_speed.py's store (5 expert demonstrations per MT10 task) and its `measure`; samples/s is counted
after `--warmup` steps, so compilation is left out. Nothing else may run on the machine while it measures.
Writes OUT_DIR/results.json (session 57's: `benchmarks/results/compile_check_avx2.json`): {config: {"compile":
{"samples_per_s", "rounds_samples_per_s", "loss_at_equal_samples", "warmup_s"}, "eager": {...},
"compiled_over_eager": float}}."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metaworld_mt import TRAIN_OVERRIDES
from train_speed import measure, median_of_rounds, record_demos

CONFIGS = {"embedded default": [], "metaworld_mt.py (final-state head)": TRAIN_OVERRIDES}
MODES = {"compile": "compile=true", "eager": "compile=false"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = record_demos(args.out, 5)
    rounds = []
    for r in range(args.rounds):  # interleaved: a drift of the machine's speed falls on every row alike
        rounds.append({f"{name} | {mode}": measure(store, args.out / f"run{r}", [*overrides, flag], args.steps,
                                                   args.warmup)
                       for name, overrides in CONFIGS.items() for mode, flag in MODES.items()})
    rows = median_of_rounds(rounds)
    results = {}
    for name in CONFIGS:
        modes = {mode: {k: rows[f"{name} | {mode}"][k] for k in
                        ("samples_per_s", "rounds_samples_per_s", "loss_at_equal_samples", "warmup_s")}
                 for mode in MODES}
        compiled, eager = modes["compile"], modes["eager"]
        results[name] = {**modes, "compiled_over_eager": compiled["samples_per_s"] / eager["samples_per_s"]}
        print(f"{name:38s} compiled {compiled['samples_per_s']:6.1f}  eager {eager['samples_per_s']:6.1f} samples/s"
              f"  ratio {results[name]['compiled_over_eager']:.2f}  (loss {compiled['loss_at_equal_samples']:.4f}"
              f" / {eager['loss_at_equal_samples']:.4f})")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""A tabletop policy with its FiLM reading unigrams only at inference (its bigrams all left out, as bigram dropout
leaves them out of half the training instructions), evaluated on the benchmark's episodes (seeds 100000+).

A held-out pair's instruction has every bigram but the pair's, a condition per-instruction bigram dropout never
trains. Read with no bigrams instead, it is the condition half the training instructions had. If held-out
compositions score the same either way, the bigrams a held-out instruction keeps are not what misleads it; if
seen pairs still score as with bigrams, the unigrams alone find every seen pair, and what a held-out pair lacks is
not the bigram but something only training on it gives.

Usage: unigrams_only.py CHECKPOINT OUT_DIR [SPLIT] [SKILLS]   (SPLIT: seen, heldout-compositions, ...; SKILLS
comma-separated, all four by default). Each task's result is saved to OUT_DIR/<task>.json as it finishes, and a
rerun skips it. The checkpoint's own decoding; 15 episodes per skill.
"""
import sys
from pathlib import Path

from tabletop_cells import evaluate_cells, load

from vla.envs.tabletop.language import SKILLS

checkpoint, out = sys.argv[1], Path(sys.argv[2])
split = sys.argv[3] if len(sys.argv) > 3 else "heldout-compositions"
skills = sys.argv[4].split(",") if len(sys.argv) > 4 else list(SKILLS)
policy = load(checkpoint)
policy.model.backbone.film.bigram_dropout = 1.0  # InstructionFiLM: unigrams only, at inference too
evaluate_cells(policy, out, split, skills)

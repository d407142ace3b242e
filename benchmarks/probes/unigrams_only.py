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
import json
import sys
from pathlib import Path

from vla.envs.tabletop.language import SKILLS
from vla.evaluate import DEFAULT_EVAL_SEED, evaluate_policy, override_decoding
from vla.policies.registry import load_policy
from vla.runtime.chunking import lockstep

checkpoint, out = sys.argv[1], Path(sys.argv[2])
split = sys.argv[3] if len(sys.argv) > 3 else "heldout-compositions"
skills = sys.argv[4].split(",") if len(sys.argv) > 4 else list(SKILLS)
policy = lockstep(override_decoding(load_policy(checkpoint), None, source=checkpoint), "naive")
policy.model.backbone.film.bigram_dropout = 1.0  # InstructionFiLM: unigrams only, at inference too
out.mkdir(parents=True, exist_ok=True)
for skill in skills:
    task = f"tabletop-{skill}" + ("" if split == "seen" else f"-{split}")
    path = out / f"{task}.json"
    if not path.is_file():
        result = evaluate_policy(policy, [task], 15, DEFAULT_EVAL_SEED, None, 15, policy.schema, out=None, video=False)
        path.write_text(json.dumps(result["tasks"][task]))
    result = json.loads(path.read_text())
    outcomes = ", ".join(f"{k} {v:.0%}" for k, v in result.get("outcomes", {}).items())
    print(f"{task}: {result['success_rate']:.0%} {outcomes}")

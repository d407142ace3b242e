"""What the inference-time probes share (unigrams_only.py, sharpen_keypoints.py): a checkpoint loaded with its own
decoding, and the benchmark's episodes of one split for some skills, 15 per skill on seeds 100000+, each task's result
saved to OUT_DIR/<task>.json as it finishes so that a rerun skips it."""
import json
from pathlib import Path

from vla.evaluate import DEFAULT_EVAL_SEED, evaluate_policy, override_decoding
from vla.policies.registry import load_policy
from vla.runtime.chunking import lockstep


def load(checkpoint: str):
    return lockstep(override_decoding(load_policy(checkpoint), None, source=checkpoint), "naive")


def evaluate_cells(policy, out: Path, split: str, skills: list[str]) -> None:
    """Evaluates and prints each skill's task of `split` (seen, heldout-compositions, ...)."""
    out.mkdir(parents=True, exist_ok=True)
    for skill in skills:
        task = f"tabletop-{skill}" + ("" if split == "seen" else f"-{split}")
        path = out / f"{task}.json"
        if not path.is_file():
            result = evaluate_policy(policy, [task], 15, DEFAULT_EVAL_SEED, None, 15, policy.schema, out=None,
                                     video=False)
            path.write_text(json.dumps(result["tasks"][task]))
        result = json.loads(path.read_text())
        outcomes = ", ".join(f"{k} {v:.0%}" for k, v in result.get("outcomes", {}).items())
        print(f"{task}: {result['success_rate']:.0%} {outcomes}")

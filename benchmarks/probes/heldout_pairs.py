"""Which held-out pairs a tabletop run's closed loop succeeds on, from its saved evaluations (nothing is simulated).

Each held-out-composition episode's goal is rebuilt from its seed (`sample_episode`, EVAL_SEED + i, as
evaluation drew it) and its success counted by the kind of pair held out: one no training scene shows
("everywhere") or one only this skill never had as its target ("this skill"; other skills train it as a target,
and this skill's training scenes show it as a distractor). If a skill fails both kinds alike, what it misses is
not learned avoidance of a distractor.

Usage: heldout_pairs.py EVAL_DIR...   (a run's eval/ or eval-<decoding>/ folder)

Evaluations written since session 45 keep which object each episode's hand acted on; for those, the counts of
each outcome are printed beside the successes.

The goals are rebuilt by today's splits, so a run whose results.json names other held-out pairs, or none (written
before session 44, when place held out other pairs), is refused: read it at a commit of its split.
"""
import json
import sys
from collections import Counter
from pathlib import Path

from vla.envs.tabletop.env import OUTCOMES, sample_episode
from vla.envs.tabletop.language import HELDOUT_PAIRS, SKILLS, heldout_pair_names
from vla.evaluate import DEFAULT_EVAL_SEED as EVAL_SEED

totals: dict[str, Counter] = {skill: Counter() for skill in SKILLS}
for folder in map(Path, sys.argv[1:]):
    written = folder.parent / "results.json"
    if written.is_file() and json.loads(written.read_text()).get("heldout_pairs") != heldout_pair_names():
        sys.exit(f"{written} was evaluated on other held-out pairs than today's (none named: before session 44)")
    for skill in SKILLS:
        path = folder / f"tabletop-{skill}-heldout-compositions.json"
        if not path.is_file():
            sys.exit(f"{path} is missing: evaluate the run's heldout-compositions split first")
        result = json.loads(path.read_text())
        acted_on = result.get("episode_outcomes", [None] * len(result["successes"]))  # saved since session 45
        for i, (success, outcome) in enumerate(zip(result["successes"], acted_on, strict=True)):
            _, goal = sample_episode(skill, "heldout-compositions", EVAL_SEED + i)
            kind = "everywhere" if (goal.color, goal.shape) in HELDOUT_PAIRS else "this skill"
            totals[skill][kind, "n"] += 1
            totals[skill][kind, "ok"] += bool(success)
            totals[skill][kind, outcome] += outcome is not None
for skill, count in totals.items():
    print(f"{skill:6s} " + ", ".join(
        f"held out {k}: {count[k, 'ok']} of {count[k, 'n']}"
        + (" (acted on " + ", ".join(f"{o} {count[k, o]}" for o in OUTCOMES) + ")"
           if any(count[k, o] for o in OUTCOMES) else "")
        for k in ("everywhere", "this skill")))

"""Would choosing a tabletop run's checkpoint, or averaging its last ones, close the spread between training seeds?

Each checkpoint a run saved (every 1000 steps), and the uniform average of the weights of its last K, on seen
episodes of every skill from seeds 300000+, outside training (small seeds) and evaluation (100000+). Each result is
appended to OUT as a JSON line as it finishes, and a rerun skips those already there.

Usage: checkpoint_select.py RUN_DIR EPISODES_PER_SKILL OUT.jsonl [average=K]
"""
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vla.envs import get_suite
from vla.evaluate import evaluate_policy
from vla.policies.registry import load_policy

SEED = 300_000
run, episodes, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
average = int(dict(a.split("=") for a in sys.argv[4:]).get("average", 3))
checkpoints = sorted((run / "train" / "checkpoints").glob("step_*"))
step = [int(f.name[5:]) for f in checkpoints]  # the final one (5200) is kept, the 5000 just before it is not
checkpoints = [f for f, s, s_next in zip(checkpoints, step, [*step[1:], None]) if s_next is None or s_next - s > 500]


def averaged(folders: list[Path]) -> Path:
    """A checkpoint folder whose weights are the mean of `folders`' (the last one's config and tokenizers)."""
    target = run / "train" / f"average_{'_'.join(f.name[5:] for f in folders)}"
    if not (target / "model.safetensors").is_file():
        shutil.copytree(folders[-1], target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("optimizer.safetensors", "trainer_state.json"))
        weights = [load_file(f / "model.safetensors") for f in folders]
        mean = {k: (sum(w[k].double() for w in weights) / len(weights)).to(v.dtype) if v.is_floating_point() else v
                for k, v in weights[-1].items()}
        save_file(mean, target / "model.safetensors", metadata={"format": "pt"})
    return target


done = {json.loads(line)["checkpoint"] for line in out.read_text().splitlines()} if out.is_file() else set()
tasks = get_suite("tabletop").groups()["tabletop"]
for folder in [*checkpoints, averaged(checkpoints[-average:])]:
    if folder.name in done:
        continue
    torch.manual_seed(0)
    policy = load_policy(folder)
    r = evaluate_policy(policy, tasks, episodes, SEED, None, episodes, policy.schema, out=None, video=False)
    row = {"run": str(run), "checkpoint": folder.name, "episodes_per_skill": episodes, "seed": SEED,
           "seen": sum(t["success_rate"] for t in r["tasks"].values()) / len(tasks),
           "per_skill": {t: v["success_rate"] for t, v in r["tasks"].items()}}
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)

"""Where do Meta-World's scripted experts leave the carried object against the goal? Each task's expert as recorded
(`vla.envs.metaworld.expert`) and the same expert aiming the hand at the goal (Meta-World's own, the default
until session 56), on the same seeds: whether it succeeds within the 500-step limit, the step of its first
success (where a recorded demonstration ends), and the object's distance to the goal after it goes on for
`--after` more steps (where its plan was heading). Simulator state only; no policy. The distance is the one
Meta-World judges the task's success by (`MetaWorldEnv.object_to_goal`: for peg-insert-side the peg's head, y and z
doubled). A task whose recorded expert is Meta-World's own runs once (`as_recorded`).

    python benchmarks/probes/expert_settle.py pick-place-v3 pick-place-wall-v3 --seeds 20 --out OUT.json
"""
import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

import vla.envs.metaworld.expert as experts
from vla.envs import get_suite


def run(task: str, seed: int, after: int) -> dict:
    suite = get_suite("metaworld")
    env = suite.make_env(task, suite.default_schema(32), 500)
    expert, sim = suite.make_expert(env), env.unwrapped
    env.reset(seed=seed)
    first, distance = None, []
    for step in range(500):
        _, _, _, truncated, info = env.step(expert.select_action({})[0])  # run on past success (terminated)
        distance.append(sim.object_to_goal())
        if info["is_success"] and first is None:
            first = step
        if truncated or (first is not None and step >= first + after):
            break
    env.close()
    return {"success": first is not None, "first_success_step": first,
            "end_cm": round(100 * distance[-1], 2), "closest_cm": round(100 * min(distance), 2)}


def summarize(rows: list[dict]) -> dict:
    done = [r for r in rows if r["success"]]
    return {"success": len(done) / len(rows),
            "first_success_step_median": float(np.median([r["first_success_step"] for r in done])) if done else None,
            "end_cm_median": float(np.median([r["end_cm"] for r in done])) if done else None,
            "end_cm_range": [min(r["end_cm"] for r in done), max(r["end_cm"] for r in done)] if done else None,
            "episodes": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="+")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1, as recording draws them")
    parser.add_argument("--after", type=int, default=60, help="steps run on past the first success")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    unknown = sorted(set(args.tasks) - set(get_suite("metaworld").tasks()))
    if unknown:
        parser.error(f"not Meta-World tasks: {', '.join(unknown)}")
    recorded = experts.OBJECT_TO_GOAL
    results = {}
    for task in args.tasks:
        results[task] = {}
        variants = (("hand_aimed", ()), ("as_recorded", recorded)) if task in recorded else (("as_recorded", ()),)
        for name, aimed in variants:
            experts.OBJECT_TO_GOAL = aimed
            results[task][name] = summarize([run(task, seed, args.after) for seed in range(args.seeds)])
            r = results[task][name]
            print(f"{task:<24}{name:<13}success {r['success']:>5.0%}  first success at step "
                  f"{r['first_success_step_median']}  object to goal after {args.after} more steps: median "
                  f"{r['end_cm_median']} cm, range {r['end_cm_range']}", flush=True)
    experts.OBJECT_TO_GOAL = recorded
    if args.out:
        args.out.write_text(json.dumps({"seeds": args.seeds, "after": args.after, "tasks": results}, indent=2))


if __name__ == "__main__":
    main()

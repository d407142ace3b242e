"""Rendered env steps/s: our Meta-World env against lerobot's default Meta-World env, same task, one run.

    python benchmarks/sim_speed.py [--task drawer-close-v3] [--steps 300] [--out benchmarks/results]

Both envs step the same random actions from the same seed and render one camera image per step (what a
pixel policy needs). lerobot's env renders at Meta-World's 480x480 with MuJoCo's default quality
settings; ours renders at the model's resolution with shadows, reflections and multisampling off.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


def steps_per_second(env, actions: np.ndarray, seed: int) -> tuple[float, tuple]:
    obs, _ = env.reset(seed=seed)
    env.step(actions[0])  # warm up the GL context
    t0 = time.perf_counter()
    for a in actions:
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            obs, _ = env.reset(seed=seed)
    elapsed = time.perf_counter() - t0
    image = next(v for k, v in obs.items() if isinstance(v, np.ndarray) and v.ndim == 3)
    return len(actions) / elapsed, image.shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="drawer-close-v3")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    from lerobot.envs.metaworld import MetaworldEnv

    from vla.envs.metaworld import MetaWorldEnv

    actions = np.random.default_rng(0).uniform(-1, 1, (args.steps, 4)).astype(np.float32)
    envs = {
        "lerobot MetaworldEnv (defaults)": MetaworldEnv(task=args.task, obs_type="pixels_agent_pos"),
        f"vla MetaWorldEnv ({args.image_size}px, fast render)": MetaWorldEnv(args.task, image_size=args.image_size),
        f"vla MetaWorldEnv ({args.image_size}px, default render)": MetaWorldEnv(
            args.task, image_size=args.image_size, fast_render=False),
    }
    rows = []
    for name, env in envs.items():
        rate, shape = steps_per_second(env, actions, seed=0)
        rows.append({"env": name, "steps_per_s": rate, "image": list(shape)})
        env.close()
    base = rows[0]["steps_per_s"]
    print(f"\nrendered env steps/s on {args.task}, {args.steps} steps each, {os.cpu_count()} CPU cores")
    print(f"{'env':52s} {'image':>13s} {'steps/s':>9s} {'vs lerobot':>11s}")
    for r in rows:
        r["ratio_vs_lerobot"] = r["steps_per_s"] / base
        print(f"{r['env']:52s} {'x'.join(map(str, r['image'])):>13s} {r['steps_per_s']:9.1f} {r['ratio_vs_lerobot']:10.1f}x")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sim_speed.json").write_text(json.dumps({"task": args.task, "steps": args.steps, "rows": rows}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.barh([r["env"] for r in rows], [r["steps_per_s"] for r in rows], color=["gray", "tab:green", "tab:olive"])
    ax.set(xlabel="rendered env steps/s (higher is better)", title=f"{args.task}, {os.cpu_count()} CPU cores")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "sim_speed.png", dpi=100)
    print(f"saved {out / 'sim_speed.json'} and {out / 'sim_speed.png'}")


if __name__ == "__main__":
    main()

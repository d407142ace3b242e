"""Evaluate any Policy in simulation: success rate per task on held-out seeds, videos and a bar chart.

Episodes of a task run in lockstep batches (`batch_envs` envs, one policy call for all of them), which is
what makes autoregressive decoding affordable on a CPU: one batched chunk costs little more than one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from vla.envs import make_env, resolve_tasks
from vla.plots import plot_success
from vla.runtime.chunking import LockstepPlans, check_lockstep_method, lockstep
from vla.schema import TASK_KEY, Schema

DEFAULT_EVAL_SEED = 100_000  # recorded demos use small seeds; evaluation starts far from them


@dataclass
class EvalConfig:
    checkpoint: str = "runs/demo"
    tasks: list[str] | None = None  # tasks, groups (mt10, easy) or suites; default: those the checkpoint trained on
    episodes: int = 20
    out: str | None = None  # default: <checkpoint>/eval
    seed: int = DEFAULT_EVAL_SEED  # episode i uses seed `seed + i`
    max_episode_steps: int | None = 300  # None: the suite's own limit (Meta-World: 500)
    batch_envs: int = 20
    video: bool = True
    device: str = "cpu"
    decoding: str | None = None  # override the checkpoint's: "autoregressive" or "parallel"
    n_action_steps: int | None = None  # override how many actions of each chunk run before replanning
    decode: str | None = None  # override the checkpoint's: "expected" or "argmax"
    argmax_dims: list[int] | None = None  # override the dimensions decoded by their likeliest bin ([3]: the gripper)
    # How chunks become one action per tick: "naive" runs each chunk's first n_action_steps actions; "ensemble"
    # averages every live chunk's action for the tick (ACT's temporal ensembling; vla/runtime/chunking.py).
    chunking: str = "naive"
    ensemble_coeff: float = 0.01

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.batch_envs < 1:
            raise ValueError("episodes and batch_envs must be >= 1")
        from vla.model.vla_model import DECODE_MODES, DECODING, check_action_indices

        for name, allowed in (("decoding", DECODING), ("decode", DECODE_MODES)):
            if getattr(self, name) not in (None, *allowed):
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        check_action_indices("argmax_dims", self.argmax_dims or [])
        check_lockstep_method(self.chunking)


def stack_observations(observations: list[dict]) -> dict:
    return {k: ([o[k] for o in observations] if k == TASK_KEY else np.stack([o[k] for o in observations]))
            for k in observations[0]}


def run_batch(policy, envs: list, seeds: list[int], max_steps: int, frames: list | None) -> list[tuple[bool, str | None]]:
    """Run len(seeds) episodes in lockstep. Finished envs keep their last observation and stop stepping.
    -> per episode (success, the env's last `info["outcome"]`, None where the suite reports none)."""
    envs = envs[: len(seeds)]
    obs = [env.reset(seed=s)[0] for env, s in zip(envs, seeds, strict=True)]
    policy.reset()
    done, success, outcome = [False] * len(envs), [False] * len(envs), [None] * len(envs)
    image_keys = envs[0].schema.image_keys
    for _ in range(max_steps):
        if frames is not None and not done[0]:
            frames.append(np.concatenate([obs[0][k] for k in image_keys], axis=1))  # cameras side by side
        actions = policy.select_action(stack_observations(obs))
        for i, env in enumerate(envs):
            if done[i]:
                continue
            obs[i], _, terminated, truncated, info = env.step(actions[i])
            success[i] = success[i] or bool(info["is_success"])
            outcome[i] = info.get("outcome")
            done[i] = terminated or truncated
        if all(done):
            break
    return list(zip(success, outcome, strict=True))


def evaluate_policy(policy, tasks: list[str], episodes: int, seed: int, max_episode_steps: int | None,
                    batch_envs: int, schema: Schema, out: Path | None = None, video: bool = True) -> dict:
    """Envs are made to produce `schema` (the policy's); max_episode_steps None is each suite's own limit."""
    results: dict = {"tasks": {}}
    t0 = time.perf_counter()
    seeds = [seed + i for i in range(episodes)]
    bar = tqdm(total=len(tasks) * episodes, desc="evaluating", unit="ep")
    for task in tasks:
        n_envs = min(batch_envs, episodes)
        envs = [make_env(task, schema, max_episode_steps) for _ in range(n_envs)]
        frames: list | None = [] if (video and out is not None) else None
        episodes_run: list[tuple[bool, str | None]] = []
        for start in range(0, episodes, n_envs):
            group = seeds[start : start + n_envs]
            episodes_run += run_batch(policy, envs, group, envs[0].max_episode_steps, frames if start == 0 else None)
            bar.update(len(group))
            bar.set_postfix(task=task, success=f"{np.mean([s for s, _ in episodes_run]):.0%}")
        for env in envs:
            env.close()
        successes = [bool(s) for s, _ in episodes_run]
        results["tasks"][task] = {"success_rate": float(np.mean(successes)), "episodes": len(successes),
                                  "successes": successes}
        outcomes = [o for _, o in episodes_run if o is not None]
        if outcomes:  # the suite says how each episode went (tabletop: which object the hand went to)
            results["tasks"][task]["outcomes"] = {o: outcomes.count(o) / len(episodes_run) for o in sorted(set(outcomes))}
            # and per episode, beside `successes`, so a miss can be traced to its scene (seed + i)
            results["tasks"][task]["episode_outcomes"] = [o for _, o in episodes_run]
        if frames:
            iio.imwrite(out / f"{task}.mp4", np.stack(frames), plugin="pyav", codec="libx264", fps=40)
    bar.close()
    results["mean_success_rate"] = float(np.mean([r["success_rate"] for r in results["tasks"].values()]))
    results.update({"seeds": seeds, "max_episode_steps": max_episode_steps, "wall_s": time.perf_counter() - t0})
    return results


def print_table(results: dict, title: str = "success rate") -> None:
    table = Table(title=title)
    table.add_column("task")
    table.add_column("success", justify="right")
    table.add_column("episodes", justify="right")
    outcomes = any("outcomes" in r for r in results["tasks"].values())
    if outcomes:
        table.add_column("outcomes")
    for task, r in results["tasks"].items():
        extra = [", ".join(f"{k} {v:.0%}" for k, v in r.get("outcomes", {}).items())] if outcomes else []
        table.add_row(task, f"{r['success_rate']:.0%}", str(r["episodes"]), *extra)
    table.add_row("[bold]mean", f"[bold]{results['mean_success_rate']:.0%}", "", *([""] if outcomes else []))
    Console().print(table)


def override_decoding(policy, decoding: str | None = None, n_action_steps: int | None = None,
                      source: str = "the checkpoint", decode: str | None = None, argmax_dims: list[int] | None = None):
    """The loaded policy, decoding its chunks as asked (None keeps the checkpoint's). The weights do not depend on
    these (beyond self-conditioning's inputs, decoded the checkpoint's way): the same weights decode in parallel or
    one token at a time, by expected value or likeliest bin."""
    from vla.policies.vla_policy import VLAPolicy

    asked = {"decoding": decoding, "n_action_steps": n_action_steps, "decode": decode,
             "argmax_dims": None if argmax_dims is None else list(argmax_dims)}
    overrides = {k: v for k, v in asked.items() if v is not None}
    if overrides:
        if not isinstance(policy, VLAPolicy):
            raise ValueError(f"{sorted(overrides)} override a VLA checkpoint's decoding; {source} is "
                             f"{policy.meta.get('policy_type')!r}")
        policy.cfg = policy.model.cfg = dataclasses.replace(policy.cfg, **overrides)  # validated again
        policy.model.check_dims(policy.cfg, policy.model.action_tokenizer.action_dim)
    return policy


def load_for_evaluation(cfg: EvalConfig) -> tuple:
    """(the checkpoint's policy, decoding as `cfg` asks; the tasks to evaluate). Every mistake in `cfg` that only the
    checkpoint can show (not a checkpoint, an override it does not fit, no tasks, seeds it trained on) is raised
    here as a ValueError, before any episode runs."""
    from vla.policies.registry import load_policy

    policy = override_decoding(load_policy(cfg.checkpoint, device=cfg.device), cfg.decoding, cfg.n_action_steps,
                               str(cfg.checkpoint), cfg.decode, cfg.argmax_dims)
    policy = lockstep(policy, cfg.chunking, cfg.ensemble_coeff)
    trained = policy.meta.get("env_tasks", [])
    tasks = resolve_tasks(list(cfg.tasks)) if cfg.tasks else trained
    if not tasks:
        raise ValueError(f"{cfg.checkpoint} records no training tasks; pass tasks=[...]")
    seeds = set(range(cfg.seed, cfg.seed + cfg.episodes))
    for task in tasks:
        overlap = seeds & set(policy.meta.get("train_seeds", {}).get(task, []))
        if overlap:
            raise ValueError(f"evaluation seeds {sorted(overlap)[:5]} of {task} were used for training; move seed=")
    return policy, tasks


def evaluate_checkpoint(cfg: EvalConfig, loaded: tuple | None = None) -> dict:
    """loaded: what `load_for_evaluation(cfg)` returned, where the caller has checked it already."""
    from vla.policies.vla_policy import VLAPolicy

    policy, tasks = loaded or load_for_evaluation(cfg)
    out = Path(cfg.out or Path(cfg.checkpoint) / "eval")
    out.mkdir(parents=True, exist_ok=True)
    results = evaluate_policy(
        policy, tasks, cfg.episodes, cfg.seed, cfg.max_episode_steps, cfg.batch_envs,
        policy.schema, out=out, video=cfg.video,
    )
    is_vla = isinstance(policy.policy if isinstance(policy, LockstepPlans) else policy, VLAPolicy)
    results.update(checkpoint=str(cfg.checkpoint), n_action_steps=policy.n_action_steps, chunking=cfg.chunking,
                   **{k: getattr(policy.cfg, k) if is_vla else None for k in ("decoding", "decode", "argmax_dims")})
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_success(results, out / "success.png", title=f"{Path(cfg.checkpoint).name}: success rate")
    print_table(results)
    return results

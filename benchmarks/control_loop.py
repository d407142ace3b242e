"""Control-loop timing with the sim robot, and one inference over loopback versus in-process.

    python benchmarks/control_loop.py [--checkpoint runs/demo] [--task drawer-close-v3] [--ticks 200]

Runs the vla-robot controller (background chunk refill, safety guard) on a Meta-World sim robot at 30 and
50 Hz with the checkpoint in-process and reports the tick jitter |actual interval - 1/hz| (p50, p99) and
how many ticks overran. Then times `predict_chunk` on one observation in-process and the same call through
vla-serve + PolicyClient over loopback, in the same process, and reports the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="runs/demo")
    parser.add_argument("--task", default="drawer-close-v3")
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    from vla.plots import plt
    from vla.policies.protocol import batch_observation
    from vla.policies.vla_policy import VLAPolicy
    from vla.runtime.client import PolicyClient
    from vla.runtime.controller import Controller, LocalPolicy
    from vla.runtime.robots import SimRobot
    from vla.runtime.server import PolicyServer, ServeConfig, ServerThread

    policy = VLAPolicy.from_pretrained(args.checkpoint)
    schema = policy.schema
    rows, jitters = [], {}
    for hz in (30, 50):
        robot = SimRobot(args.task, seed=100_000, schema=schema, max_episode_steps=10**6, end_on_success=False)
        controller = Controller(robot, LocalPolicy(policy), hz, max_ticks=args.ticks)
        report = controller.run()
        jitter = report.jitter_ms(hz)
        jitters[hz] = jitter
        rows.append({"control_hz": hz, "ticks": report.ticks, "jitter_ms_p50": float(np.percentile(jitter, 50)),
                     "jitter_ms_p99": float(np.percentile(jitter, 99)),
                     "overruns": int(np.sum(np.diff(report.tick_starts) > 1.5 / hz)),
                     "inference_ms_p50": float(np.median(report.inference_ms)),
                     "guard_holds": int(report.guard_counts.get("hold", 0))})

    obs = robot.observe()
    batch = batch_observation(obs)
    policy.predict_chunk(batch)  # warm up
    local = []
    for _ in range(args.calls):
        t0 = time.perf_counter()
        policy.predict_chunk(batch)
        local.append((time.perf_counter() - t0) * 1000)
    with ServerThread(PolicyServer(policy, ServeConfig(port=0), "bench")) as server:
        with PolicyClient(server.url, recv_timeout_s=10) as client:
            client.infer(obs)
            remote = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                client.infer(obs)
                remote.append((time.perf_counter() - t0) * 1000)
    rtt = {"in_process_ms_p50": float(np.median(local)), "loopback_ms_p50": float(np.median(remote)),
           "in_process_ms_p99": float(np.percentile(local, 99)), "loopback_ms_p99": float(np.percentile(remote, 99)),
           "ratio_p50": float(np.median(remote) / np.median(local)),
           "overhead_ms_p50": float(np.median(remote) - np.median(local))}

    print(f"\ncontrol loop, sim robot {args.task}, checkpoint {args.checkpoint}, {os.cpu_count()} cores")
    print(f"{'hz':>4s} {'ticks':>6s} {'jitter p50 ms':>14s} {'jitter p99 ms':>14s} {'overruns':>9s} "
          f"{'inference p50 ms':>17s} {'guard holds':>12s}")
    for r in rows:
        print(f"{r['control_hz']:4d} {r['ticks']:6d} {r['jitter_ms_p50']:14.2f} {r['jitter_ms_p99']:14.2f} "
              f"{r['overruns']:9d} {r['inference_ms_p50']:17.1f} {r['guard_holds']:12d}")
    print(f"\none inference ({args.calls} calls): in-process p50 {rtt['in_process_ms_p50']:.1f} ms "
          f"(p99 {rtt['in_process_ms_p99']:.1f}), over loopback p50 {rtt['loopback_ms_p50']:.1f} ms "
          f"(p99 {rtt['loopback_ms_p99']:.1f}): x{rtt['ratio_p50']:.2f}, +{rtt['overhead_ms_p50']:.1f} ms")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "control_loop.json").write_text(json.dumps({"loop": rows, "round_trip": rtt}, indent=2))
    fig, (ax_j, ax_r) = plt.subplots(1, 2, figsize=(9, 3.2))
    for hz, jitter in jitters.items():
        ax_j.hist(jitter, bins=40, alpha=0.6, label=f"{hz} Hz")
    ax_j.set(xlabel="|tick interval - 1/hz| (ms)", ylabel="ticks", title="tick jitter", yscale="log")
    ax_j.legend()
    ax_r.boxplot([local, remote], tick_labels=["in-process", "loopback"])
    ax_r.set(ylabel="ms per chunk", title="one inference")
    fig.tight_layout()
    fig.savefig(out / "control_loop.png", dpi=100)
    print(f"saved {out / 'control_loop.json'} and {out / 'control_loop.png'}")


if __name__ == "__main__":
    main()

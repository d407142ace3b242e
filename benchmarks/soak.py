"""Soak: several robot clients on one `vla-serve` over loopback for minutes; errors and the server's memory.

    python benchmarks/soak.py --checkpoint runs/demo --clients 4 --seconds 120 --out runs/soak

Starts `vla-serve` as its own process (as a user runs it) and drives it from `--clients` threads, each a
robot asking for chunks at `--hz`: all but one speak vla's protocol (`PolicyClient`, alternately with and
without a real-time-chunking prefix); one is openpi's `WebsocketClientPolicy`. Every second it samples the
server's resident memory (VmRSS from /proc). Pass: no errors, and RSS at the end within 10% of RSS once
warm (after `--warmup-s`). Writes DIR/results.json and DIR/soak.png (RSS and requests over time).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_server(checkpoint: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "vla.cli.serve", f"checkpoint={checkpoint}", f"port={port}"],
                              env={**os.environ, "MUJOCO_GL": "egl"}, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return server, port
        except OSError:
            if server.poll() is not None:
                raise RuntimeError("vla-serve exited before answering /healthz") from None
            time.sleep(0.1)
    raise RuntimeError("vla-serve did not answer /healthz within 60 s")


def client_loop(kind: str, url: str, hz: float, stop: threading.Event, stats: dict) -> None:
    from vla.runtime.client import PolicyClient
    from vla.schema import Schema

    rng = np.random.default_rng(len(stats["latency_ms"]))
    if kind == "openpi":
        from openpi_client.websocket_client_policy import WebsocketClientPolicy

        client = WebsocketClientPolicy(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
        schema = Schema.from_json(client.get_server_metadata()["schema"])
    else:
        client = PolicyClient(url, recv_timeout_s=10.0)
        schema = Schema.from_json(client.connect()["schema"])
    i = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        obs = schema.fake_observation(rng, task="close the drawer")
        try:
            if kind == "openpi":
                obs["prompt"] = obs.pop("task")
                chunk = client.infer(obs)["actions"]
            else:
                prefix = chunk[:2] if i % 2 and i else None  # every other request carries a prefix
                chunk = client.infer(obs, prefix=prefix)
            if not np.all(np.isfinite(chunk)):
                raise ValueError("non-finite chunk")
            stats["latency_ms"].append((time.perf_counter() - t0) * 1000)
            stats["requests"] += 1
        except Exception as e:  # counted and reported: the soak passes only with none
            stats["errors"].append(f"{kind}: {type(e).__name__}: {e}")
        i += 1
        time.sleep(max(0.0, 1.0 / hz - (time.perf_counter() - t0)))
    if kind != "openpi":
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="runs/demo")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--warmup-s", type=float, default=15)
    parser.add_argument("--hz", type=float, default=10, help="requests per second per client")
    parser.add_argument("--out", default="runs/soak")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    server, port = start_server(args.checkpoint)
    url = f"ws://127.0.0.1:{port}"
    stop = threading.Event()
    kinds = ["openpi" if i == args.clients - 1 else "vla" for i in range(args.clients)]
    stats = [{"latency_ms": [], "requests": 0, "errors": []} for _ in kinds]
    threads = [threading.Thread(target=client_loop, args=(k, url, args.hz, stop, s), daemon=True)
               for k, s in zip(kinds, stats, strict=True)]
    samples = []  # (t, rss MB, requests so far)
    t0 = time.perf_counter()
    try:
        for t in threads:
            t.start()
        while (elapsed := time.perf_counter() - t0) < args.seconds:
            samples.append((elapsed, rss_mb(server.pid), sum(s["requests"] for s in stats)))
            time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(15)
        samples.append((time.perf_counter() - t0, rss_mb(server.pid), sum(s["requests"] for s in stats)))
    finally:
        server.terminate()
        server.wait(10)

    warm = next(rss for t, rss, _ in samples if t >= args.warmup_s)
    end = samples[-1][1]
    latency = np.concatenate([s["latency_ms"] for s in stats]) if any(s["latency_ms"] for s in stats) else np.zeros(1)
    errors = [e for s in stats for e in s["errors"]]
    results = {"clients": kinds, "seconds": args.seconds, "hz_per_client": args.hz,
               "requests": sum(s["requests"] for s in stats), "errors": len(errors), "error_samples": errors[:10],
               "latency_ms_p50": float(np.percentile(latency, 50)), "latency_ms_p99": float(np.percentile(latency, 99)),
               "rss_mb_warm": warm, "rss_mb_end": end, "rss_growth": end / warm - 1,
               "rss_mb_max": max(r for _, r, _ in samples),
               "passed": not errors and end / warm - 1 <= 0.10, "samples": samples}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{len(kinds)} clients ({', '.join(kinds)}) for {args.seconds:.0f} s at {args.hz:g} Hz each: "
          f"{results['requests']} requests, {len(errors)} errors, latency p50 {results['latency_ms_p50']:.1f} ms "
          f"p99 {results['latency_ms_p99']:.1f} ms")
    print(f"server RSS: {warm:.0f} MB warm (t={args.warmup_s:g} s) -> {end:.0f} MB at the end "
          f"({100 * results['rss_growth']:+.1f}%, limit +10%); max {results['rss_mb_max']:.0f} MB: "
          f"{'PASS' if results['passed'] else 'FAIL'}")

    from vla.plots import plt

    t, rss, requests = np.array(samples).T
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(t, rss, label="server RSS (MB)")
    ax.axhline(warm * 1.1, color="gray", ls="--", label="warm + 10%")
    ax.set(xlabel="s", ylabel="MB", title=f"vla-serve soak: {len(kinds)} clients, {results['requests']} requests")
    ax2 = ax.twinx()
    ax2.plot(t, requests, color="tab:orange", label="requests")
    ax2.set_ylabel("requests")
    fig.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=120)


if __name__ == "__main__":
    main()

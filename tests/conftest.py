import contextlib
import os

os.environ.setdefault("MUJOCO_GL", "egl")
# Under pytest-xdist (`make test`: -n 2) every worker shares the cores with the others. Two torch processes of two
# OpenMP threads each on 2 cores wait on each other's descheduled threads at every parallel region: a tiny 30-step
# training took 61 s with 2 threads and 24 s with 1 beside another 2-thread run (session 58). So each worker, and
# every process its tests spawn (they inherit the variable), uses one thread unless the caller set another count.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vla.model.backbone import BackboneConfig  # noqa: E402
from vla.model.vla_model import VLAConfig  # noqa: E402

TINY_IMAGE = 32
# What the tiny policies' text tokenizer is fitted on: the instructions the tests send.
TINY_INSTRUCTIONS = ["close it", "press the big red button", "do the task"]


def tiny_model_config(**overrides) -> VLAConfig:
    backbone = BackboneConfig(image_size=TINY_IMAGE, patch_size=8, vision_hidden=32, vision_layers=1,
                              text_hidden=64, text_layers=2, head_dim=32)
    return VLAConfig(backbone=backbone, chunk_size=4, n_action_steps=2, **overrides)


def fake_stats(dim: int = 4) -> dict:
    def one(lo, hi):
        return {"mean": np.zeros(dim, np.float32), "std": np.ones(dim, np.float32),
                "min": np.full(dim, lo, np.float32), "max": np.full(dim, hi, np.float32),
                "q01": np.full(dim, lo, np.float32), "q99": np.full(dim, hi, np.float32)}
    return {"observation.state": one(-0.5, 1.0), "action": one(-1.0, 1.0)}


@contextlib.contextmanager
def vla_serve(checkpoint, *args):
    """`vla-serve` (the console script's module, as a user runs it) on a free loopback port, once /healthz
    answers; yields the port and stops the server after."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "vla.cli.serve", f"checkpoint={checkpoint}", f"port={port}",
                               *args], env={**os.environ, "MUJOCO_GL": "egl"}, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A real episode store: expert demos of two Meta-World tasks at the tiny model's resolution."""
    from vla.record import RecordConfig, record

    out = tmp_path_factory.mktemp("store") / "demos.zarr"
    record(RecordConfig(tasks=["drawer-close-v3", "button-press-topdown-v3"], episodes=2, out=str(out),
                        image_size=TINY_IMAGE, max_episode_steps=150))
    return out

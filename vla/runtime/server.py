"""The policy server (`vla-serve`): a websocket speaking msgpack with numpy arrays, never pickle.

Protocol (every frame binary msgpack, see `vla.runtime.wire`):
  on connect, server -> client  {"type": "metadata", "schema": ..., "control_hz", "chunk_size",
                                 "n_action_steps", "accepts_prefix", "checkpoint_id"}
  client -> server              {"type": "infer", "id": int, "obs": {key: array | str}[, "prefix": (k, D)]}
                                {"type": "reset", "id": int}
  server -> client              {"type": "chunk", "id", "actions": (H, D) float32, "server_ms": float}
                                {"type": "reset", "id"} | {"type": "error", "id", "error": str}

openpi's robot clients (`openpi_client.WebsocketClientPolicy`) work unchanged: a request without "type" is
taken as openpi's, the observation map itself (its `"prompt"` standing for `task`), arrays in openpi's msgpack
encoding; the reply is {"actions": (H, D) float32, "server_timing": {"infer_ms"}} in that encoding, and an error
is a text frame naming the problem, which its client raises. Its `Api-Key` authorization header is accepted
beside `Bearer`.

A "prefix" (real-time chunking) holds the k < H actions that will run before the chunk arrives; the chunk
starts with them and the policy predicts the rest to follow them (where the policy `accepts_prefix`).

A bad request (not msgpack, unknown type, a missing key, a wrong shape or dtype, a non-finite value) gets
an error reply naming the problem and the connection stays open; a frame over `max_message_bytes` closes
that connection (code 1009); neither disturbs other clients. Every receive has a timeout, after which an
idle connection is closed. `GET /healthz` answers 200 without a websocket. With `token` set, a connection
must send `Authorization: Bearer <token>` or it is refused with 401 before the handshake.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from vla.model.backbone import torch_dtype
from vla.policies.protocol import batch_observation, check_prefix
from vla.runtime.wire import WireError, pack, pack_openpi, unpack
from vla.schema import TASK_KEY, SchemaError

log = logging.getLogger("vla.serve")


@dataclass
class ServeConfig:
    checkpoint: str = "runs/demo"
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # shared secret; None: no auth (bind to loopback then)
    max_message_bytes: int = 4 * 2**20
    recv_timeout_s: float = 60.0  # an idle connection is closed after this long without a request
    control_hz: float | None = None  # default: the schema's fps
    device: str = "cpu"
    dtype: str = "float32"  # "bfloat16": bf16 inference (the GPU path)
    compile: bool = False  # torch.compile the forward (CUDA graphs on a GPU); the first request per prompt length compiles

    def __post_init__(self) -> None:
        torch_dtype(self.dtype)


def checkpoint_id(directory: str | Path) -> str:
    """Names the weights, not the path: a short hash of the weights file plus the directory name."""
    directory = Path(directory)
    digest = hashlib.sha256()
    with open(directory / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return f"{directory.name}@{digest.hexdigest()[:12]}"


class PolicyServer:
    def __init__(self, policy, cfg: ServeConfig, ckpt_id: str = "unknown"):
        self.policy, self.cfg = policy, cfg
        self.schema = policy.schema
        self.metadata = {
            "type": "metadata", "schema": self.schema.to_json(), "checkpoint_id": ckpt_id,
            "control_hz": cfg.control_hz or self.schema.fps, "chunk_size": policy.chunk_size,
            "n_action_steps": policy.n_action_steps, "accepts_prefix": policy.accepts_prefix,
            "env_tasks": policy.meta.get("env_tasks", []),  # the simulator tasks it trained on
        }
        self._lock = threading.Lock()  # one inference at a time on the one model
        self.requests = self.errors = 0

    # ---- HTTP before the handshake: health check and auth ---------------------------------------------
    def _process_request(self, connection: ServerConnection, request):
        if request.path == "/healthz":
            body = json.dumps({"status": "ok", "checkpoint_id": self.metadata["checkpoint_id"]}).encode()
            return connection.respond(HTTPStatus.OK, body.decode() + "\n")
        if self.cfg.token is not None:
            sent = request.headers.get("Authorization", "").encode()
            if not any(hmac.compare_digest(sent, f"{scheme} {self.cfg.token}".encode()) for scheme in ("Bearer", "Api-Key")):
                return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        return None

    # ---- one connection ---------------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        await ws.send(pack(self.metadata))
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(ws.recv(), timeout=self.cfg.recv_timeout_s)
                except TimeoutError:
                    log.info("%s: no request for %.0f s, closing", peer, self.cfg.recv_timeout_s)
                    await ws.close(1000, "receive timeout")
                    return
                await ws.send(await self._answer(frame))
        except ConnectionClosed as e:
            log.info("%s: connection closed (%s)", peer, e.rcvd.code if e.rcvd else "no close frame")

    async def _answer(self, frame) -> bytes | str:
        """One request frame -> the reply frame, in the dialect of the request (ours, or openpi's)."""
        self.requests += 1
        request_id, openpi, prefix = None, False, None
        try:
            msg = unpack(frame)
            if not isinstance(msg, dict):
                raise WireError(f"a request is a map, got {type(msg).__name__}")
            openpi = "type" not in msg
            if openpi:
                obs = dict(msg)
                if TASK_KEY not in obs and "prompt" in obs:
                    obs[TASK_KEY] = obs.pop("prompt")
            else:
                request_id = msg.get("id")
                kind = msg.get("type")
                if kind == "reset":
                    return pack({"type": "reset", "id": request_id})
                if kind != "infer":
                    raise WireError(f"unknown request type {kind!r} (expected 'infer' or 'reset')")
                obs = msg.get("obs")
                if not isinstance(obs, dict):
                    raise SchemaError("request has no 'obs' map")
                prefix = self._prefix(msg.get("prefix"))
            self.schema.validate_observation(obs)  # names the key, the shapes and dtypes
            t0 = time.perf_counter()
            actions = await asyncio.to_thread(self._infer, obs, prefix)
            infer_ms = (time.perf_counter() - t0) * 1000
            if openpi:
                return pack_openpi({"actions": actions, "server_timing": {"infer_ms": infer_ms}})
            return pack({"type": "chunk", "id": request_id, "actions": actions, "server_ms": infer_ms})
        except (WireError, SchemaError) as e:
            return self._error(str(e), request_id, openpi)
        except Exception as e:  # the policy failed on a valid request: report it, keep serving
            log.exception("inference failed")
            return self._error(f"inference failed: {type(e).__name__}: {e}", request_id, openpi)

    def _error(self, error: str, request_id, openpi: bool) -> bytes | str:
        self.errors += 1
        return error if openpi else pack({"type": "error", "id": request_id, "error": error})

    def _prefix(self, prefix) -> np.ndarray | None:
        if prefix is None:
            return None
        if not self.policy.accepts_prefix:
            raise WireError("this policy cannot condition on a prefix (metadata accepts_prefix is false)")
        try:
            return check_prefix(np.asarray(prefix)[None], 1, self.policy.chunk_size, self.schema.action_dim)
        except (ValueError, TypeError) as e:
            raise WireError(str(e)) from None

    def _infer(self, obs: dict, prefix: np.ndarray | None = None) -> np.ndarray:
        batch = batch_observation(obs)
        with self._lock:
            chunk = self.policy.predict_chunk(batch) if prefix is None else self.policy.predict_chunk(batch, prefix=prefix)
        return np.asarray(chunk[0], np.float32)

    # ---- running ----------------------------------------------------------------------------------------
    async def serve_forever(self, ready: threading.Event | None = None, stop: asyncio.Event | None = None) -> None:
        async with serve(self._handler, self.cfg.host, self.cfg.port, process_request=self._process_request,
                         max_size=self.cfg.max_message_bytes, compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]  # the real one when cfg.port == 0
            log.info("serving %s on ws://%s:%d", self.metadata["checkpoint_id"], self.cfg.host, self.port)
            if ready is not None:
                ready.set()
            await (stop.wait() if stop is not None else asyncio.get_running_loop().create_future())


class ServerThread:
    """A PolicyServer on its own event loop in a background thread (tests, benchmarks, in-process use)."""

    def __init__(self, server: PolicyServer):
        self.server, self._ready = server, threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self.server.serve_forever(self._ready, self._stop))

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("policy server did not start within 30 s")
        return self

    @property
    def url(self) -> str:
        return f"ws://{self.server.cfg.host}:{self.server.port}"

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

"""Client of the policy server, for a robot computer: needs only numpy, msgpack and websockets.

    client = PolicyClient("ws://gpu-box:8765", token="...")
    chunk = client.infer(obs)      # (H, action_dim) float32
    client.reset()

Every request carries an id and the reply must carry the same one. A reply that does not come within
`recv_timeout_s` raises `InferenceTimeout` and the connection is dropped, so a late reply can never be
taken for the answer to the next request; the next call reconnects (with exponential backoff, up to
`connect_retries` attempts).
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from vla.runtime.wire import pack, unpack


class ServerError(RuntimeError):
    """The server answered with an error (a bad request or a failed inference); the message says which."""


class InferenceTimeout(TimeoutError):
    """No reply within the receive timeout; the connection was dropped."""


class PolicyClient:
    def __init__(self, url: str, token: str | None = None, recv_timeout_s: float = 1.0,
                 connect_timeout_s: float = 5.0, connect_retries: int = 5, backoff_s: float = 0.1,
                 max_message_bytes: int = 4 * 2**20):
        self.url, self.token = url, token
        self.recv_timeout_s, self.connect_timeout_s = recv_timeout_s, connect_timeout_s
        self.connect_retries, self.backoff_s, self.max_message_bytes = connect_retries, backoff_s, max_message_bytes
        self._ws: ClientConnection | None = None
        self._ids = itertools.count()
        self.metadata: dict | None = None
        self.reconnects = 0

    # ---- connection ----------------------------------------------------------------------------------
    def connect(self) -> dict:
        """Connect (retrying with exponential backoff) and return the server's metadata."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        delay, last_error = self.backoff_s, None
        for attempt in range(self.connect_retries):
            try:
                self._ws = connect(self.url, additional_headers=headers, open_timeout=self.connect_timeout_s,
                                   max_size=self.max_message_bytes, compression=None)
                self.metadata = unpack(self._ws.recv(timeout=self.connect_timeout_s))
                if attempt or self.reconnects:
                    self.reconnects += 1
                return self.metadata
            except InvalidStatus as e:  # 401 and the like: retrying will not help
                raise ConnectionRefusedError(f"{self.url}: server refused the connection: {e}") from None
            except (OSError, TimeoutError, ConnectionClosed) as e:
                last_error = e
                self.close()
                time.sleep(delay)
                delay *= 2
        raise ConnectionError(f"{self.url}: cannot connect after {self.connect_retries} attempts: {last_error}")

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # already broken: nothing to close cleanly
                pass
            self._ws = None

    def __enter__(self) -> PolicyClient:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- requests --------------------------------------------------------------------------------------
    def _request(self, message: dict) -> dict:
        if self._ws is None:
            self.connect()
        request_id = next(self._ids)
        try:
            self._ws.send(pack({**message, "id": request_id}))
            reply = unpack(self._ws.recv(timeout=self.recv_timeout_s))
        except TimeoutError:
            self.close()  # a reply arriving later must not answer the next request
            raise InferenceTimeout(f"{self.url}: no reply within {self.recv_timeout_s} s; connection dropped") from None
        except (ConnectionClosed, OSError):
            self.close()
            raise
        if reply.get("id") != request_id:
            self.close()
            raise ServerError(f"reply id {reply.get('id')} does not answer request {request_id}; connection dropped")
        if reply.get("type") == "error":
            raise ServerError(reply.get("error", "unknown server error"))
        return reply

    def infer(self, obs: dict, prefix: np.ndarray | None = None) -> np.ndarray:
        """One observation (unbatched arrays, `task` a str) -> the (H, action_dim) action chunk.

        prefix: (k, action_dim), the actions that will run before the chunk arrives; the chunk starts with
        them and continues from them (servers whose metadata says `accepts_prefix`)."""
        message = {"type": "infer", "obs": obs}
        if prefix is not None:
            message["prefix"] = np.asarray(prefix, np.float32)
        return self._request(message)["actions"]

    def reset(self) -> None:
        self._request({"type": "reset"})

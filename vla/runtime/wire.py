"""msgpack with numpy arrays, for the policy server and its client. Never pickle.

An array travels as a map {"__nd__": True, "dtype": "<f4", "shape": [...], "data": <bytes>}. openpi's
`openpi_client.msgpack_numpy` encoding ({b"__ndarray__": True, b"data", b"dtype", b"shape"}, and
{b"__npgeneric__": True, ...} for a scalar) decodes too, and `pack_openpi` writes it, so openpi's robot clients
talk to `vla-serve` unchanged. Decoding accepts only plain numeric and bool dtypes (no object dtype, so nothing
can smuggle code) and checks that the bytes match the shape. Needs only numpy and msgpack, so a robot computer
can use it on its own.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

ALLOWED_KINDS = "biuf"  # bool, signed, unsigned, float


class WireError(ValueError):
    """A message that is not valid msgpack, or an array field that does not decode to a safe array."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in ALLOWED_KINDS:
            raise TypeError(f"cannot send an array of dtype {obj.dtype}")
        return {"__nd__": True, "dtype": obj.dtype.str, "shape": list(obj.shape),
                "data": np.ascontiguousarray(obj).tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send a {type(obj).__name__}")


def _encode_openpi(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in ALLOWED_KINDS:
            raise TypeError(f"cannot send an array of dtype {obj.dtype}")
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send a {type(obj).__name__}")


def _decode(obj: dict) -> Any:
    if obj.get(b"__npgeneric__") is True:  # openpi's numpy scalar: decoded as a 0-d array, then a Python number
        return _decode({"__nd__": True, "dtype": obj.get(b"dtype"), "shape": [],
                        "data": np.asarray(obj.get(b"data"), dtype=np.dtype(obj.get(b"dtype"))).tobytes()}).item()
    if obj.get(b"__ndarray__") is True:  # openpi's array
        obj = {"__nd__": True, **{k.decode(): v for k, v in obj.items() if k in (b"dtype", b"shape", b"data")}}
    if obj.get("__nd__") is not True:
        return obj
    try:
        dtype, shape, data = np.dtype(obj["dtype"]), tuple(int(s) for s in obj["shape"]), obj["data"]
    except (KeyError, TypeError, ValueError) as e:
        raise WireError(f"malformed array field: {e}") from None
    if dtype.kind not in ALLOWED_KINDS:
        raise WireError(f"array dtype {dtype} is not allowed (only bool, int, uint, float)")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize * int(np.prod(shape)):
        raise WireError(f"array data holds {len(data) if isinstance(data, bytes) else '?'} bytes, "
                        f"shape {shape} of {dtype} needs {dtype.itemsize * int(np.prod(shape))}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def pack_openpi(obj: Any) -> bytes:
    """msgpack with openpi_client's array encoding: what its WebsocketClientPolicy decodes."""
    return msgpack.packb(obj, default=_encode_openpi, use_bin_type=True)


def unpack(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray):
        raise WireError(f"expected a binary msgpack frame, got {type(data).__name__}")
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=True)
    except WireError:
        raise
    except Exception as e:  # msgpack raises several types (ExtraData, FormatError, StackError, ValueError...)
        raise WireError(f"not valid msgpack: {type(e).__name__}: {e}") from None

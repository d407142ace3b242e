"""Per-dimension normalization statistics: mean, std, min, max, q01, q99.

Computed in two streaming passes over chunks of a low-dimensional array (moments, then a fine histogram
between min and max for the quantiles), so memory stays bounded whatever the store's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")
HIST_BINS = 20_000


def compute_stats(chunks: Callable[[], Iterable[np.ndarray]]) -> dict[str, np.ndarray]:
    """`chunks()` yields (n, d) arrays; it is called twice (one call per pass)."""
    count, mean, m2, lo, hi = 0, None, None, None, None
    for chunk in chunks():
        x = np.asarray(chunk, dtype=np.float64).reshape(len(chunk), -1)
        if not np.all(np.isfinite(x)):
            raise ValueError("statistics: the data contains NaN or inf")
        n, cm = len(x), x.mean(0)
        if mean is None:
            mean, m2, lo, hi = cm, ((x - cm) ** 2).sum(0), x.min(0), x.max(0)
        else:  # Chan et al. parallel update
            delta = cm - mean
            mean = mean + delta * n / (count + n)
            m2 = m2 + ((x - cm) ** 2).sum(0) + delta**2 * count * n / (count + n)
            lo, hi = np.minimum(lo, x.min(0)), np.maximum(hi, x.max(0))
        count += n
    if count == 0:
        raise ValueError("statistics: no frames")
    width = np.where(hi > lo, hi - lo, 1.0)
    hist = np.zeros((len(mean), HIST_BINS), np.int64)
    for chunk in chunks():
        x = np.asarray(chunk, dtype=np.float64).reshape(len(chunk), -1)
        idx = np.clip(((x - lo) / width * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
        for d in range(x.shape[1]):
            hist[d] += np.bincount(idx[:, d], minlength=HIST_BINS)
    cdf = np.cumsum(hist, axis=1) / count
    edges = lambda q: lo + width * (np.argmax(cdf >= q, axis=1) + 1) / HIST_BINS  # noqa: E731
    stats = {"mean": mean, "std": np.sqrt(m2 / count), "min": lo, "max": hi,
             "q01": np.maximum(edges(0.01), lo), "q99": np.minimum(edges(0.99), hi)}
    return {k: v.astype(np.float32) for k, v in stats.items()}


def store_stats(store, keys: list[str], chunk_frames: int = 65_536) -> dict[str, dict[str, np.ndarray]]:
    def chunks_of(key):
        arr, n = store.array(key), store.num_frames
        return lambda: (arr[i : min(i + chunk_frames, n)] for i in range(0, n, chunk_frames))

    return {key: compute_stats(chunks_of(key)) for key in keys}


def stats_to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {key: {name: np.asarray(v).tolist() for name, v in s.items()} for key, s in stats.items()}


def stats_from_json(d: dict, required_keys: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for key in required_keys:
        if key not in d:
            raise KeyError(f"normalization stats have no entry for {key!r} (have {sorted(d)})")
        missing = [n for n in STAT_NAMES if n not in d[key]]
        if missing:
            raise KeyError(f"normalization stats for {key!r} lack {missing}")
        out[key] = {n: np.asarray(d[key][n], dtype=np.float32) for n in STAT_NAMES}
    return out

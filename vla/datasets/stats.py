"""Per-dimension normalization statistics: mean, std, min, max, q01, q99, in one streaming pass.

Moments use Chan et al.'s parallel update. Quantiles come from a histogram of HIST_BINS bins per
dimension whose range starts at the first chunk's and doubles (merging bin pairs) whenever data falls
outside it, so one pass over bounded chunks suffices and the quantile error stays below one bin of the
final histogram (its range is less than 4x the data's: at most one doubling per side beyond it).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")
HIST_BINS = 16_384  # even, so a doubling merges bin pairs exactly


class _GrowingHistogram:
    def __init__(self, lo: float, hi: float):
        self.lo, self.width = lo, max(hi - lo, 1e-6) * (1 + 1e-9) / HIST_BINS
        self.counts = np.zeros(HIST_BINS, np.int64)

    def add(self, x: np.ndarray) -> None:
        while x.min() < self.lo or x.max() >= self.lo + self.width * HIST_BINS:
            merged = self.counts.reshape(-1, 2).sum(1)
            self.counts = np.zeros(HIST_BINS, np.int64)
            if x.min() < self.lo:  # grow to the left: the old range becomes the right half
                self.counts[HIST_BINS // 2 :] = merged
                self.lo -= self.width * HIST_BINS
            else:
                self.counts[: HIST_BINS // 2] = merged
            self.width *= 2
        idx = np.minimum(((x - self.lo) / self.width).astype(np.int64), HIST_BINS - 1)
        self.counts += np.bincount(idx, minlength=HIST_BINS)

    def quantile(self, q: float) -> float:
        cdf = np.cumsum(self.counts) / self.counts.sum()
        return self.lo + self.width * (np.argmax(cdf >= q) + 1)


def compute_stats(chunks: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """One pass over `chunks`, each an (n, d) array."""
    count, mean, m2, lo, hi, hists = 0, None, None, None, None, None
    for chunk in chunks:
        x = np.asarray(chunk, dtype=np.float64).reshape(len(chunk), -1)
        if not len(x):
            continue
        if not np.all(np.isfinite(x)):
            raise ValueError("statistics: the data contains NaN or inf")
        n, cm = len(x), x.mean(0)
        if mean is None:
            mean, m2, lo, hi = cm, ((x - cm) ** 2).sum(0), x.min(0), x.max(0)
            hists = [_GrowingHistogram(lo[d], hi[d]) for d in range(x.shape[1])]
        else:
            delta = cm - mean
            mean = mean + delta * n / (count + n)
            m2 = m2 + ((x - cm) ** 2).sum(0) + delta**2 * count * n / (count + n)
            lo, hi = np.minimum(lo, x.min(0)), np.maximum(hi, x.max(0))
        for d, hist in enumerate(hists):
            hist.add(x[:, d])
        count += n
    if count == 0:
        raise ValueError("statistics: no frames")
    q01 = np.array([h.quantile(0.01) for h in hists])
    q99 = np.array([h.quantile(0.99) for h in hists])
    stats = {"mean": mean, "std": np.sqrt(m2 / count), "min": lo, "max": hi,
             "q01": np.clip(q01, lo, hi), "q99": np.clip(q99, lo, hi)}
    return {k: v.astype(np.float32) for k, v in stats.items()}


def store_stats(store, keys: list[str], chunk_frames: int = 65_536) -> dict[str, dict[str, np.ndarray]]:
    """Stats of `keys` over a store or a LeRobotSource, reading `chunk_frames` frames at a time."""

    def chunks_of(key):
        arr, n = store.array(key), store.num_frames
        return (arr[i : min(i + chunk_frames, n)] for i in range(0, n, chunk_frames))

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

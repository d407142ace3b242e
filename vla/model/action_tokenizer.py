"""Per-dimension binning of actions into tokens (OpenVLA / RT-2 style), built for fast learning.

Each dimension is normalized with its q01..q99 range to [-1, 1] (clipped), then cut into `n_bins` equal
bins. Three choices make a token head learn about as fast as regression:
- training targets are a Gaussian over neighbouring bins (`smoothing_bins` wide), so a near miss is cheap
  and the head learns the order of the bins instead of 256 unrelated classes;
- decoding takes the expected value under the predicted distribution (not the argmax bin), which is
  smooth, sub-bin accurate and averages instead of jumping between modes;
- the feedback token for autoregressive decoding is the bin nearest that expected value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

FILE_NAME = "action_tokenizer.json"


@dataclass
class BinTokenizerConfig:
    n_bins: int = 256
    smoothing_bins: float = 2.0  # std of the Gaussian target, in bins; 0 gives one-hot targets

    def __post_init__(self) -> None:
        if not 2 <= self.n_bins <= 4096:
            raise ValueError(f"n_bins must be in [2, 4096], got {self.n_bins}")
        if self.smoothing_bins < 0:
            raise ValueError(f"smoothing_bins must be >= 0, got {self.smoothing_bins}")


class BinActionTokenizer:
    def __init__(self, cfg: BinTokenizerConfig, low: np.ndarray, high: np.ndarray):
        low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        if low.shape != high.shape or low.ndim != 1:
            raise ValueError(f"low/high must be 1-D of equal shape, got {low.shape} and {high.shape}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("low/high must be finite")
        self.cfg = cfg
        self.low = low
        # A constant dimension (q01 == q99) still gets a valid, tiny range instead of a division by zero.
        self.high = np.maximum(high, low + 1e-6)

    @property
    def n_bins(self) -> int:
        return self.cfg.n_bins

    @property
    def action_dim(self) -> int:
        return len(self.low)

    @property
    def bin_width(self) -> float:
        """In normalized units ([-1, 1] spans all bins)."""
        return 2.0 / self.n_bins

    # ---- numpy side: normalization and bins -------------------------------------------------------------
    def normalize(self, actions: np.ndarray) -> np.ndarray:
        x = 2.0 * (np.asarray(actions, np.float32) - self.low) / (self.high - self.low) - 1.0
        return np.clip(x, -1.0, 1.0)

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) + 1.0) / 2.0 * (self.high - self.low) + self.low).astype(np.float32)

    def to_bins(self, normalized: np.ndarray) -> np.ndarray:
        bins = np.floor((normalized + 1.0) / 2.0 * self.n_bins).astype(np.int64)
        return np.clip(bins, 0, self.n_bins - 1)

    def bin_centers(self) -> np.ndarray:
        return (-1.0 + (np.arange(self.n_bins) + 0.5) * self.bin_width).astype(np.float32)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """(..., H, D) actions -> (..., H*D) bins, time-major (all dims of step 0, then step 1, ...)."""
        actions = np.asarray(actions, np.float32)
        if actions.shape[-1] != self.action_dim:
            raise ValueError(f"action: expected last dim {self.action_dim}, got shape {actions.shape}")
        bins = self.to_bins(self.normalize(actions))
        return bins.reshape(*bins.shape[:-2], -1)

    def decode(self, bins: np.ndarray) -> np.ndarray:
        """(..., H*D) bins -> (..., H, D) actions at bin centers."""
        bins = np.asarray(bins)
        if bins.shape[-1] % self.action_dim:
            raise ValueError(f"{bins.shape[-1]} tokens is not a whole number of {self.action_dim}-d actions")
        x = self.bin_centers()[np.clip(bins, 0, self.n_bins - 1)]
        return self.unnormalize(x.reshape(*bins.shape[:-1], -1, self.action_dim))

    # ---- torch side: training targets and decoding ------------------------------------------------------
    def soft_targets(self, normalized: torch.Tensor) -> torch.Tensor:
        """(..., ) normalized values -> (..., n_bins) target distributions."""
        centers = torch.as_tensor(self.bin_centers(), device=normalized.device)
        if self.cfg.smoothing_bins == 0:
            idx = torch.as_tensor(self.to_bins(normalized.cpu().numpy()), device=normalized.device)
            return torch.nn.functional.one_hot(idx, self.n_bins).float()
        sigma = self.cfg.smoothing_bins * self.bin_width
        logits = -0.5 * ((normalized.unsqueeze(-1) - centers) / sigma) ** 2
        return torch.softmax(logits, dim=-1)

    def soft_nll(self, logits: torch.Tensor, normalized: torch.Tensor) -> torch.Tensor:
        """(..., n_bins) logits, (...) normalized values -> (...) cross-entropy against `soft_targets`."""
        return -(self.soft_targets(normalized) * torch.log_softmax(logits, -1)).sum(-1)

    def expected_value(self, logits: torch.Tensor) -> torch.Tensor:
        centers = torch.as_tensor(self.bin_centers(), device=logits.device, dtype=torch.float32)
        return torch.softmax(logits.float(), dim=-1) @ centers

    def nearest_bin(self, normalized: torch.Tensor) -> torch.Tensor:
        bins = torch.floor((normalized + 1.0) / 2.0 * self.n_bins).long()
        return bins.clamp(0, self.n_bins - 1)

    # ---- persistence ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        payload = {"type": "bins", **asdict(self.cfg), "low": self.low.tolist(), "high": self.high.tolist()}
        (Path(directory) / FILE_NAME).write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> BinActionTokenizer:
        path = Path(directory) / FILE_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the checkpoint has no fitted action tokenizer")
        d = json.loads(path.read_text())
        for key in ("type", "n_bins", "smoothing_bins", "low", "high"):
            if key not in d:
                raise KeyError(f"{path}: missing key {key!r}")
        if d["type"] != "bins":
            raise ValueError(f"{path}: unknown action tokenizer type {d['type']!r}")
        return cls(BinTokenizerConfig(d["n_bins"], d["smoothing_bins"]), np.array(d["low"]), np.array(d["high"]))

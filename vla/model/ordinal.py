"""Sin-cos features of ordered things: action and state bins, and the patches of an image grid.

A fresh embedding row per bin or per patch position starts as an unrelated random vector, so that neighbours
are neighbours has to be learned from data, one row at a time. These features make it true from the start."""

from __future__ import annotations

import numpy as np
import torch


def ordinal_embedding(n: int, dim: int, std: float) -> torch.Tensor:
    """(n, dim) rows for n ordered bins: sin/cos of the bin center at geometric frequencies, scaled to std."""
    centers = torch.linspace(-1, 1, n)[:, None]
    freqs = torch.logspace(np.log10(0.25), np.log10(n / 4), dim // 2)[None] * torch.pi
    features = torch.cat([torch.sin(centers * freqs), torch.cos(centers * freqs)], dim=1)
    features = torch.nn.functional.pad(features, (0, dim - features.shape[1]))
    return features / features.std() * std


def grid_embedding(side: int, dim: int, std: float) -> torch.Tensor:
    """(side * side, dim) rows for the patches of a side x side grid in row-major order: half the features
    from the patch's row, half from its column (a 2-D sin-cos embedding, as MAE's), scaled to std."""
    axis = ordinal_embedding(side, dim // 2, 1.0)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    grid = torch.cat([axis[rows.reshape(-1)], axis[cols.reshape(-1)]], dim=1)
    grid = torch.nn.functional.pad(grid, (0, dim - grid.shape[1]))
    return grid / grid.std() * std

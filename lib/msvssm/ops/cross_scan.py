"""Cross-scan and cross-merge: how SS2D turns an image into four sequences and back.

Symbols: the glossary in :mod:`msvssm.ops`. Directions (K = 4), for a feature
map (b, channels, height, width) and l = height * width::

    k=0  row-major         top-left -> bottom-right, along rows
    k=1  column-major      top-left -> bottom-right, along columns
    k=2  reverse of k=0    bottom-right -> top-left
    k=3  reverse of k=1    bottom-right -> top-left, along columns

``cross_unscan`` puts each direction's sequence back on the image grid
(b, K, channels, height, width) without summing: SE-SS2D recalibrates each
direction there. ``cross_merge`` = sum over K of ``cross_unscan``; it is the
adjoint of ``cross_scan`` (<scan(x), y> == <x, merge(y)>), so each is the
other's backward. ``cross_scan_per_direction`` reads K maps, one per direction,
each in its own direction's order (the adjoint of ``cross_unscan``). Plain tensor
ops (flatten, transpose, flip): autograd derives the gradients.
"""
from __future__ import annotations

import torch
from torch import Tensor

K_DIRECTIONS = 4


def cross_scan(x: Tensor) -> Tensor:
    """(b, channels, height, width) -> (b, K, channels, l): the four scan orders of every pixel."""
    row_major = x.flatten(2)  # (b, channels, l)
    col_major = x.transpose(2, 3).flatten(2)  # (b, channels, l)
    forward = torch.stack([row_major, col_major], dim=1)  # (b, 2, channels, l)
    return torch.cat([forward, forward.flip(-1)], dim=1)  # (b, K, channels, l)


def cross_scan_per_direction(maps: Tensor) -> Tensor:
    """(b, K, channels, height, width) -> (b, K, channels, l): map k read in direction k's order."""
    if maps.shape[1] != K_DIRECTIONS:
        raise ValueError(f"expected (b, 4, channels, height, width); got {tuple(maps.shape)}")
    row_major = maps[:, 0].flatten(2)  # (b, channels, l)
    col_major = maps[:, 1].transpose(2, 3).flatten(2)  # (b, channels, l)
    row_major_rev = maps[:, 2].flatten(2).flip(-1)  # (b, channels, l)
    col_major_rev = maps[:, 3].transpose(2, 3).flatten(2).flip(-1)  # (b, channels, l)
    return torch.stack([row_major, col_major, row_major_rev, col_major_rev], dim=1)  # (b, K, channels, l)


def cross_unscan(y: Tensor, height: int, width: int) -> Tensor:
    """(b, K, channels, l) -> (b, K, channels, height, width): each direction back on the grid."""
    b, k, channels, l = y.shape
    if k != K_DIRECTIONS or l != height * width:
        raise ValueError(f"expected (b, 4, channels, {height}*{width}); got {tuple(y.shape)}")
    row_major = y[:, 0]  # (b, channels, l)
    col_major = y[:, 1]  # (b, channels, l)
    row_major_rev = y[:, 2].flip(-1)  # (b, channels, l)
    col_major_rev = y[:, 3].flip(-1)  # (b, channels, l)
    as_rows = lambda s: s.reshape(b, channels, height, width)  # noqa: E731
    as_cols = lambda s: s.reshape(b, channels, width, height).transpose(2, 3)  # noqa: E731
    grids = [as_rows(row_major), as_cols(col_major), as_rows(row_major_rev), as_cols(col_major_rev)]
    return torch.stack(grids, dim=1)  # (b, K, channels, height, width)


def cross_merge(y: Tensor, height: int, width: int) -> Tensor:
    """(b, K, channels, l) -> (b, channels, height, width): sum of the four directions on the grid."""
    return cross_unscan(y, height, width).sum(dim=1)  # (b, channels, height, width)

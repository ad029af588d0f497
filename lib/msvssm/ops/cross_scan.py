"""Cross-scan and cross-merge: how SS2D turns an image into four sequences and back.

Directions (K = 4), for a feature map (b, c, h, w) and L = h * w::

    k=0  row-major         top-left -> bottom-right, along rows
    k=1  column-major      top-left -> bottom-right, along columns
    k=2  reverse of k=0    bottom-right -> top-left
    k=3  reverse of k=1    bottom-right -> top-left, along columns

``cross_unscan`` puts each direction's sequence back on the image grid
(b, K, c, h, w) without summing: SE-SS2D recalibrates each direction there.
``cross_merge`` = sum over K of ``cross_unscan``; it is the adjoint of
``cross_scan`` (<scan(x), y> == <x, merge(y)>), so each is the other's backward.
Plain tensor ops (flatten, transpose, flip): autograd derives the gradients.
"""
from __future__ import annotations

import torch
from torch import Tensor

K_DIRECTIONS = 4


def cross_scan(x: Tensor) -> Tensor:
    """(b, c, h, w) -> (b, 4, c, L): the four scan orders of every pixel."""
    row_major = x.flatten(2)  # (b, c, L)
    col_major = x.transpose(2, 3).flatten(2)  # (b, c, L)
    forward = torch.stack([row_major, col_major], dim=1)  # (b, 2, c, L)
    return torch.cat([forward, forward.flip(-1)], dim=1)  # (b, 4, c, L)


def cross_unscan(y: Tensor, h: int, w: int) -> Tensor:
    """(b, 4, c, L) -> (b, 4, c, h, w): each direction's output back on the image grid."""
    b, k, c, length = y.shape
    if k != K_DIRECTIONS or length != h * w:
        raise ValueError(f"expected (b, 4, c, {h}*{w}); got {tuple(y.shape)}")
    row_major = y[:, 0]  # (b, c, L)
    col_major = y[:, 1]  # (b, c, L)
    row_major_rev = y[:, 2].flip(-1)  # (b, c, L)
    col_major_rev = y[:, 3].flip(-1)  # (b, c, L)
    as_rows = lambda s: s.reshape(b, c, h, w)  # noqa: E731
    as_cols = lambda s: s.reshape(b, c, w, h).transpose(2, 3)  # noqa: E731
    grids = [as_rows(row_major), as_cols(col_major), as_rows(row_major_rev), as_cols(col_major_rev)]
    return torch.stack(grids, dim=1)  # (b, 4, c, h, w)


def cross_merge(y: Tensor, h: int, w: int) -> Tensor:
    """(b, 4, c, L) -> (b, c, h, w): sum of the four directions on the image grid."""
    return cross_unscan(y, h, w).sum(dim=1)  # (b, c, h, w)

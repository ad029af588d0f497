"""SS2D's scan step as one operator: cross-scan -> selective scan of the K directions -> back on the grid.

Symbols: the glossary in :mod:`msvssm.ops`. For a feature map ``u`` (b, channels,
height, width) and, per direction k, Δ_raw, B and C on the same grid::

    cross_selective_scan(u, dts, A, Bs, Cs, D, delta_bias)
      = cross_unscan(selective_scan(cross_scan(u), cross_scan_per_direction(dts), A,
                                    cross_scan_per_direction(Bs), cross_scan_per_direction(Cs),
                                    D, delta_bias=delta_bias, delta_softplus=True))

that is, direction k's output y_k at every pixel, (b, K, channels, height, width), in
float32 (float64 if any input is float64). :func:`cross_selective_scan_reference` is
that composition, written out; it runs with every scan backend. With the ``numba``
backend, :func:`cross_selective_scan` runs one compiled kernel instead
(:mod:`.cross_scan_numba`) that gives the same numbers (up to float rounding:
the tests check forward and gradients) without copying the maps into scan order.
The backend is chosen as for :func:`msvssm.ops.selective_scan`; which of the two
paths runs follows from it (``numba``: the fused kernel, unless ``fused=False``; any
other: the composition).

Shapes::

    u           (b, channels, height, width)       (channels-last memory is fastest for numba)
    dts         (b, K, channels, height, width)    Δ before delta_bias and softplus
    A           (K * channels, n)
    Bs, Cs      (b, K, n, height, width)           B_t, C_t of direction k at each pixel
    D, delta_bias (K * channels,)
    -> y        (b, K, channels, height, width)
"""
from __future__ import annotations

import torch
from torch import Tensor

from .cross_scan import K_DIRECTIONS, cross_scan, cross_scan_per_direction, cross_unscan
from .registry import resolve_backend
from .scan import selective_scan
from .scan_common import compute_dtype


def _check(u: Tensor, dts: Tensor, A: Tensor, Bs: Tensor, Cs: Tensor, D: Tensor, delta_bias: Tensor) -> None:
    if u.dim() != 4:
        raise ValueError(f"u must be (b, channels, height, width); got {tuple(u.shape)}")
    b, c, height, width = u.shape
    K = K_DIRECTIONS
    if tuple(dts.shape) != (b, K, c, height, width):
        raise ValueError(f"dts must be (b, K, channels, height, width) = {(b, K, c, height, width)}; got {tuple(dts.shape)}")
    if A.dim() != 2 or A.shape[0] != K * c:
        raise ValueError(f"A must be (K * channels = {K * c}, n); got {tuple(A.shape)}")
    n = A.shape[1]
    for name, X in (("Bs", Bs), ("Cs", Cs)):
        if tuple(X.shape) != (b, K, n, height, width):
            raise ValueError(f"{name} must be (b, K, n, height, width) = {(b, K, n, height, width)}; got {tuple(X.shape)}")
    for name, X in (("D", D), ("delta_bias", delta_bias)):
        if tuple(X.shape) != (K * c,):
            raise ValueError(f"{name} must be (K * channels,) = ({K * c},); got {tuple(X.shape)}")


def cross_selective_scan_reference(u, dts, A, Bs, Cs, D, delta_bias, *, backend: str | None = None) -> Tensor:
    """The composition, op by op; ``backend`` runs the 1D scan (shapes: the module docstring)."""
    _check(u, dts, A, Bs, Cs, D, delta_bias)
    b, c, height, width = u.shape
    K, l = K_DIRECTIONS, height * width
    dtype = compute_dtype(u, dts, A, Bs, Cs)
    y = selective_scan(
        cross_scan(u).reshape(b, K * c, l).to(dtype),  # u in the four orders  (b, d, l), d = K * c
        cross_scan_per_direction(dts).reshape(b, K * c, l).to(dtype),  # Δ_raw  (b, d, l)
        A.to(dtype),  # (d, n)
        cross_scan_per_direction(Bs).to(dtype),  # (b, g = K, n, l)
        cross_scan_per_direction(Cs).to(dtype),  # (b, K, n, l)
        D.to(dtype),  # (d,)
        delta_bias=delta_bias.to(dtype),
        delta_softplus=True,
        backend=backend,
    )  # (b, d, l)
    return cross_unscan(y.reshape(b, K, c, l), height, width)  # (b, K, c, height, width)


def cross_selective_scan(u, dts, A, Bs, Cs, D, delta_bias, *, backend: str | None = None, fused: bool = True) -> Tensor:
    """SS2D's scan step (shapes: the module docstring).

    With the ``numba`` backend and ``fused`` (the default), the fused kernel; otherwise the
    composition (``fused=False`` keeps it for comparison, e.g. in ``benchmarks/bench_train.py``).
    """
    _check(u, dts, A, Bs, Cs, D, delta_bias)
    with torch.autocast(device_type=u.device.type, enabled=False):
        if fused and resolve_backend(backend, u.device) == "numba":
            from .cross_scan_numba import cross_selective_scan_numba

            return cross_selective_scan_numba(u, dts, A, Bs, Cs, D, delta_bias)
        return cross_selective_scan_reference(u, dts, A, Bs, Cs, D, delta_bias, backend=backend)

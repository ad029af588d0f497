"""Selective scan (S6): one entry point, several backends.

Symbols and shapes follow the glossary in :mod:`msvssm.ops`. The recurrence, per
batch, channel and state index, with zero-order hold for A and Euler for B::

    h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t        (Ā = exp(ΔA), B̄ = ΔB)
    y_t = <C_t, h_t> + D u_t

Backends live in their own modules (``scan_reference``, ``scan_chunked``,
``scan_numba``, ``scan_cuda``) and are found through :mod:`.registry`, which
imports each only when its name is first needed.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .registry import available_scan_backends, get_backend, resolve_backend
from .scan_common import check_scan_inputs
from .scan_reference import selective_scan_reference

__all__ = ["selective_scan", "selective_scan_reference", "available_scan_backends"]


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    backend: str | None = None,
):
    """Drop-in for mamba-ssm's ``selective_scan_fn`` (real values) with an explicit ``backend``.

    Shapes: u, delta, z (b, d, l); A (d, n); D, delta_bias (d,); B and C each
    grouped (b, g, n, l) with d divisible by g, variable (b, n, l), or fixed
    (d, n), independently. Gradients come back in the shape and dtype of each input.

    Dtypes: every backend computes in float32, or in float64 when any of u,
    delta, A, B, C is float64 (bf16/fp16 are upcast), with autocast disabled.
    ``y`` (b, d, l) is returned in the dtype of ``u``: pass a float32 ``u`` to
    keep ``y`` in float32 (this costs nothing extra, the backends upcast ``u``
    anyway). The last state (b, d, n), when ``return_last_state``, is in the
    compute dtype.

    ``backend``: a name from :func:`available_scan_backends`, or ``"auto"``;
    ``None`` reads ``$MSVSSM_SCAN_BACKEND``, else ``"auto"``, which picks the best
    backend for the tensors' device and logs the choice once. An unavailable
    backend is an error, never a silent fallback.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    fn = get_backend(resolve_backend(backend, u.device)).fn
    with torch.autocast(device_type=u.device.type, enabled=False):
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

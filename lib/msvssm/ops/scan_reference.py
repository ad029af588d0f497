"""The ``reference`` selective-scan backend: a readable loop over time, the ground truth.

Written to be read, not to be fast, in the style of mamba-ssm's
``selective_scan_ref``; autograd gives its gradients. Symbols: the glossary in
:mod:`msvssm.ops`. It shares only the input checks and the choice of compute
dtype with the fast backends, never their B/C conversion or their ``delta_bias``
/ softplus / ``D`` / ``z`` handling, so a bug there cannot hide in a comparison
against it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import ScanBackend, register_backend
from .scan_common import check_scan_inputs, compute_dtype


def _per_channel(X: Tensor, b: int, d: int, n: int, l: int) -> Tensor:
    """B or C in any form -> (b, d, n, l): each channel's value at each step."""
    if X.dim() == 2:  # fixed (d, n): the same at every step
        X = X[None, :, :, None]  # (1, d, n, 1)
    elif X.dim() == 3:  # variable (b, n, l): one group, shared by all d channels
        X = X[:, None]  # (b, 1, n, l)
    else:  # grouped (b, g, n, l): each group's value repeated for its d // g channels
        X = X.repeat_interleave(d // X.shape[1], dim=1)
    return X.expand(b, d, n, l)


def selective_scan_reference(
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
):
    """S6 as a plain loop over time. Arguments as mamba-ssm's ``selective_scan_fn``.

    u, delta (b, d, l); A (d, n); B, C (b, g, n, l), (b, n, l) or fixed (d, n);
    D, delta_bias (d,); z (b, d, l). Computes in float32, or float64 if any input
    is float64. Returns y (b, d, l) in the dtype of ``u``, and the last state
    (b, d, n) in the compute dtype when ``return_last_state``.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    ct = compute_dtype(u, delta, A, B, C)
    u, delta, A, B, C = (t.to(ct) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    (b, d, l), n = u.shape, A.shape[1]
    B = _per_channel(B, b, d, n, l)  # (b, d, n, l)
    C = _per_channel(C, b, d, n, l)  # (b, d, n, l)
    # Discretisation: zero-order hold for A (Ā = exp(Δ A)), Euler for B (B̄ = Δ B), as in Mamba.
    A_bar = torch.exp(delta[:, :, None, :] * A[None, :, :, None])  # (b, d, n, l)
    Bu_bar = delta[:, :, None, :] * B * u[:, :, None, :]  # (b, d, n, l): B̄ u
    h = u.new_zeros(b, d, n)  # (b, d, n): the state before t = 0
    ys = []
    for t in range(l):
        h = A_bar[..., t] * h + Bu_bar[..., t]  # h_t = Ā_t h_{t-1} + B̄_t u_t
        ys.append((h * C[..., t]).sum(-1))  # y_t = <C_t, h_t>, (b, d)
    y = torch.stack(ys, dim=-1)  # (b, d, l)
    if D is not None:
        y = y + D.to(ct)[None, :, None] * u  # skip
    if z is not None:
        y = y * F.silu(z.to(ct))  # gate
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y


register_backend(
    ScanBackend("reference", selective_scan_reference, ("cpu", "cuda", "mps"), lambda: True, lambda: "")
)

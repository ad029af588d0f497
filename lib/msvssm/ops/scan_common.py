"""What every scan backend shares: input checks, the compute dtype, B/C forms, no autocast.

Symbols and shapes: the glossary in :mod:`msvssm.ops`. ``B`` and ``C`` each come
in one of three forms, as in mamba-ssm's ``selective_scan_fn`` (real values only)::

    grouped   (b, g, n, l)   input-dependent, shared by the d // g channels of a group
    variable  (b, n, l)      input-dependent, one group (g = 1)
    fixed     (d, n)         input-independent, one row per channel, the same at every step

B and C may be in different forms. The fast backends' cores see only the grouped
form with one group count for both (:func:`grouped_bc`); the reference loop reads
each form directly, so the two paths do not share this conversion.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def bc_groups(X: Tensor, name: str, b: int, d: int, n: int, l: int) -> int | None:
    """Check one of B/C against the three forms; return its group count (None when fixed)."""
    if X.is_complex():
        raise ValueError(f"{name} is complex: only real-valued scans are supported (mamba-ssm's complex mode is not)")
    if X.dim() == 2 and tuple(X.shape) == (d, n):
        return None
    if X.dim() == 3 and tuple(X.shape) == (b, n, l):
        return 1
    if X.dim() == 4 and X.shape[0] == b and tuple(X.shape[2:]) == (n, l):
        if d % X.shape[1]:
            raise ValueError(f"channels d={d} must be divisible by the groups g={X.shape[1]} of {name}")
        return X.shape[1]
    raise ValueError(
        f"{name} must be (b={b}, g, n={n}, l={l}), (b={b}, n={n}, l={l}) or fixed (d={d}, n={n}); got {tuple(X.shape)}"
    )


def check_scan_inputs(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise ``ValueError`` naming the first argument whose shape does not fit the glossary."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be (b, d, l); got {tuple(u.shape)} and {tuple(delta.shape)}")
    b, d, l = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d={d}, n); got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("A is complex: only real-valued scans are supported (mamba-ssm's complex mode is not)")
    n = A.shape[1]
    bc_groups(B, "B", b, d, n, l)
    bc_groups(C, "C", b, d, n, l)
    for name, t, shape in (("D", D, (d,)), ("delta_bias", delta_bias, (d,)), ("z", z, (b, d, l))):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{name} must be {shape}; got {tuple(t.shape)}")


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """At least float32: float64 if any input is float64, else float32 (bf16/fp16 are upcast)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def autocast_off(fn: Callable) -> Callable:
    """Decorate an autograd Function's forward/backward to run with autocast disabled.

    The device is that of the first tensor argument. Without this, einsums in a
    core run in bf16/fp16 under an active autocast in forward only (autograd runs
    backward outside it), so forward and gradient would disagree.
    """

    @functools.wraps(fn)
    def wrapper(ctx, *args):
        device_type = next(a.device.type for a in args if isinstance(a, Tensor))
        with torch.autocast(device_type=device_type, enabled=False):
            return fn(ctx, *args)

    return wrapper


def _as_grouped(X: Tensor, groups: int, b: int, l: int) -> Tensor:
    """Any form of B/C -> (b, groups, n, l), in autograd (the backward of expand sums)."""
    if X.dim() == 2:  # fixed (d, n): group = channel, the same at every step
        X = X[None, :, :, None].expand(b, -1, -1, l)
    elif X.dim() == 3:  # variable (b, n, l): one group
        X = X[:, None]
    g, n = X.shape[1], X.shape[2]
    if g != groups:  # each of the g groups splits into groups // g equal ones
        X = X[:, :, None].expand(b, g, groups // g, n, l).reshape(b, groups, n, l)
    return X


def grouped_bc(B: Tensor, C: Tensor, b: int, d: int, l: int) -> tuple[Tensor, Tensor]:
    """B and C as (b, g, n, l) with one group count g for both (the least common multiple)."""
    gb, gc = (d if X.dim() == 2 else 1 if X.dim() == 3 else X.shape[1] for X in (B, C))
    groups = math.lcm(gb, gc)
    return _as_grouped(B, groups, b, l), _as_grouped(C, groups, b, l)


def run_scan_core(
    core: Callable,
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
    """Pre- and post-processing around a fast backend's core, all in autograd.

    Casts to the compute dtype (:func:`compute_dtype`), brings B and C to one
    grouped form, adds ``delta_bias`` and applies softplus, calls
    ``core(u, delta, A, B, C) -> (y, last_state)`` (the core owns the recurrence
    and its gradient), then adds ``D * u``, gates with ``silu(z)`` and casts
    ``y`` (b, d, l) back to the dtype of ``u``. The last state (b, d, n) stays in
    the compute dtype.
    """
    dtype_in = u.dtype
    ct = compute_dtype(u, delta, A, B, C)
    u, delta, A, B, C = (t.to(ct) for t in (u, delta, A, B, C))
    B, C = grouped_bc(B, C, *u.shape)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    y, last_state = core(u, delta, A, B, C)
    if D is not None:
        y = y + D.to(ct)[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.to(ct))
    y = y.to(dtype_in)
    return (y, last_state) if return_last_state else y


"""Exercises of notebook 02 selective scan: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

import math  # noqa: F401
from typing import Callable

import numpy as np  # noqa: F401
import torch  # noqa: F401

from ..optional import require  # noqa: F401
from .core import Result, _call, _close, exercise  # noqa: F401




@exercise("02", "zoh_B_bar", wrong=(
    lambda delta, A, B: delta * B,  # Mamba's Euler simplification
))
def check_zoh_B_bar(fn: Callable) -> Result:
    """Exercise 02.1: ``zoh_B_bar(delta, A, B)`` -> the exact zero-order-hold B̄ = (exp(ΔA) - 1) / A · B (diagonal A)."""
    delta = torch.tensor([0.01, 0.1, 1.0, 3.0], dtype=torch.float64)[:, None]  # (4, 1)
    A = -torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)[None, :]  # (1, 3)
    B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)[None, :]  # (1, 3)
    got, err = _call(fn, delta.clone(), A.clone(), B.clone())
    if err:
        return False, err
    want = torch.expm1(delta * A) / A * B  # (4, 3)
    ok, msg = _close(got, want, rtol=1e-6, atol=1e-9)
    if not ok:
        euler = delta * B
        if _close(got, euler, 1e-6, 1e-9)[0]:
            return False, "that is Mamba's Euler simplification ΔB; the exact ZOH has (exp(ΔA) - 1) / A"
        return False, msg
    return True, "exact ZOH; it matches ΔB to first order in Δ (try Δ = 0.01 against Δ = 3)"


def _loop_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h, out = torch.zeros_like(a[..., 0]), []
    for t in range(a.shape[-1]):
        h = a[..., t] * h + b[..., t]
        out.append(h)
    return torch.stack(out, -1)


@exercise("02", "parallel_scan", wrong=(
    lambda a, b: torch.cumsum(b, -1),  # forgets the decay
))
def check_parallel_scan(fn: Callable) -> Result:
    """Exercise 02.2: ``parallel_scan(a, b)`` -> h with h_t = a_t h_{t-1} + b_t (h_{-1} = 0), in O(log L) vectorised steps."""
    gen = torch.Generator().manual_seed(0)
    for length in (1, 7, 16, 37):
        a = torch.rand(3, length, generator=gen, dtype=torch.float64)
        b = torch.randn(3, length, generator=gen, dtype=torch.float64)
        got, err = _call(fn, a.clone(), b.clone())
        if err:
            return False, err
        ok, msg = _close(got, _loop_scan(a, b), rtol=1e-9, atol=1e-10)
        if not ok:
            return False, f"L = {length}: {msg}"
    return True, "the same h_t as the loop (the combine rule is associative)"


@exercise("02", "half_life", wrong=(
    lambda delta, a: 1 / (delta * -a),  # time constant, not half-life
))
def check_half_life(fn: Callable) -> Result:
    """Exercise 02.3: ``half_life(delta, a)`` -> steps after which exp(Δ a t) = 1/2 (a < 0)."""
    for delta, a in ((0.1, -1.0), (1.0, -1.0), (0.01, -4.0), (0.5, -0.25)):
        got, err = _call(fn, delta, a)
        if err:
            return False, err
        want = math.log(2) / (delta * -a)
        ok, msg = _close(float(got) if np.ndim(got) == 0 else got, want, rtol=1e-6)
        if not ok:
            return False, f"half_life({delta}, {a}): {msg}"
    return True, "ln 2 / (Δ |a|): small Δ remembers long"

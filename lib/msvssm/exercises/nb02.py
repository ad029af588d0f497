"""Exercises of notebook 02 selective scan: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it).
Symbols: docs/notation.md (u input, Δ step, A (d, n), B and C input/output matrices, D skip)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .core import SCAN_MODULES, Result, _call, _call_own, _close, exercise

# ---------------------------------------------------------------------------------------------------
# 02.1 the exact zero-order-hold B̄


def _zoh(delta, A, B):
    return torch.expm1(delta * A) / A * B


@exercise("02", "zoh_B_bar", wrong=(
    lambda delta, A, B: delta * B,  # Mamba's Euler simplification
    lambda delta, A, B: torch.expm1(delta * A) * B,  # forgets the division by A
    lambda delta, A, B: -torch.expm1(delta * A) / A * B,  # sign: (1 - exp(ΔA)) / A
))
def check_zoh_B_bar(fn: Callable) -> Result:
    """Exercise 02.1: ``zoh_B_bar(delta, A, B)`` -> the exact zero-order-hold B̄ = (exp(ΔA) - 1) / A · B (diagonal A)."""
    delta = torch.tensor([0.01, 0.1, 1.0, 3.0], dtype=torch.float64)[:, None]  # (4, 1)
    A = -torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)[None, :]  # (1, 3)
    B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)[None, :]  # (1, 3)
    got, err = _call(fn, delta.clone(), A.clone(), B.clone())
    if err:
        return False, err
    want = _zoh(delta, A, B)  # (4, 3)
    ok, msg = _close(got, want, rtol=1e-6, atol=1e-9)
    if not ok:
        hints = (
            (delta * B, "that is Mamba's Euler simplification ΔB; the exact ZOH has (exp(ΔA) - 1) / A"),
            (torch.expm1(delta * A) * B, "you forgot to divide by A: integrate e^{As} over [0, Δ]"),
            (-want, "the sign is flipped: B̄ = (exp(ΔA) - 1) / A · B is positive for B > 0 (A < 0 and "
                    "exp(ΔA) < 1, so both factors are negative)"),
        )
        for wrong, hint in hints:
            if _close(got, wrong, 1e-6, 1e-9)[0]:
                return False, hint
        return False, msg
    return True, "exact ZOH; it matches ΔB to first order in Δ (try Δ = 0.01 against Δ = 3)"


# ---------------------------------------------------------------------------------------------------
# 02.2 the S6 recurrence, my_scan


def _s6(u, delta, A, B, C, D, *, a_bar="zoh", b_bar="euler", skip=True, read_before=False, softplus=False):
    """The S6 loop with switches for the usual mistakes (the defaults are the library's recurrence)."""
    if softplus:
        delta = F.softplus(delta)
    b, d, l = u.shape
    h = u.new_zeros(b, d, A.shape[1])  # (b, d, n)
    ys = []
    for t in range(l):
        dA = delta[:, :, t, None] * A  # (b, d, n)
        A_bar = torch.exp(dA) if a_bar == "zoh" else 1 + dA
        B_t = B[:, None, :, t]  # (b, 1, n)
        B_bar = delta[:, :, t, None] * B_t if b_bar == "euler" else torch.expm1(dA) / A * B_t
        h_new = A_bar * h + B_bar * u[:, :, t, None]
        ys.append(((h if read_before else h_new) * C[:, None, :, t]).sum(-1))
        h = h_new
    y = torch.stack(ys, -1)
    return y + D[:, None] * u if skip else y


_SCAN_MISTAKES = (
    (dict(a_bar="euler"), "Ā looks like Euler's 1 + ΔA; the recurrence uses the exact ZOH decay Ā = exp(ΔA)"),
    (dict(skip=False), "the skip is missing: y_t = C_t h_t + D u_t (D (d,) multiplies each channel's input)"),
    (dict(read_before=True), "y_t reads the state before the update: first h_t = Ā_t h_{t-1} + B̄_t u_t, "
                             "then y_t = C_t h_t + D u_t"),
    (dict(b_bar="zoh"), "you used the exact ZOH B̄ = (exp(ΔA) - 1)/A · B; the library (like Mamba) uses "
                        "B̄ = ΔB: use that here"),
    (dict(softplus=True), "delta is already the step Δ (positive): do not apply softplus again"),
)


@exercise("02", "my_scan", wrong=(
    lambda *args, **kw: __import__("msvssm").ops.selective_scan_reference(*args, **kw),  # the library's scan
    lambda u, delta, A, B, C, D: _s6(u, delta, A, B, C, D, a_bar="euler"),  # Euler instead of ZOH for Ā
    lambda u, delta, A, B, C, D: _s6(u, delta, A, B, C, D, skip=False),  # forgets D u
    lambda u, delta, A, B, C, D: _s6(u, delta, A, B, C, D, read_before=True),  # y_t from h_{t-1}
))
def check_my_scan(fn: Callable) -> Result:
    """Exercise 02.2: ``my_scan(u, delta, A, B, C, D)`` -> y (b, d, l), the S6 recurrence, against
    ``msvssm.selective_scan_reference``: u, delta (b, d, l) (delta is Δ, already positive); A (d, n);
    B, C (b, n, l); D (d,)."""
    from ..ops.scan_reference import selective_scan_reference

    gen = torch.Generator().manual_seed(2)
    for b, d, l, n in ((2, 3, 12, 4), (1, 2, 1, 3)):
        u = torch.randn(b, d, l, generator=gen, dtype=torch.float64)
        delta = 0.05 + 1.5 * torch.rand(b, d, l, generator=gen, dtype=torch.float64)  # Δ in [0.05, 1.55]
        A = -torch.linspace(0.5, 3.0, d * n, dtype=torch.float64).reshape(d, n)  # negative, distinct
        B = torch.randn(b, n, l, generator=gen, dtype=torch.float64)
        C = torch.randn(b, n, l, generator=gen, dtype=torch.float64)
        D = torch.linspace(0.5, 1.5, d, dtype=torch.float64)
        args = tuple(t.clone() for t in (u, delta, A, B, C, D))
        got, err = _call_own(fn, SCAN_MODULES, *args)
        if err:
            return False, err
        want = selective_scan_reference(u, delta, A, B, C, D)
        ok, msg = _close(got, want, rtol=1e-5, atol=1e-6)
        if not ok:
            if torch.is_tensor(got) and tuple(got.shape) == (b, d, n, l):
                return False, "return y (b, d, l): sum over the n states, y_t = Σ_n C_t[n] h_t[n] (+ D u_t)"
            for switches, hint in _SCAN_MISTAKES:
                if _close(got, _s6(u, delta, A, B, C, D, **switches), 1e-5, 1e-6)[0]:
                    return False, hint
            return False, f"(b, d, l, n) = {(b, d, l, n)}: {msg}"
    return True, "the same y as msvssm.selective_scan_reference: you wrote S6"


# ---------------------------------------------------------------------------------------------------
# 02.3 the LTI kernel and 02.4 the causal convolution


def _kernel(delta, A, B, C, L, *, start=0, b_bar="euler", a_bar="zoh"):
    dA = delta[:, None] * A  # (d, n)
    A_bar = torch.exp(dA) if a_bar == "zoh" else 1 + dA
    B_bar = {"euler": delta[:, None] * B, "none": B, "zoh": torch.expm1(dA) / A * B}[b_bar]
    k = torch.arange(start, start + L, dtype=A.dtype)  # (L,)
    return (C[..., None] * A_bar[..., None] ** k * B_bar[..., None]).sum(1)  # (d, L)


_KERNEL_MISTAKES = (
    (dict(start=1), "the kernel starts one step late: K̄_0 = C B̄ (Ā⁰ = 1), the input enters the state at its own step"),
    (dict(b_bar="none"), "B̄ = ΔB, not B: Δ also scales how much of u_t gets in"),
    (dict(a_bar="euler"), "Ā looks like Euler's 1 + ΔA; use the ZOH decay Ā = exp(ΔA)"),
    (dict(b_bar="zoh"), "you used the exact ZOH B̄; the library (like Mamba) uses B̄ = ΔB: use that here"),
)


@exercise("02", "lti_kernel", wrong=(
    lambda delta, A, B, C, L: _kernel(delta, A, B, C, L, start=1),  # Ā¹ first: off by one
    lambda delta, A, B, C, L: _kernel(delta, A, B, C, L, b_bar="none"),  # B instead of B̄ = ΔB
    lambda delta, A, B, C, L: _kernel(delta, A, B, C, L, a_bar="euler"),  # Euler decay 1 + ΔA
))
def check_lti_kernel(fn: Callable) -> Result:
    """Exercise 02.3: ``lti_kernel(delta, A, B, C, L)`` -> K̄ (d, L) with K̄_k = Σ_n C[:, n] Ā[:, n]^k B̄[:, n],
    Ā = exp(ΔA), B̄ = ΔB; delta (d,), A, B, C (d, n). Checked against the impulse response of
    ``selective_scan_reference`` with Δ, B, C fixed."""
    from ..ops.scan_reference import selective_scan_reference

    gen = torch.Generator().manual_seed(3)
    d, n, L = 3, 4, 20
    delta = torch.tensor([0.1, 0.5, 1.2], dtype=torch.float64)
    A = -torch.linspace(0.3, 2.0, d * n, dtype=torch.float64).reshape(d, n)
    B = torch.randn(d, n, generator=gen, dtype=torch.float64)
    C = torch.randn(d, n, generator=gen, dtype=torch.float64)
    got, err = _call_own(fn, SCAN_MODULES, delta.clone(), A.clone(), B.clone(), C.clone(), L)
    if err:
        return False, err
    impulse = torch.zeros(1, d, L, dtype=torch.float64)
    impulse[..., 0] = 1.0
    want = selective_scan_reference(impulse, delta[None, :, None].expand(1, d, L), A, B, C)[0]  # (d, L)
    ok, msg = _close(got, want, rtol=1e-6, atol=1e-9)
    if not ok:
        for switches, hint in _KERNEL_MISTAKES:
            if _close(got, _kernel(delta, A, B, C, L, **switches), 1e-6, 1e-9)[0]:
                return False, hint
        if torch.is_tensor(got) and tuple(got.shape) == (d, n, L):
            return False, "sum over the n states: K̄_k = Σ_n C[:, n] Ā[:, n]^k B̄[:, n], shape (d, L)"
        return False, msg
    return True, "K̄ is the scan's response to an impulse at t = 0"


def _conv_truth(u, K):
    d, L = K.shape
    return F.conv1d(F.pad(u, (L - 1, 0)), K.flip(-1)[:, None], groups=d)  # (b, d, L): y_t = Σ_k K_k u_{t-k}


def _correlation(u, K):
    d, L = K.shape
    return F.conv1d(F.pad(u, (0, L - 1)), K[:, None], groups=d)  # y_t = Σ_k K_k u_{t+k}: sees the future


def _circular(u, K):
    L = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u, n=L) * torch.fft.rfft(K, n=L), n=L)  # wraps around: no padding


def _late(u, K):
    return F.pad(_conv_truth(u, K)[..., :-1], (1, 0))  # y_t = Σ_{k>=1} K_{k-1} u_{t-k}


@exercise("02", "causal_conv", wrong=(_correlation, _circular, _late))
def check_causal_conv(fn: Callable) -> Result:
    """Exercise 02.4: ``causal_conv(u, K)`` -> y (b, d, L) with y_t = Σ_{k=0}^{t} K_k u_{t-k}; u (b, d, L), K (d, L)."""
    gen = torch.Generator().manual_seed(4)
    for b, d, L in ((2, 3, 16), (1, 1, 5)):
        u = torch.randn(b, d, L, generator=gen, dtype=torch.float64)
        K = torch.randn(d, L, generator=gen, dtype=torch.float64)
        got, err = _call(fn, u.clone(), K.clone())
        if err:
            return False, err
        ok, msg = _close(got, _conv_truth(u, K), rtol=1e-6, atol=1e-9)
        if not ok:
            hints = (
                (_correlation, "that is a correlation (y_t uses u_{t+k}, the future): flip the kernel, "
                               "y_t = Σ_k K_k u_{t-k}; torch's conv1d correlates"),
                (_circular, "the FFT product is a circular convolution: the end wraps onto the start; "
                            "zero-pad to 2L before the FFT and keep the first L outputs"),
                (_late, "off by one: K_0 multiplies u_t itself (y_t = K_0 u_t + K_1 u_{t-1} + ...)"),
            )
            for wrong, hint in hints:
                if _close(got, wrong(u, K), 1e-6, 1e-9)[0]:
                    return False, hint
            return False, f"(b, d, L) = {(b, d, L)}: {msg}"
    return True, "a causal convolution: y_t sees u_0 ... u_t only"


# ---------------------------------------------------------------------------------------------------
# 02.5 memory in steps


@exercise("02", "half_life", wrong=(
    lambda delta, a: 1 / (delta * -a),  # time constant, not half-life
    lambda delta, a: math.log(2) / -a,  # forgets Δ
))
def check_half_life(fn: Callable) -> Result:
    """Exercise 02.5: ``half_life(delta, a)`` -> steps after which exp(Δ a t) = 1/2 (a < 0)."""
    for delta, a in ((0.1, -1.0), (1.0, -1.0), (0.01, -4.0), (0.5, -0.25)):
        got, err = _call(fn, delta, a)
        if err:
            return False, err
        want = math.log(2) / (delta * -a)
        ok, msg = _close(float(got) if np.ndim(got) == 0 else got, want, rtol=1e-6)
        if not ok:
            try:
                value = float(got)
            except Exception:
                return False, f"half_life({delta}, {a}): {msg}"
            if math.isclose(value, 1 / (delta * -a), rel_tol=1e-6):
                return False, "that is the time constant 1/(Δ|a|) (decay to 1/e); the half-life has ln 2 on top"
            if math.isclose(value, math.log(2) / -a, rel_tol=1e-6):
                return False, "one step decays by exp(Δ a), not exp(a): Δ belongs in the answer"
            return False, f"half_life({delta}, {a}): {msg}"
    return True, "ln 2 / (Δ |a|): small Δ remembers long"


# ---------------------------------------------------------------------------------------------------
# 02.6 the parallel scan


def _loop_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h, out = torch.zeros_like(a[..., 0]), []
    for t in range(a.shape[-1]):
        h = a[..., t] * h + b[..., t]
        out.append(h)
    return torch.stack(out, -1)


def _cumprod_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = P_t Σ_{s<=t} b_s / P_s with P = cumprod(a): right in exact arithmetic, 0/0 once P underflows."""
    P = torch.cumprod(a, -1)
    return P * torch.cumsum(b / P, -1)


def _wrong_order_combine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hillis-Steele with the two maps composed in the wrong order (a_prev b + b_prev)."""
    A, Bv = a.clone(), b.clone()
    length, stride = a.shape[-1], 1
    while stride < length:
        A_prev, B_prev = torch.ones_like(A), torch.zeros_like(Bv)
        A_prev[..., stride:], B_prev[..., stride:] = A[..., :-stride], Bv[..., :-stride]
        Bv = A_prev * Bv + B_prev
        A = A * A_prev
        stride *= 2
    return Bv


def _graph_size(out: torch.Tensor) -> int:
    """Operations autograd recorded to build ``out`` (each whole-tensor op is one node)."""
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(nxt for nxt, _ in node.next_functions)
    return len(seen)


_SHORT, _LONG = 64, 1024  # 6 and 10 doubling rounds; a loop over t makes >= 960 more operations on _LONG
_OPS_PER_ROUND = 40  # generous: the Hillis-Steele solution records about 8 per round


@exercise("02", "parallel_scan", wrong=(
    lambda a, b: torch.cumsum(b, -1),  # forgets the decay
    _loop_scan,  # right numbers, but a Python loop over t
    _cumprod_divide,  # the form section 10 warns against: divides by cumulative products
    _wrong_order_combine,  # composes the two affine maps in the wrong order
))
def check_parallel_scan(fn: Callable) -> Result:
    """Exercise 02.6: ``parallel_scan(a, b)`` -> h with h_t = a_t h_{t-1} + b_t (h_{-1} = 0), in O(log L) vectorised steps.

    Three tests: the values against a loop (random a in (0, 1)); decays that underflow (a = 0 and
    a ~ 1e-20, as exp(ΔA) does for a huge Δ), where dividing by cumulative products gives 0/0; and the
    number of operations autograd records for L = 64 and L = 1024, which grows by L for a loop over t
    and by a few per doubling round for a parallel scan.
    """
    gen = torch.Generator().manual_seed(0)
    for length in (1, 7, 16, 37):
        a = torch.rand(3, length, generator=gen, dtype=torch.float64)
        b = torch.randn(3, length, generator=gen, dtype=torch.float64)
        got, err = _call_own(fn, SCAN_MODULES, a.clone(), b.clone())
        if err:
            return False, err
        ok, msg = _close(got, _loop_scan(a, b), rtol=1e-9, atol=1e-10)
        if not ok:
            if _close(got, torch.cumsum(b, -1), 1e-9, 1e-10)[0]:
                return False, "that is a plain cumulative sum: the decays a_t are missing"
            if length > 1 and _close(got, _wrong_order_combine(a, b), 1e-9, 1e-10)[0]:
                return False, ("the two steps are composed in the wrong order: applying (a₁, b₁) then (a₂, b₂) "
                               "gives h ↦ a₂(a₁h + b₁) + b₂ = (a₂a₁, a₂b₁ + b₂)")
            return False, f"L = {length}: {msg}"

    # decays that underflow: exactly 0 (a reset) and 1e-20 (two steps of it are below float64's range)
    a = torch.rand(2, 48, generator=gen, dtype=torch.float64) * 0.5 + 0.5
    a[:, 5::7] = 0.0
    a[:, 3::4] = 1e-20
    b = torch.randn(2, 48, generator=gen, dtype=torch.float64)
    got, err = _call_own(fn, SCAN_MODULES, a.clone(), b.clone())
    if err:
        return False, f"with decays that underflow (a_t = 0 or 1e-20): {err}"
    if torch.is_tensor(got) and not torch.isfinite(got).all():
        return False, ("NaN or inf where the decay underflows (a_t = 0 or 1e-20, as exp(ΔA) does for a huge Δ): "
                       "you divide by cumulative products (or take log a). Only multiply: combine pairs "
                       "(a₂a₁, a₂b₁ + b₂)")
    ok, msg = _close(got, _loop_scan(a, b), rtol=1e-9, atol=1e-10)
    if not ok:
        return False, f"with decays that underflow (a_t = 0 or 1e-20): {msg}"

    # vectorised: the recorded operations may grow with log L, not with L
    sizes = {}
    for length in (_SHORT, _LONG):
        a = torch.rand(3, length, generator=gen, dtype=torch.float64).requires_grad_()
        b = torch.randn(3, length, generator=gen, dtype=torch.float64).requires_grad_()
        got, err = _call_own(fn, SCAN_MODULES, a.clone(), b.clone())
        if err:
            return False, f"L = {length}: {err}"
        if not torch.is_tensor(got) or got.grad_fn is None:
            return False, ("the result is not built from a and b by torch operations (did you leave torch: "
                           "numpy, .tolist(), .item() or torch.no_grad?): write it with whole-tensor torch ops")
        sizes[length] = _graph_size(got)
    rounds = math.log2(_LONG) - math.log2(_SHORT)
    if sizes[_LONG] - sizes[_SHORT] > _OPS_PER_ROUND * rounds:
        return False, (f"your function records {sizes[_SHORT]} tensor operations for L = {_SHORT} and {sizes[_LONG]} for "
                       f"L = {_LONG}: it loops over t (or over blocks of t). A parallel scan needs ⌈log₂ L⌉ rounds "
                       f"of whole-tensor operations: {int(rounds)} more rounds, not {_LONG - _SHORT} more steps")
    return True, (f"the same h_t as the loop, in whole-tensor rounds ({sizes[_SHORT]} operations for L = {_SHORT}, "
                  f"{sizes[_LONG]} for L = {_LONG}), and safe where decays underflow")

"""Solutions to the exercises of notebook 02 (checked by tests/test_exercises.py).

Symbols: docs/notation.md. u input (b, d, l), delta = Δ (b, d, l), A (d, n) negative, B and C the input
and output matrices, D the skip (d,), h the state (b, d, n), y the output (b, d, l).
"""
import math

import torch
import torch.nn.functional as F


def zoh_B_bar(delta, A, B):
    """Exact zero-order hold for a diagonal A: B̄ = (exp(ΔA) - 1) / A * B."""
    return torch.expm1(delta * A) / A * B


def my_scan(u, delta, A, B, C, D):
    """S6 as a loop: u, delta (b, d, l); A (d, n); B, C (b, n, l); D (d,) -> y (b, d, l)."""
    b, d, l = u.shape
    h = u.new_zeros(b, d, A.shape[1])  # (b, d, n): h_{-1} = 0
    ys = []
    for t in range(l):
        A_bar = torch.exp(delta[:, :, t, None] * A)  # (b, d, n): ZOH, Ā_t = exp(Δ_t A)
        B_bar = delta[:, :, t, None] * B[:, None, :, t]  # (b, d, n): Mamba's B̄_t = Δ_t B_t
        h = A_bar * h + B_bar * u[:, :, t, None]  # h_t = Ā_t h_{t-1} + B̄_t u_t
        ys.append((C[:, None, :, t] * h).sum(-1) + D * u[:, :, t])  # y_t = C_t h_t + D u_t, (b, d)
    return torch.stack(ys, -1)  # (b, d, l)


def lti_kernel(delta, A, B, C, L):
    """K̄ (d, L), K̄_k = Σ_n C Ā^k B̄ with Ā = exp(ΔA), B̄ = ΔB; delta (d,), A, B, C (d, n)."""
    A_bar = torch.exp(delta[:, None] * A)  # (d, n)
    B_bar = delta[:, None] * B  # (d, n)
    k = torch.arange(L, dtype=A.dtype)  # (L,)
    return (C[..., None] * A_bar[..., None] ** k * B_bar[..., None]).sum(1)  # (d, n, L) -> (d, L)


def causal_conv(u, K):
    """y (b, d, L), y_t = Σ_{k=0}^{t} K_k u_{t-k}; u (b, d, L), K (d, L).

    conv1d computes a correlation (Σ_k w_k x_{t+k}), so flip the kernel; pad L - 1 zeros on the left so
    that y_t sees u_0 ... u_t only.
    """
    d, L = K.shape
    return F.conv1d(F.pad(u, (L - 1, 0)), K.flip(-1)[:, None], groups=d)


def half_life(delta, a):
    """Steps t with exp(delta * a * t) = 1/2."""
    return math.log(2) / (delta * -a)


def parallel_scan(a, b):
    """h_t = a_t h_{t-1} + b_t along the last axis, in ceil(log2 L) vectorised steps (Hillis-Steele).

    Each element holds a pair (A, Bv) meaning "h -> A h + Bv"; composing two steps gives
    (a2 a1, a2 b1 + b2), an associative rule, so doubling strides combine everything before t.
    Only multiplications: a decay that underflows to 0 stays a clean 0 (a reset), never 0/0.
    """
    A, Bv = a.clone(), b.clone()
    length, stride = a.shape[-1], 1
    while stride < length:
        A_prev = torch.ones_like(A)
        B_prev = torch.zeros_like(Bv)
        A_prev[..., stride:] = A[..., :-stride]
        B_prev[..., stride:] = Bv[..., :-stride]
        Bv = A * B_prev + Bv  # apply the earlier segment first, then this one
        A = A * A_prev
        stride *= 2
    return Bv

"""Solutions to the exercises of notebook 02 (checked by tests/test_exercises.py)."""
import math

import torch


def zoh_B_bar(delta, A, B):
    """Exact zero-order hold for a diagonal A: B̄ = (exp(ΔA) - 1) / A * B."""
    return torch.expm1(delta * A) / A * B


def parallel_scan(a, b):
    """h_t = a_t h_{t-1} + b_t along the last axis, in ceil(log2 L) vectorised steps (Hillis-Steele).

    Each element holds a pair (A, Bv) meaning "h -> A h + Bv"; composing two steps gives
    (a2 a1, a2 b1 + b2), an associative rule, so doubling strides combine everything before t.
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


def half_life(delta, a):
    """Steps t with exp(delta * a * t) = 1/2."""
    return math.log(2) / (delta * -a)

"""Checking and timing scan backends against the reference (used by notebook 02).

The unit tests carry their own, stricter comparisons; these helpers are for
showing a student, in a few lines, that every backend computes the same thing.
"""
from __future__ import annotations

import time
from typing import Iterable

import torch

from .scan import selective_scan

GRAD_INPUTS = ("u", "delta", "A", "B", "C", "D", "delta_bias")


def random_scan_inputs(b: int = 2, d: int = 8, l: int = 50, n: int = 4, g: int = 2, seed: int = 0) -> dict:
    """Random float32 inputs for ``selective_scan(**inputs)``; A is negative (a decay)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen)

    return dict(
        u=rand(b, d, l),  # (b, d, l)
        delta=rand(b, d, l),  # (b, d, l)
        A=-torch.rand(d, n, generator=gen) - 0.5,  # (d, n)
        B=rand(b, g, n, l),  # (b, g, n, l)
        C=rand(b, g, n, l),  # (b, g, n, l)
        D=rand(d),  # (d,)
        delta_bias=rand(d) * 0.1,  # (d,)
    )


def run_with_grads(backend: str, inputs: dict, delta_softplus: bool = True) -> tuple[torch.Tensor, dict]:
    """Forward and backward of ``sum(y**2)``: returns y and the gradient of every input."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    y = selective_scan(**leaves, delta_softplus=delta_softplus, backend=backend)
    y.square().sum().backward()
    return y.detach(), {k: v.grad for k, v in leaves.items()}


def compare_to_reference(backends: Iterable[str], inputs: dict) -> dict[str, dict[str, float]]:
    """Largest absolute difference from ``reference`` of y and of each input's gradient, per backend.

    ``reference`` itself, if listed, is left out: comparing it with itself says nothing.
    """
    y_ref, g_ref = run_with_grads("reference", inputs)
    table = {}
    for name in backends:
        if name == "reference":
            continue
        y, g = run_with_grads(name, inputs)
        row = {"max |y - ref|": (y - y_ref).abs().max().item()}
        row.update({f"max |d{k} - ref|": (g[k] - g_ref[k]).abs().max().item() for k in GRAD_INPUTS if k in g})
        table[name] = row
    return table


def time_backends(backends: Iterable[str], inputs: dict, repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` forward+backward time in ms per backend (an illustration, not a benchmark)."""
    best = {}
    for name in backends:
        run_with_grads(name, inputs)  # warm-up (numba loads its cache, allocators settle)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run_with_grads(name, inputs)
            times.append(time.perf_counter() - start)
        best[name] = min(times) * 1e3
    return best

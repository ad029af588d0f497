"""Exercises of notebook 03 SS2D: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

import math  # noqa: F401
from typing import Callable

import numpy as np  # noqa: F401
import torch  # noqa: F401

from ..optional import require  # noqa: F401
from .core import Result, _call, _close, exercise  # noqa: F401




def scan_positions(height: int, width: int) -> torch.Tensor:
    """(K, height, width): the position of each pixel in each of the library's four scan sequences."""
    from ..ops import cross_unscan

    positions = torch.arange(height * width, dtype=torch.float32)
    return cross_unscan(positions.expand(1, 4, 1, height * width), height, width)[0, :, 0].long()


@exercise("03", "paths_where_first", wrong=(
    lambda p, q, h, w: [0, 1] if p < q else [2, 3],  # rows only
))
def check_paths_where_first(fn: Callable) -> Result:
    """Exercise 03.1: ``paths_where_first(p, q, height, width)`` -> sorted directions k where pixel p is scanned before q."""
    rng = np.random.default_rng(0)
    for height, width in ((3, 4), (5, 5), (2, 7)):
        order = scan_positions(height, width)
        for _ in range(12):
            p = (int(rng.integers(height)), int(rng.integers(width)))
            q = (int(rng.integers(height)), int(rng.integers(width)))
            if p == q:
                continue
            got, err = _call(fn, p, q, height, width)
            if err:
                return False, err
            want = [k for k in range(4) if order[k][p] < order[k][q]]
            try:
                got = sorted(int(k) for k in got)
            except Exception:
                return False, f"return a list of direction indices, got {got!r}"
            if got != want:
                return False, f"pixels p={p}, q={q} on {height}x{width}: got {got}, expected {want}"
    return True, "every pair is ordered both ways: p before q in two paths and q before p in the other two"


def ss2d_param_count_truth(dim: int, d_state: int, ssm_ratio: float) -> int:
    from ..models import SS2D

    return sum(p.numel() for p in SS2D(dim, d_state=d_state, ssm_ratio=ssm_ratio).parameters())


@exercise("03", "ss2d_params", wrong=(
    lambda dim, n, r: 2 * dim * int(r * dim),  # projections only
))
def check_ss2d_params(fn: Callable) -> Result:
    """Exercise 03.2: ``ss2d_params(dim, d_state, ssm_ratio)`` -> parameters of a plain SS2D, by formula."""
    for dim, n, ratio in ((32, 1, 1.0), (96, 1, 1.0), (96, 16, 2.0), (40, 4, 1.5)):
        got, err = _call(fn, dim, n, ratio)
        if err:
            return False, err
        want = ss2d_param_count_truth(dim, n, ratio)
        if int(got) != want:
            return False, f"ss2d_params({dim}, {n}, {ratio}) = {got}, expected {want}"
    return True, "in_proj and out_proj dominate; the S6 parameters are a few percent"

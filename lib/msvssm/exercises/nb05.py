"""Exercises of notebook 05 Layer Scale: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

import math  # noqa: F401
from typing import Callable

import numpy as np  # noqa: F401
import torch  # noqa: F401

from ..optional import require  # noqa: F401
from .core import Result, _call, _close, exercise  # noqa: F401




@exercise("05", "fold_layer_scale", wrong=(
    lambda W, g: W,  # forgets gamma
))
def check_fold_layer_scale(fn: Callable) -> Result:
    """Exercise 05.1: ``fold_layer_scale(weight, gamma)`` -> W' with W'x = W (x ⊙ γ) for a bias-free Linear."""
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(6, 10, generator=gen, dtype=torch.float64)  # (out, in)
    gamma = torch.rand(10, generator=gen, dtype=torch.float64) + 0.1
    got, err = _call(fn, W.clone(), gamma.clone())
    if err:
        return False, err
    want = W * gamma[None, :]
    ok, msg = _close(got, want, rtol=1e-9, atol=1e-12)
    if not ok:
        return False, msg + " (γ scales the inputs of out_proj: its columns)"
    return True, "Λ folds into out_proj's columns: same function, different parameterisation"


@exercise("05", "residual_std", wrong=(
    lambda depth, s: 1 + depth * s,  # stds added
))
def check_residual_growth(fn: Callable) -> Result:
    """Exercise 05.2: ``residual_std(depth, branch_scale)`` -> std after ``depth`` residual blocks x <- x + s·f(x).

    Model: x starts with std 1 and each branch adds an independent term of std ``branch_scale``.
    """
    for depth, s in ((1, 1.0), (8, 1.0), (24, 1e-5), (100, 0.1), (0, 1.0)):
        got, err = _call(fn, depth, s)
        if err:
            return False, err
        want = math.sqrt(1 + depth * s * s)
        ok, msg = _close(float(got), want, rtol=1e-6)
        if not ok:
            return False, f"residual_std({depth}, {s}): {msg} (independent terms add in variance, not in std)"
    return True, "variances add: sqrt(1 + depth s^2); Λ = 1e-5 keeps a deep stack at std 1"

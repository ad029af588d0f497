"""Exercises of notebook 04 SE-SS2D: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

import math  # noqa: F401
from typing import Callable

import numpy as np  # noqa: F401
import torch  # noqa: F401

from ..optional import require  # noqa: F401
from .core import Result, _call, _close, exercise  # noqa: F401




@exercise("04", "se_params", wrong=(
    lambda c, k, r: 2 * c * (c // r) + c // r + c,  # one SE, not one per path
))
def check_se_params(fn: Callable) -> Result:
    """Exercise 04.1: ``se_params(channels, directions, reduction)`` -> parameters of ``PathSqueezeExcite``."""
    from ..models import PathSqueezeExcite

    for c, k, r in ((32, 4, 16), (96, 4, 16), (192, 4, 4), (16, 4, 16), (64, 2, 8)):
        got, err = _call(fn, c, k, r)
        if err:
            return False, err
        want = sum(p.numel() for p in PathSqueezeExcite(c, k, r).parameters())
        if int(got) != want:
            hint = " (the hidden width is max(channels // reduction, 4))" if c // r < 4 else ""
            return False, f"se_params({c}, {k}, {r}) = {got}, expected {want}{hint}"
    return True, "K x (2 c h + h + c) with h = max(c // r, 4)"


@exercise("04", "se_gate", wrong=(
    lambda y, w1, b1, w2, b2: torch.relu(y.mean((-2, -1)) @ w1.T + b1) @ w2.T + b2,  # no sigmoid
))
def check_se_gate(fn: Callable) -> Result:
    """Exercise 04.2: ``se_gate(y, w1, b1, w2, b2)`` -> the gate (b, d) of ONE direction's map y (b, d, h, w)."""
    from ..models import PathSqueezeExcite

    torch.manual_seed(0)
    se = PathSqueezeExcite(24, directions=4, reduction=4)
    with torch.no_grad():
        for p in (se.fc1_bias, se.fc2_bias):
            p.normal_()
    y = torch.randn(2, 4, 24, 5, 6)
    with torch.no_grad():
        want_all = se(y) / y  # (b, K, d, h, w): the gate broadcast over the grid
    for k in range(4):
        got, err = _call(fn, y[:, k].clone(), se.fc1_weight[k].detach().clone(), se.fc1_bias[k].detach().clone(),
                         se.fc2_weight[k].detach().clone(), se.fc2_bias[k].detach().clone())
        if err:
            return False, err
        ok, msg = _close(torch.as_tensor(got).detach(), want_all[:, k, :, 0, 0], rtol=1e-4, atol=1e-5)
        if not ok:
            return False, f"direction {k}: {msg}"
    return True, "sigmoid(W2 relu(W1 GAP(y) + b1) + b2): the same gate as the library, per direction"

"""Exercises of notebook 06 DSPP: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

import math  # noqa: F401
from typing import Callable

import numpy as np  # noqa: F401
import torch  # noqa: F401

from ..optional import require  # noqa: F401
from .core import Result, _call, _close, exercise  # noqa: F401


def _dspp_param_count(dim: int, ratio: float) -> int:
    from ..models import DSPP

    return sum(p.numel() for p in DSPP(dim, ratio).parameters())



@exercise("06", "receptive_field", wrong=(
    lambda k, d, c: k * d * c,
))
def check_branch_receptive_field(fn: Callable) -> Result:
    """Exercise 06.1: ``receptive_field(pool_k, dilation, conv_k=3)`` -> side of one DSPP branch's receptive field."""
    for k, d, c in ((3, 1, 3), (5, 2, 3), (7, 3, 3), (1, 1, 1), (3, 4, 5)):
        got, err = _call(fn, k, d, c)
        if err:
            return False, err
        want = k + d * (c - 1)
        if int(got) != want:
            hint = " (a pool of k and a conv of effective size d(c-1)+1 compose to k + d(c-1))" if int(got) == k * d * c else ""
            return False, f"receptive_field({k}, {d}, {c}) = {got}, expected {want}{hint}"
    return True, "pool k then a dilated conv: k + d (c - 1); branches see 5, 9 and 13 pixels"


@exercise("06", "dspp_params", wrong=(
    lambda dim, ratio: _dspp_param_count(dim, ratio) - dim,  # fuse bias forgotten
))
def check_dspp_params(fn: Callable) -> Result:
    """Exercise 06.2: ``dspp_params(dim, ratio)`` -> parameters of ``DSPP(dim, ratio)`` (convs have biases)."""
    from ..models import DSPP

    for dim, ratio in ((32, 0.25), (96, 0.25), (768, 0.25), (64, 1.0), (16, 0.25)):
        got, err = _call(fn, dim, ratio)
        if err:
            return False, err
        want = sum(p.numel() for p in DSPP(dim, ratio).parameters())
        if int(got) != want:
            hint = " (the width is max(int(dim * ratio), 8))" if int(dim * ratio) < 8 else ""
            return False, f"dspp_params({dim}, {ratio}) = {got}, expected {want}{hint}"
    return True, "the three 3x3 dilated convs dominate: 3 x 9 m^2"

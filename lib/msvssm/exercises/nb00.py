"""Exercises of notebook 00 start here: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

import math  # noqa: F401
from typing import Callable

import numpy as np  # noqa: F401
import torch  # noqa: F401

from ..optional import require  # noqa: F401
from .core import Result, _call, _close, exercise  # noqa: F401


def _dspp_fraction(model) -> float:
    from ..models import DSPP

    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for m in model.modules() if isinstance(m, DSPP) for p in m.parameters()) / total



def true_stage_sizes(image_size: int) -> list[int]:
    """Side of each stage's feature map for a square input: stem /4 (two stride-2 convs), then /2 per stage.

    Every stride-2 3x3 conv with padding 1 maps a side s to ceil(s / 2).
    """
    s = image_size
    for _ in range(2):  # stem
        s = math.ceil(s / 2)
    sizes = [s]
    for _ in range(3):  # downsample between stages
        s = math.ceil(s / 2)
        sizes.append(s)
    return sizes


@exercise("00", "stage_sizes", wrong=(
    lambda s: [s // 4, s // 8, s // 16, s // 32],  # floor instead of ceil
))
def check_stage_sizes(fn: Callable[[int], list[int]]) -> Result:
    """Exercise 00.1: ``stage_sizes(image_size)`` -> the side of the 4 stage maps."""
    for size in (224, 112, 64, 100, 33):
        got, err = _call(fn, size)
        if err:
            return False, err
        try:
            got = [int(v) for v in got]
        except Exception:
            return False, f"stage_sizes({size}) should return 4 integers, got {got!r}"
        want = true_stage_sizes(size)
        if got != want:
            return False, f"stage_sizes({size}) = {got}, expected {want}" + (
                " (each stride-2 conv rounds up: ceil(s / 2))" if size in (100, 33) else "")
    return True, "stage sides are ceil(H/4), then halved (rounding up) at each downsample"


@exercise("00", "dspp_share", wrong=(
    lambda model: 100 * _dspp_fraction(model),  # a percentage
))
def check_dspp_share(fn: Callable) -> Result:
    """Exercise 00.2: ``dspp_share(model)`` -> the fraction of the model's parameters inside DSPP modules."""
    from ..models import DSPP, build_model

    for name in ("msvssm_nano", "vssm_nano"):
        model = build_model(name, num_classes=4)
        total = sum(p.numel() for p in model.parameters())
        in_dspp = sum(p.numel() for m in model.modules() if isinstance(m, DSPP) for p in m.parameters())
        got, err = _call(fn, model)
        if err:
            return False, err
        try:
            got = float(got)
        except Exception:
            return False, f"dspp_share should return a number, got {got!r}"
        if abs(got - in_dspp / total) > 1e-6:
            hint = " (a fraction in [0, 1], not a percentage)" if got > 1 else ""
            return False, f"dspp_share({name}) = {got:.4f}, expected {in_dspp / total:.4f}{hint}"
    return True, "DSPP's share of the parameters, and 0 for the plain VSSM"

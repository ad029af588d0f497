"""Exercises of notebook 00 start here: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .core import Result, _call, exercise


def _stage_fractions(model) -> list[float]:
    counts = [sum(p.numel() for p in stage.parameters()) for stage in model.stages]
    return [c / sum(counts) for c in counts]


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


@exercise("00", "stage_params", wrong=(
    lambda model: [sum(p.numel() for p in stage.blocks.parameters()) for stage in model.stages],  # blocks only
    lambda model: list(np.cumsum([sum(p.numel() for p in s.parameters()) for s in model.stages])),  # running total
    lambda model: [100 * f for f in _stage_fractions(model)],  # percentages
))
def check_stage_params(fn: Callable) -> Result:
    """Exercise 00.2: ``stage_params(model)`` -> [parameters of model.stages[0], ..., model.stages[3]] (each stage
    with its DSPP, its blocks and its downsample)."""
    from ..models import build_model

    for name, kwargs in (("msvssm_nano", {}), ("vssm_nano", {}), ("msvssm_nano", {"depths": (1, 1, 2, 1)})):
        model = build_model(name, num_classes=4, **kwargs)
        want = [sum(p.numel() for p in stage.parameters()) for stage in model.stages]
        got, err = _call(fn, model)
        if err:
            return False, err
        try:
            got = [int(v) for v in got]
        except Exception:
            return False, f"stage_params should return a list of 4 integers, got {got!r}"
        if got != want:
            hint = ""
            blocks = [sum(p.numel() for p in stage.blocks.parameters()) for stage in model.stages]
            if got == blocks:
                hint = " (a stage is its DSPP, its blocks and its downsample: count stage.parameters())"
            elif got == list(np.cumsum(want)):
                hint = " (each stage on its own, not a running total)"
            return False, f"{name}: got {got}, expected {want}{hint}"
    share = want[-1] / sum(want)
    return True, (f"the last stages hold most: width doubles per stage, so a layer's weights grow 4x "
                  f"(stage 4 of this model: {share:.0%} of the stages' parameters)")
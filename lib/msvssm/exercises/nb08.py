"""Exercises of notebook 08 ablation: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .core import Result, _call, _close, exercise


def _extra_params(flag: str) -> int:
    from ..models import build_model

    def count(**flags):
        return sum(p.numel() for p in build_model("msvssm_nano", num_classes=4, **flags).parameters())

    off = dict(path_se=False, layer_scale=False, dspp=False)
    return count(**{**off, flag: True}) - count(**off)


@exercise("08", "mean_and_std", wrong=(
    lambda v: (float(np.mean(v)), float(np.std(v))),  # ddof=0
))
def check_mean_and_std(fn: Callable) -> Result:
    """Exercise 08.1: ``mean_and_std(values)`` -> (mean, sample std with ddof=1; 0.0 for a single value)."""
    cases = [[0.81, 0.86, 0.84], [0.5, 0.7], [0.9]]
    for values in cases:
        got, err = _call(fn, list(values))
        if err:
            return False, err
        want_std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        ok, msg = _close(got, [float(np.mean(values)), want_std], rtol=1e-6, atol=1e-9)
        if not ok:
            hint = " (divide by n - 1, not n: ddof=1)" if len(values) > 1 and abs(
                np.asarray(got, dtype=float)[-1] - np.std(values)) < 1e-9 else ""
            return False, f"for {values}: {msg}{hint}"
    return True, "the sample std is what pandas' .std() gives (ddof=1); numpy's np.std defaults to ddof=0"


@exercise("08", "extra_params", wrong=(
    lambda flag: _extra_params(flag) + (1 if flag == "dspp" else 0),
))
def check_extra_params(fn: Callable) -> Result:
    """Exercise 08.2: ``extra_params(flag)`` -> parameters one flag adds to msvssm_nano (other flags off)."""
    from ..models import build_model

    def count(**flags):
        return sum(p.numel() for p in build_model("msvssm_nano", num_classes=4, **flags).parameters())

    off = dict(path_se=False, layer_scale=False, dspp=False)
    base = count(**off)
    for flag in ("path_se", "layer_scale", "dspp"):
        got, err = _call(fn, flag)
        if err:
            return False, err
        want = count(**{**off, flag: True}) - base
        if int(got) != want:
            return False, f"{flag}: {got}, expected {want}"
    return True, ""

"""Exercises of notebook 10 protocols: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

import math
from typing import Callable


from ..optional import require
from .core import Result, _call, _close, exercise


def _wald_interval(k, n, z=1.96):
    p = k / n
    half = z * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


@exercise("10", "per_participant_accuracy", wrong=(
    lambda df: (df["label"] == df["pred"]).groupby(df["participant"], sort=False).mean(),  # unsorted
))
def check_per_participant_accuracy(fn: Callable) -> Result:
    """Exercise 10.1: ``per_participant_accuracy(df)`` -> Series of accuracy indexed by participant."""
    import pandas as pd

    df = pd.DataFrame({"participant": [3, 1, 1, 3, 2, 1, 3, 3], "label": list("ABABAAAB"), "pred": list("AAABBAAB")})
    want = (df["label"] == df["pred"]).groupby(df["participant"]).mean().sort_index()
    got, err = _call(fn, df.copy())
    if err:
        return False, err
    try:
        got = pd.Series(got).astype(float)
    except Exception as exc:
        return False, f"cannot read your answer as a Series of numbers ({exc})"
    if list(got.index) != list(want.index):
        return False, f"index {list(got.index)}, expected the participants sorted: {list(want.index)}"
    ok, msg = _close(got.to_numpy(), want.to_numpy())
    return ok, msg


@exercise("10", "wilson_interval", wrong=(
    _wald_interval,  # Wald, not Wilson
))
def check_wilson_interval(fn: Callable) -> Result:
    """Exercise 10.2: ``wilson_interval(k, n, z)`` -> (low, high), compared with scipy's binomtest."""
    binomtest = require("scipy.stats", "analysis", "exercise 10.2").binomtest

    for k, n in [(80, 100), (5, 10), (0, 20), (417, 418)]:
        got, err = _call(fn, k, n)
        if err:
            return False, err
        ci = binomtest(k, n).proportion_ci(method="wilson")
        ok, msg = _close(got, [ci.low, ci.high], rtol=1e-3, atol=1e-4)
        if not ok:
            return False, f"k={k}, n={n}: {msg}"
    return True, "note how wide it is for n=10"

"""Exercises of notebook 11 looking inside: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .core import Result, _call, exercise


def _true_centre_square_side(erf, share):
    from ..inside import centre_square_side

    return centre_square_side(erf, share)


def _mean_of_rates(p, e, k):
    weakest = e.nsmallest(k, "expressivity")["participant"]
    return (1 - p[p["participant"].isin(weakest)].groupby("participant")["correct"].mean()).mean()


@exercise("11", "rf_centre", wrong=(
    lambda i, n: 2 ** n * i + 2 ** (n - 1),
))
def check_rf_centre(fn: Callable) -> Result:
    """Exercise 11.1: ``rf_centre(index, n_convs)`` -> input pixel at the centre of output cell ``index``'s
    receptive field, through ``n_convs`` 3x3 convolutions with stride 2 and padding 1."""
    for index, n in ((0, 5), (1, 5), (2, 5), (3, 5), (1, 1), (3, 1), (2, 3), (5, 2)):
        got, why = _call(fn, index, n)
        if why:
            return False, why
        # the truth, by following the window of one output pixel back through the convs
        lo = hi = index
        for _ in range(n):
            lo, hi = 2 * lo - 1, 2 * hi + 1  # out j reads in 2j-1 .. 2j+1 (padding 1 shifts by one)
        want = (lo + hi) / 2
        try:
            got = float(got)
        except Exception:
            return False, f"rf_centre({index}, {n}) should return a number, got {got!r}"
        if abs(got - want) > 1e-9:
            block = 2 ** n * index + (2 ** n - 1) / 2
            hint = (" (that is the middle of the cell's block of 2^n pixels; with padding 1 output j reads "
                    "inputs 2j-1, 2j, 2j+1, centred on 2j)") if abs(got - block) < 0.51 else ""
            return False, f"rf_centre({index}, {n}) = {got:g}, expected {want:g}{hint}"
    return True, "2^n x index: cell i of the last stage looks at pixel 32 i"


@exercise("11", "centre_square_side", wrong=(
    lambda erf, share: (_true_centre_square_side(erf, share) - 1) // 2,  # the half-width
))
def check_centre_square_side(fn: Callable) -> Result:
    """Exercise 11.2: ``centre_square_side(erf, share)`` -> the odd side of the smallest square centred on
    (H // 2, W // 2) that holds at least ``share`` of the map's mass."""
    from ..inside import centre_square_side as truth

    delta = np.zeros((9, 9))
    delta[4, 4] = 1.0
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    blob = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 18.0)
    cases = [(delta, 1.0), (delta, 0.5), (np.ones((9, 9)), 0.5), (np.ones((9, 9)), 1.0), (blob, 0.5), (blob, 0.9),
             (rng.random((12, 12)), 0.3), (rng.random((15, 15)) ** 4, 0.75)]
    for erf, share in cases:
        got, why = _call(fn, erf.copy(), share)
        if why:
            return False, why
        want = truth(erf, share)
        try:
            got = int(got)
        except Exception:
            return False, f"return the side as an integer, got {got!r}"
        if got != want:
            hint = ""
            if got == (want - 1) // 2:
                hint = " (that is the half-width i; the side of the square is 2 i + 1)"
            elif share == 1.0:
                hint = " (\"at least\" the share: use >=, a square holding all of the mass qualifies)"
            return False, f"a {erf.shape[0]}x{erf.shape[1]} map, share {share}: got {got}, expected {want}{hint}"
    return True, "sides 1, 3, 5, ... around the centre until the share is reached"


def _toy_predictions():
    import pandas as pd

    rng = np.random.default_rng(1)
    counts = {1: 40, 2: 10, 3: 25, 4: 5, 5: 30, 6: 12}
    error_p = {1: 0.1, 2: 0.6, 3: 0.2, 4: 0.8, 5: 0.05, 6: 0.3}
    rows = [{"participant": p, "correct": bool(rng.random() >= error_p[p])} for p, n in counts.items() for _ in range(n)]
    expressivity = pd.DataFrame({"participant": list(counts), "expressivity": [0.9, 0.2, 0.7, 0.3, 1.1, 0.35]})
    return pd.DataFrame(rows), expressivity


@exercise("11", "weakest_error_rate", wrong=(
    _mean_of_rates,  # mean of per-person rates, not pooled
))
def check_weakest_error_rate(fn: Callable) -> Result:
    """Exercise 11.3: ``weakest_error_rate(predictions, expressivity, k)`` -> error rate pooled over all images
    of the ``k`` participants with the lowest expressivity."""
    preds, expr = _toy_predictions()
    for k in (1, 2, 3):
        got, why = _call(fn, preds.copy(), expr.copy(), k)
        if why:
            return False, why
        weakest = expr.nsmallest(k, "expressivity")["participant"]
        rows = preds[preds["participant"].isin(weakest)]
        want = 1 - rows["correct"].mean()
        per_person = (1 - rows.groupby("participant")["correct"].mean()).mean()
        try:
            got = float(got)
        except Exception:
            return False, f"weakest_error_rate should return a number, got {got!r}"
        if abs(got - want) > 1e-9:
            if abs(got - per_person) < 1e-9:
                hint = " (that is the mean of the per-person rates: pool the images, each image counts once)"
            elif abs(got - (1 - want)) < 1e-9:
                hint = " (that is the accuracy; the error rate is 1 - accuracy)"
            else:
                hint = " (the weakest are the k LOWEST expressivities)"
            return False, f"k = {k}: got {got:.4f}, expected {want:.4f}{hint}"
    return True, "pooled over the images of the k least expressive people"

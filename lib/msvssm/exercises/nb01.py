"""Exercises of notebook 01 data: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .core import Result, _call, exercise


@exercise("01", "quadrant", wrong=(
    lambda v, a: ("HV" if v > 5 else "LV") + ("HA" if a > 5 else "LA"),  # 5 counted as low
))
def check_quadrant(fn: Callable[[float, float], str]) -> Result:
    """Exercise 01.1: ``quadrant(valence, arousal)`` -> HVHA / HVLA / LVHA / LVLA (>= 5 is high)."""
    from ..data.deap import quadrant as truth

    for v, a in ((7.0, 7.0), (5.0, 4.99), (4.99, 5.0), (1.0, 1.0), (9.0, 1.0), (5.0, 5.0), (2.5, 8.5)):
        got, err = _call(fn, v, a)
        if err:
            return False, err
        if got != truth(v, a):
            return False, f"quadrant({v}, {a}) = {got!r}, expected {truth(v, a)!r} (a rating of exactly 5 is high)"
    return True, "the threshold 5 belongs to the high side, as in the paper"


def _toy_manifest() -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    rows = [(p, t, f) for p in ("1", "2", "3", "4", "5") for t in ("1", "2") for f in range(3)]
    return pd.DataFrame({"participant": [r[0] for r in rows], "trial": [r[1] for r in rows],
                         "path": [f"s{r[0]}_t{r[1]}_{r[2]}.png" for r in rows], "label": "HVHA"})


@exercise("01", "split_by_participant", wrong=(
    lambda df, val, test: np.where(df.index % 5 == 0, "test", "train"),  # by frame
))
def check_split_by_participant(fn: Callable) -> Result:
    """Exercise 01.2: ``split_by_participant(df, val, test)`` -> "train"/"val"/"test" per row, participants disjoint."""
    from ..data.splits import leakage

    df = _toy_manifest()
    val, test = ["2"], ["4", "5"]
    got, err = _call(fn, df.copy(), val, test)
    if err:
        return False, err
    got = np.asarray(list(got), dtype=object)
    if len(got) != len(df):
        return False, f"one split name per row: got {len(got)} for {len(df)} rows"
    want = np.where(df["participant"].isin(test), "test", np.where(df["participant"].isin(val), "val", "train"))
    if not (got == want).all():
        i = int(np.nonzero(got != want)[0][0])
        return False, f"row {i} (participant {df['participant'][i]}) is {got[i]!r}, expected {want[i]!r}"
    share = leakage(df.assign(split=got))
    if any(v > 0 for v in share.values()):
        return False, f"leakage is not zero: {share}"
    return True, "no participant is on two sides: leakage() gives 0 for trials and participants"


@exercise("01", "weighted_f1", wrong=(
    lambda y, p: __import__("sklearn.metrics").metrics.f1_score(y, p, average="macro"),  # macro
))
def check_weighted_f1(fn: Callable) -> Result:
    """Exercise 01.3: ``weighted_f1(y_true, y_pred)`` by hand, equal to scikit-learn's ``average="weighted"``."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    cases = [(np.array([0, 0, 0, 0, 1, 1, 2, 3]), np.array([0, 0, 0, 1, 1, 0, 2, 2]))]
    y = rng.choice(4, size=200, p=[0.5, 0.25, 0.15, 0.1])
    cases.append((y, np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))))
    for y_true, y_pred in cases:
        got, err = _call(fn, y_true.copy(), y_pred.copy())
        if err:
            return False, err
        want = f1_score(y_true, y_pred, average="weighted")
        macro = f1_score(y_true, y_pred, average="macro")
        try:
            got = float(got)
        except Exception:
            return False, f"weighted_f1 should return a number, got {got!r}"
        if abs(got - want) > 1e-9:
            hint = " (that is the macro F1: weight each class by its share of the TRUE labels)" if abs(got - macro) < 1e-9 else ""
            return False, f"weighted_f1 = {got:.4f}, expected {want:.4f}{hint}"
    return True, "sum over classes of (true share) x F1_i, as the paper's formula"

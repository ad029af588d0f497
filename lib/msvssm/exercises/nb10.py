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


def _row_folds(groups, k):
    import numpy as np

    return np.arange(len(groups)) % k  # rows dealt round-robin: a group's rows in every fold


def _unbalanced_folds(groups, k):
    import numpy as np

    names = sorted(set(groups))
    fold_of = {g: min(i, k - 1) for i, g in enumerate(names)}  # the first k-1 groups alone, the rest in the last fold
    return np.array([fold_of[g] for g in groups])


@exercise("10", "group_folds", wrong=(_row_folds, _unbalanced_folds))
def check_group_folds(fn: Callable) -> Result:
    """Exercise 10.3: ``group_folds(groups, k)`` -> one fold id (0..k-1) per row: a group's rows in one fold, every
    fold used, the folds within one group of each other in size (that is what makes each group tested once)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for n_groups, k in [(12, 3), (7, 2), (10, 10)]:
        groups = [f"p{g:02d}" for g in rng.integers(0, n_groups, size=60)]
        groups += [f"p{g:02d}" for g in range(n_groups)]  # every group present
        got, err = _call(fn, list(groups), k)
        if err:
            return False, err
        folds = np.asarray(got)
        if folds.shape != (len(groups),):
            return False, f"expected one fold id per row ({len(groups)}), got shape {folds.shape}"
        if not set(folds.tolist()) <= set(range(k)):
            return False, f"fold ids must be 0..{k - 1}, got {sorted(set(folds.tolist()))}"
        per_group = {}
        for g, f in zip(groups, folds.tolist()):
            per_group.setdefault(g, set()).add(f)
        split = [g for g, fs in per_group.items() if len(fs) > 1]
        if split:
            return False, f"group {split[0]} has rows in folds {sorted(per_group[split[0]])}: a person or video in two folds is tested by a model that saw them"
        sizes = np.bincount([next(iter(fs)) for fs in per_group.values()], minlength=k)
        if sizes.min() == 0 or sizes.max() - sizes.min() > 1:
            return False, f"{n_groups} groups into {k} folds gave fold sizes {sizes.tolist()} (in groups): deal them evenly"
    return True, "every group is tested once, by the one fold that holds it"


def _crop_bootstrap(correct, people, n_resamples=2000, seed=0):
    import numpy as np

    c = np.asarray(correct, dtype=float)
    rng = np.random.default_rng(seed)
    means = c[rng.integers(0, len(c), size=(n_resamples, len(c)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


@exercise("10", "people_interval", wrong=(_crop_bootstrap,))
def check_people_interval(fn: Callable) -> Result:
    """Exercise 10.4: ``people_interval(correct, people, n_resamples, seed)`` -> (low, high), the 95 % percentile
    interval of the accuracy when whole people are resampled (each keeps all their crops)."""
    import numpy as np

    from ..stats import cluster_bootstrap

    rng = np.random.default_rng(1)
    people, correct = [], []
    for p, (acc, n) in enumerate([(0.9, 40), (0.3, 25), (0.6, 30), (0.2, 35), (0.8, 20), (0.5, 30)]):
        people += [f"s{p:02d}"] * n
        correct += list(rng.random(n) < acc)
    got, err = _call(fn, np.array(correct), np.array(people), 4000, 0)
    if err:
        return False, err
    try:
        low, high = (float(v) for v in got)
    except Exception:
        return False, f"expected (low, high), got {got!r}"
    _, want_low, want_high = cluster_bootstrap(correct, people, n_resamples=20_000, seed=0)
    pooled = float(np.mean(correct))
    if not low <= pooled <= high:
        return False, f"({low:.3f}, {high:.3f}) does not contain the accuracy {pooled:.3f}"
    width, want = high - low, want_high - want_low
    if width < 0.6 * want:
        return False, (f"your interval is {width:.3f} wide, resampling people gives about {want:.3f}: did you resample "
                       "crops? the crops of one person are not independent draws")
    if abs(low - want_low) > 0.05 or abs(high - want_high) > 0.05:
        return False, f"({low:.3f}, {high:.3f}), expected about ({want_low:.3f}, {want_high:.3f}) (resampling noise allowed)"
    crop_low, crop_high = _crop_bootstrap(correct, people)
    return True, f"({low:.3f}, {high:.3f}): about {width / (crop_high - crop_low):.1f}x as wide as resampling crops"

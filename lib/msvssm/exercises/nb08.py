"""Exercises of notebook 08 ablation: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..stats import seeds_needed
from .core import Result, _call, _close, exercise


def _extra_params(flag: str) -> int:
    from ..models import build_model

    def count(**flags):
        return sum(p.numel() for p in build_model("msvssm_nano", num_classes=4, **flags).parameters())

    off = dict(path_se=False, layer_scale=False, dspp=False)
    return count(**{**off, flag: True}) - count(**off)


def _sample_std_or_zero(v):
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


@exercise("08", "mean_and_std", wrong=(
    lambda v: (float(np.mean(v)), float(np.std(v))),  # ddof=0
    _sample_std_or_zero,  # one value: 0 instead of undefined
))
def check_mean_and_std(fn: Callable) -> Result:
    """Exercise 08.1: ``mean_and_std(values)`` -> (mean, sample std with ddof=1; nan for a single value)."""
    import math

    for values in ([0.81, 0.86, 0.84], [0.5, 0.7]):
        got, err = _call(fn, list(values))
        if err:
            return False, err
        ok, msg = _close(got, [float(np.mean(values)), float(np.std(values, ddof=1))], rtol=1e-6, atol=1e-9)
        if not ok:
            hint = " (divide by n - 1, not n: ddof=1)" if abs(np.asarray(got, dtype=float)[-1] - np.std(values)) < 1e-9 else ""
            return False, f"for {values}: {msg}{hint}"
    got, err = _call(fn, [0.9])
    if err:
        return False, err
    try:
        mean, std = (float(x) for x in got)
    except (TypeError, ValueError):
        return False, "return a pair (mean, std)"
    if abs(mean - 0.9) > 1e-9:
        return False, f"for [0.9]: mean {mean}, expected 0.9"
    if not math.isnan(std):
        return False, (f"for [0.9]: std {std}; one value says nothing about the spread: its sample std is undefined "
                       "(n - 1 = 0), so return float('nan'), not a number that reads as 'no spread'")
    return True, "the sample std is what pandas' .std() gives (ddof=1, nan for one value); numpy's np.std defaults to ddof=0"


def _interval(a, b, crit, ddof=1):
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    half = crit * d.std(ddof=ddof) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def _t_crit(n):
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1))


def _unpaired(a, b):
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = b.mean() - a.mean()
    half = stats.t.ppf(0.975, 2 * len(a) - 2) * np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float(diff), float(diff - half), float(diff + half)


_PAIRED_CASES = (
    ([0.80, 0.86, 0.83], [0.83, 0.88, 0.86]),  # rows that move together over seeds: paired sees the step
    ([0.70, 0.75, 0.72, 0.78], [0.69, 0.77, 0.74, 0.77]),
)
_PAIRED_MISTAKES = (
    (lambda a, b: _interval(a, b, 1.959964), "that is the normal's 1.96: with n seeds use Student's t with n - 1 "
                                             "degrees of freedom (4.30 for 3 seeds)"),
    (lambda a, b: _interval(a, b, _t_crit(len(a)), ddof=0), "the std of the differences takes ddof=1"),
    (_unpaired, "that is the unpaired interval (each row's spread): the rows share their seeds, so take the "
                "per-seed differences b - a first"),
    (lambda a, b: _interval(b, a, _t_crit(len(a))), "the difference is b - a (the step's gain), not a - b"),
)


@exercise("08", "paired_interval", wrong=tuple(w for w, _ in _PAIRED_MISTAKES))
def check_paired_interval(fn: Callable) -> Result:
    """Exercise 08.3: ``paired_interval(a, b)`` -> (mean of b - a, low, high): the 95 % paired t interval."""
    from .core import _call_own, _known_mistake

    for a, b in _PAIRED_CASES:
        got, err = _call_own(fn, ("msvssm.stats",), list(a), list(b))
        if err:
            return False, err
        want = _interval(a, b, _t_crit(len(a)))
        ok, msg = _close(got, want, rtol=1e-4, atol=1e-6)
        if not ok:
            hint = _known_mistake(got, _PAIRED_MISTAKES, (a, b), rtol=1e-4, atol=1e-6)
            return False, f"for a={a}, b={b}: {hint or msg}"
    return True, ("paired: the interval of the per-seed differences; rows that move together over seeds give a "
                  "narrow one even when each row's own spread is wide")


def _normal_approximation_seeds(effect, sd):
    """The z-test count: the smallest n with Φ(δ√n/sd - z_0.975) >= 0.8 (too few seeds when n is small)."""
    from scipy import stats

    z = stats.norm.ppf(0.975)
    n = 2
    while stats.norm.cdf(abs(effect) / sd * np.sqrt(n) - z) < 0.8:
        n += 1
    return n


_SEED_CASES = ((0.019, 0.019), (0.01, 0.02), (0.006, 0.024))
_SEED_MISTAKES = (
    (_normal_approximation_seeds, "that is the normal approximation: with few seeds the t "
                                                  "distribution's heavier tails need more (use scipy.stats.nct)"),
    (lambda e, s: seeds_needed(e, s, paired=False), "that is the unpaired count (two rows of n seeds each): here sd "
                                                   "is the std of the per-seed differences, a one-sample t test"),
    (lambda e, s: seeds_needed(e, s, alpha=0.1), "that is a one-sided test: a step could also hurt, test both "
                                                      "sides (alpha / 2 in each tail)"),
)


@exercise("08", "seeds_needed", wrong=tuple(w for w, _ in _SEED_MISTAKES))
def check_seeds_needed(fn: Callable) -> Result:
    """Exercise 08.4: ``seeds_needed(effect, sd)`` -> the fewest paired seeds for which a two-sided paired t test at
    alpha 0.05 detects a true mean step ``effect`` with power 0.8, given the std ``sd`` of per-seed differences."""
    from .core import _call_own, _known_mistake

    for effect, sd in _SEED_CASES:
        got, err = _call_own(fn, ("msvssm.stats",), effect, sd)
        if err:
            return False, err
        want = seeds_needed(effect, sd)
        try:
            n = int(got)
        except (TypeError, ValueError):
            return False, f"seeds_needed({effect}, {sd}) returned {got!r}: expected a whole number of seeds"
        if n != want:
            hint = _known_mistake(n, _SEED_MISTAKES, (effect, sd), rtol=0, atol=0.5)
            return False, f"seeds_needed({effect}, {sd}) = {n}: {hint or f'expected {want}'}"
    return True, ("power from the noncentral t; the paper's smaller steps need dozens of paired seeds at this "
                  "spread, which is why three seeds leave most of them undecided")


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

"""Paired statistics for comparing runs: seeds paired across rows, images paired across models, people as clusters.

Two rows of an ablation trained with the same seeds share their data order, initial weights and
augmentation draws, so their accuracies move together (the course's rows correlate 0.83-0.99 over
seeds): compare them *per seed* (:func:`paired_seed_test`), not by their separate spreads. Two models
scored on the same test images are compared image by image (:func:`mcnemar`,
:func:`paired_bootstrap_images`). Crops of one person are not independent: an interval over a test
side with few people resamples the people (:func:`cluster_bootstrap`), and two classifiers on the same
people are compared person by person (:func:`paired_cluster_difference`). :func:`seeds_needed` says
how many paired seeds a given step needs before a test can see it.

Everything here is scipy's (``ttest_rel``, ``binomtest``, the noncentral t) or a plain resampling
loop with a fixed generator, so every number is reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd


def _scipy_stats():
    from .optional import require

    return require("scipy.stats", "analysis", "msvssm.stats")


@dataclass(frozen=True)
class PairedTest:
    """The paired comparison of two rows over seeds: mean difference (b - a), its t interval, t and sign tests."""

    n: int
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    t: float
    p_t: float
    positive: int
    p_sign: float

    def verdict(self, alpha: float = 0.05) -> str:
        if self.n < 2:
            return "one seed: no test"
        if self.p_t < alpha:
            return "better in the paired test" if self.mean_diff > 0 else "worse in the paired test"
        return "no difference the paired test can see"


def paired_differences(per_run: pd.DataFrame, a: str, b: str, metric: str = "accuracy",
                       name: str = "name", seed: str = "seed") -> pd.DataFrame:
    """Per seed: ``metric`` of row ``a``, of row ``b`` and ``b - a`` (only the seeds both rows have)."""
    wide = per_run.pivot_table(index=seed, columns=name, values=metric, aggfunc="first")
    missing = [r for r in (a, b) if r not in wide.columns]
    if missing:
        raise ValueError(f"rows {missing} are not in the table (rows: {sorted(wide.columns)})")
    both = wide[[a, b]].dropna()
    return both.assign(diff=both[b] - both[a])


def paired_seed_test(diffs: Sequence[float], confidence: float = 0.95) -> PairedTest:
    """Paired t test (scipy's one-sample t on the differences, as ``ttest_rel``) with its confidence interval,
    and the exact sign test (``binomtest`` on the count of positive differences, ties dropped)."""
    stats = _scipy_stats()
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n == 0:
        raise ValueError("no paired differences")
    mean = float(d.mean())
    if n < 2:
        return PairedTest(n, mean, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"),
                          int((d > 0).sum()), float("nan"))
    result = stats.ttest_1samp(d, 0.0)
    _, low, high = mean_interval(d, confidence)
    nonzero = d[d != 0]
    positive = int((nonzero > 0).sum())
    p_sign = float(stats.binomtest(positive, len(nonzero), 0.5).pvalue) if len(nonzero) else 1.0
    return PairedTest(n, mean, float(d.std(ddof=1)), low, high, float(result.statistic), float(result.pvalue),
                      positive, p_sign)


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (scipy's ``bootstrap``). With 3 seeds it has
    only 10 distinct resamples: too few to trust; the t interval of :func:`paired_seed_test` says more."""
    stats = _scipy_stats()
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        raise ValueError("a bootstrap needs at least two values")
    res = stats.bootstrap((v,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, float]:
    """Exact McNemar test for two models scored on the same images: only the images one gets right and the
    other wrong count; under "no difference" each such image is a fair coin (``binomtest``)."""
    stats = _scipy_stats()
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the two models were scored on different images ({a.shape} vs {b.shape})")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = float(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    return {"only_a_right": only_a, "only_b_right": only_b, "p": p}


def paired_bootstrap_images(correct_a: Sequence[bool], correct_b: Sequence[bool], confidence: float = 0.95,
                            n_resamples: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """(accuracy of b - accuracy of a, interval low, high): images resampled with both models' verdicts kept together."""
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"the two models were scored on different images ({a.shape} vs {b.shape})")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_resamples, len(a)))  # (resamples, images)
    diffs = (b[idx] - a[idx]).mean(axis=1)
    tail = (1 - confidence) / 2
    return float(b.mean() - a.mean()), float(np.quantile(diffs, tail)), float(np.quantile(diffs, 1 - tail))


def cluster_bootstrap(correct: Sequence[bool], groups: Sequence, confidence: float = 0.95,
                      n_resamples: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """(accuracy, interval low, high) with whole groups (participants, videos) resampled, not images: the
    images of one person are not independent draws, and with few people the interval is wide."""
    frame = pd.DataFrame({"correct": np.asarray(correct, dtype=float), "group": list(groups)})
    per_group = frame.groupby("group", sort=True)["correct"].agg(["sum", "count"])
    sums, counts = per_group["sum"].to_numpy(), per_group["count"].to_numpy()
    if len(sums) < 2:
        raise ValueError("a cluster bootstrap needs at least two groups")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sums), size=(n_resamples, len(sums)))  # (resamples, groups)
    accuracies = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    tail = (1 - confidence) / 2
    return (float(sums.sum() / counts.sum()), float(np.quantile(accuracies, tail)),
            float(np.quantile(accuracies, 1 - tail)))


def paired_cluster_difference(correct_a: Sequence[bool], correct_b: Sequence[bool], groups: Sequence,
                              confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Two classifiers scored on the same images, compared with the *groups* (people, videos) as the unit.

    Returns ``difference`` (accuracy of b - accuracy of a, pooled over images), its cluster-bootstrap interval
    (``ci_low`` / ``ci_high``: whole groups resampled with both verdicts kept together), and a sign test over
    the groups: ``groups`` in all, ``b_better`` / ``a_better`` (groups where b's accuracy is higher / lower),
    ``p_sign`` (two-sided ``binomtest`` on the groups that differ)."""
    stats = _scipy_stats()
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or len(a) != len(groups):
        raise ValueError(f"the two classifiers were scored on different images ({a.shape}, {b.shape}, {len(groups)} groups)")
    _, low, high = cluster_bootstrap(b - a, groups, confidence, n_resamples, seed)
    per_group = pd.DataFrame({"d": b - a, "g": list(groups)}).groupby("g")["d"].mean()
    b_better, a_better = int((per_group > 0).sum()), int((per_group < 0).sum())
    p = float(stats.binomtest(b_better, b_better + a_better, 0.5).pvalue) if b_better + a_better else 1.0
    return {"difference": float(b.mean() - a.mean()), "ci_low": low, "ci_high": high, "groups": len(per_group),
            "b_better": b_better, "a_better": a_better, "p_sign": p}


def seeds_needed(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8, paired: bool = True,
                 max_n: int = 100_000) -> int:
    """Seeds a two-sided t test at level ``alpha`` needs to detect a true step of ``effect`` with probability
    ``power``: paired (``sd`` = the std of the per-seed *differences*; one-sample t on them) or unpaired
    (``sd`` = each row's std; two rows of n seeds each, Welch-free pooled t). Exact, from the noncentral t."""
    stats = _scipy_stats()
    if effect == 0 or sd <= 0:
        raise ValueError("the effect must be non-zero and the spread positive")
    d = abs(effect) / sd

    def achieved(n: int) -> float:
        df = n - 1 if paired else 2 * n - 2
        nc = d * math.sqrt(n) if paired else d * math.sqrt(n / 2)
        crit = stats.t.ppf(1 - alpha / 2, df)
        return 1 - stats.nct.cdf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)

    high = 2  # power grows with n: double until it is reached (huge n would overflow the noncentral t), then bisect
    while achieved(high) < power:
        if high >= max_n:
            raise ValueError(f"more than {max_n} seeds")
        high = min(2 * high, max_n)
    low = max(1, high // 2)  # achieved(low) < power, or low = 1 (no test with one seed)
    while high - low > 1:
        mid = (low + high) // 2
        if achieved(mid) >= power:
            high = mid
        else:
            low = mid
    return high


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of the mean over seeds. One seed has no known spread: nan bounds
    (not 0: the standard deviation of one value is undefined, not zero)."""
    stats = _scipy_stats()
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        raise ValueError("no values")
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def paired_steps(per_run: pd.DataFrame, order: Sequence[str], metric: str = "accuracy", against: str | None = None,
                 name: str = "name", seed: str = "seed", confidence: float = 0.95, alpha: float = 0.05) -> pd.DataFrame:
    """Rows compared per seed: each consecutive pair of ``order`` (an ablation's steps), or each row against
    ``against`` (a baseline table). One line per comparison: the seeds both rows have, the mean difference
    (second - first) with its paired t interval, t test and sign test p-values, and the paired test's verdict.
    """
    pairs = ([(a, b) for a, b in zip(order[:-1], order[1:])] if against is None
             else [(row, against) for row in order if row != against])
    out = []
    for a, b in pairs:
        diffs = paired_differences(per_run, a, b, metric, name=name, seed=seed)
        test = paired_seed_test(diffs["diff"], confidence)
        out.append({"step": f"{a} -> {b}" if against is None else f"{b} vs {a}", "a": a, "b": b, "seeds": test.n, "mean_diff": test.mean_diff,
                    "ci_low": test.ci_low, "ci_high": test.ci_high, "sd_diff": test.sd_diff, "t": test.t,
                    "p_t": test.p_t, "positive": test.positive, "p_sign": test.p_sign,
                    "verdict": test.verdict(alpha)})
    return pd.DataFrame(out)


def label_smoothing_floor(smoothing: float, classes: int) -> float:
    """The lowest training loss cross-entropy with label smoothing can reach: the entropy of the smoothed
    target (1 - ε + ε/K on the true class, ε/K on each other). A training curve flattening there has fitted
    the training images perfectly; it cannot go to 0."""
    if not 0 <= smoothing < 1 or classes < 2:
        raise ValueError(f"smoothing={smoothing} must be in [0, 1) and classes={classes} >= 2")
    if smoothing == 0:
        return 0.0
    on, off = 1 - smoothing + smoothing / classes, smoothing / classes
    return float(-(on * math.log(on) + (classes - 1) * off * math.log(off)))


def calibration_table(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> pd.DataFrame:
    """Top-label reliability: the predictions binned by their confidence (the largest softmax probability) into
    ``bins`` equal-width bins over [0, 1]; per non-empty bin its count, mean confidence and accuracy."""
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    if conf.shape != hit.shape or conf.ndim != 1 or len(conf) == 0:
        raise ValueError("confidence and correct must be two 1-d sequences of one length")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)  # (0.9, 1.0] -> last bin
    rows = [{"low": edges[b], "high": edges[b + 1], "count": int((which == b).sum()),
             "confidence": float(conf[which == b].mean()), "accuracy": float(hit[which == b].mean())}
            for b in range(bins) if (which == b).any()]
    return pd.DataFrame(rows)


def expected_calibration_error(table: pd.DataFrame) -> float:
    """ECE of a :func:`calibration_table`: Σ_bins (count / n) · |accuracy - confidence|."""
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["accuracy"] - table["confidence"]).abs()).sum())

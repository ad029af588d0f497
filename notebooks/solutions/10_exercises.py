"""Solutions to the exercises of notebook 10 (checked by tests/test_exercises.py)."""
import math


def per_participant_accuracy(predictions):
    """Mean of (label == pred) per participant; groupby sorts its keys."""
    correct = predictions["label"] == predictions["pred"]
    return correct.groupby(predictions["participant"]).mean()


def wilson_interval(k, n, z=1.96):
    """The Wilson score interval of k / n."""
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return center - half, center + half


def group_folds(groups, k):
    """Deal the distinct groups (sorted) into k folds round-robin; every row takes its group's fold."""
    fold_of = {g: i % k for i, g in enumerate(sorted(set(groups)))}
    return [fold_of[g] for g in groups]


def people_interval(correct, people, n_resamples=2000, seed=0):
    """Percentile bootstrap with whole people resampled: per person (correct crops, crops), drawn with replacement."""
    import numpy as np

    ids = sorted(set(people))
    correct, people = np.asarray(correct, dtype=float), np.asarray(people)
    sums = np.array([correct[people == p].sum() for p in ids])
    counts = np.array([(people == p).sum() for p in ids])
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(ids), size=(n_resamples, len(ids)))
    acc = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    return float(np.quantile(acc, 0.025)), float(np.quantile(acc, 0.975))

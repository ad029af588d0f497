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

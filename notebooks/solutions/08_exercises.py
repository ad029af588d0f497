"""Solutions to the exercises of notebook 08 (checked by tests/test_exercises.py)."""
import numpy as np

from msvssm.models import build_model


def mean_and_std(values):
    """Mean and sample standard deviation (ddof=1); nan for a single value (its spread is undefined)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def paired_interval(a, b):
    """Mean of the per-seed differences b - a and its 95 % t interval (n - 1 degrees of freedom)."""
    from scipy import stats

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def seeds_needed(effect, sd):
    """The fewest paired seeds with power >= 0.8 for a two-sided paired t test at alpha 0.05 (noncentral t)."""
    from scipy import stats

    d = abs(effect) / sd
    n = 2
    while True:
        crit = stats.t.ppf(0.975, n - 1)
        nc = d * np.sqrt(n)
        power = 1 - stats.nct.cdf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
        if power >= 0.8:
            return n
        n += 1


def extra_params(flag):
    """Parameters of msvssm_nano with only ``flag`` on, minus those with every flag off."""
    off = dict(path_se=False, layer_scale=False, dspp=False)

    def count(**flags):
        return sum(p.numel() for p in build_model("msvssm_nano", num_classes=4, **flags).parameters())

    return count(**{**off, flag: True}) - count(**off)

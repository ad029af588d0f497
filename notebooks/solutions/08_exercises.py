"""Solutions to the exercises of notebook 08 (checked by tests/test_exercises.py)."""
import numpy as np

from msvssm.models import build_model


def mean_and_std(values):
    """Mean and sample standard deviation (ddof=1), 0.0 for a single value."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def extra_params(flag):
    """Parameters of msvssm_nano with only ``flag`` on, minus those with every flag off."""
    off = dict(path_se=False, layer_scale=False, dspp=False)

    def count(**flags):
        return sum(p.numel() for p in build_model("msvssm_nano", num_classes=4, **flags).parameters())

    return count(**{**off, flag: True}) - count(**off)

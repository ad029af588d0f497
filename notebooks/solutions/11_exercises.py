"""Solutions to the exercises of notebook 11 (checked by tests/test_exercises.py)."""
import numpy as np


def rf_centre(index, n_convs):
    """A 3x3 conv with stride 2 and padding 1 centres output j on input 2j; n of them: 2^n * index."""
    return 2 ** n_convs * index


def centre_square_side(erf, share):
    """Grow a square around (H // 2, W // 2) by one pixel per side until it holds >= share of the mass."""
    erf = np.asarray(erf, dtype=float)
    total = erf.sum()
    r, c = erf.shape[0] // 2, erf.shape[1] // 2
    for i in range(max(erf.shape)):
        inside = erf[max(0, r - i):r + i + 1, max(0, c - i):c + i + 1].sum()
        if inside >= share * total * (1 - 1e-12):  # a hair of tolerance for rounding in the sums
            return 2 * i + 1


def weakest_error_rate(predictions, expressivity, k):
    """Pool the test images of the k least expressive participants; error rate = share not correct."""
    weakest = expressivity.nsmallest(k, "expressivity")["participant"]
    rows = predictions[predictions["participant"].isin(weakest)]
    return 1 - rows["correct"].mean()

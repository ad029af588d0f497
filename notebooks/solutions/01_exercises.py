"""Solutions to the exercises of notebook 01 (checked by tests/test_exercises.py)."""
import numpy as np


def quadrant(valence, arousal):
    """The paper's class of one rating pair: a rating >= 5 is high."""
    return ("HV" if valence >= 5 else "LV") + ("HA" if arousal >= 5 else "LA")


def split_by_participant(df, val_participants, test_participants):
    """"train" / "val" / "test" for every row of ``df``, by its participant."""
    side = np.full(len(df), "train", dtype=object)
    side[df["participant"].isin(val_participants).to_numpy()] = "val"
    side[df["participant"].isin(test_participants).to_numpy()] = "test"
    return side


def weighted_f1(y_true, y_pred):
    """The paper's weighted F1: sum over classes of (share of true labels) x F1 of the class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    total = 0.0
    for c in np.unique(y_true):
        tp = np.sum((y_pred == c) & (y_true == c))
        predicted, actual = np.sum(y_pred == c), np.sum(y_true == c)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        total += actual / len(y_true) * f1
    return total

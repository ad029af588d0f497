"""Classification metrics of the paper (accuracy, weighted F1) and the rest of the report, via scikit-learn.

The paper's weighted F1 (section 4.1.2) is ``F1 = sum_i w_i * F1_i`` with ``w_i`` the share
of class ``i`` among the *true* labels: exactly ``sklearn.metrics.f1_score(average="weighted")``.
Every model of the course, neural or classical, is scored by :func:`classification_metrics`,
so the tables compare like with like.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> dict:
    """Accuracy, weighted F1, per-class precision/recall/F1/support and the confusion matrices.

    Returns a JSON-ready dict with the keys ``accuracy``, ``weighted_f1``, ``macro_f1``,
    ``per_class`` (name -> precision, recall, f1, support), ``confusion`` (counts, rows =
    true class) and ``confusion_normalized`` (each row divided by its true count; a class
    absent from ``y_true`` gives a row of zeros), ``class_names`` and ``n``.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length; got {y_true.shape} and {y_pred.shape}")
    if len(y_true) == 0:
        raise ValueError("no samples to score")
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    rows = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    return {
        "n": int(len(y_true)),
        "class_names": list(class_names),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
        "confusion": counts.tolist(),
        "confusion_normalized": normalized.tolist(),
    }


def weighted_f1_by_hand(confusion: np.ndarray) -> float:
    """The paper's formula worked out from confusion counts (rows = true class): for teaching and tests."""
    confusion = np.asarray(confusion, dtype=float)
    tp = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    weights = actual / actual.sum()
    return float((weights * f1).sum())

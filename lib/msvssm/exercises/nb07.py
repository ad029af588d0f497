"""Exercises of notebook 07 training: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .core import Result, _call, _close, exercise


def _loop_without_step(model, images, labels, steps):
    """A classic bug: gradients computed, the optimiser never stepped."""
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        losses.append(loss.item())
    return losses


@exercise("07", "overfit_one_batch", wrong=(
    _loop_without_step,  # gradients computed, the optimiser never stepped
))
def check_overfit_one_batch(fn: Callable) -> Result:
    """Exercise 07.1: ``overfit_one_batch(model, images, labels, steps)`` -> list of the loss at each step.

    A correct loop (forward, loss, zero_grad, backward, step) drives the loss of one fixed batch
    of 8 random images towards 0 within 60 AdamW steps; a loop that forgets the step, or steps
    before the gradient is computed, does not.
    """
    from ..models import build_model

    torch.manual_seed(0)
    model = build_model("vssm_nano", num_classes=4, drop_path_rate=0.0)
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    losses, why = _call(fn, model, images, labels, 60)
    if why:
        return False, why
    try:
        losses = [float(v) for v in losses]
    except Exception:
        return False, "return the list of losses, one float per step"
    if len(losses) != 60:
        return False, f"{len(losses)} losses for 60 steps"
    if not all(math.isfinite(v) for v in losses):
        return False, "a loss is NaN or inf"
    if not losses[-1] < 0.1 * losses[0]:
        return False, (f"the loss went from {losses[0]:.3f} to {losses[-1]:.3f}: one batch should be learnt by heart "
                       "(below a tenth of the start). Did you call optimizer.step() after loss.backward()?")
    return True, ""


@exercise("07", "recall_from_confusion", wrong=(
    lambda c: np.diag(c) / c.sum(axis=0),  # precision (columns), not recall
))
def check_recall_from_confusion(fn: Callable) -> Result:
    """Exercise 07.2: ``recall_from_confusion(counts)`` -> per-class recall, the diagonal of the paper's Fig. 2."""
    counts = np.array([[50, 3, 5, 2], [4, 20, 1, 5], [6, 2, 30, 2], [1, 9, 3, 17]])
    got, why = _call(fn, counts.copy())
    if why:
        return False, why
    return _close(got, np.diag(counts) / counts.sum(axis=1), rtol=1e-6, atol=1e-9)

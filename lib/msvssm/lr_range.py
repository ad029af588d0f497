"""The learning-rate range test (Smith, 2017, "Cyclical Learning Rates for Training Neural Networks"; fastai's
``lr_find``): a fresh model trained for a few dozen batches while the learning rate rises exponentially
from ``lr_min`` to ``lr_max``; the training loss against the learning rate shows where it starts to fall,
where it falls fastest, and where it blows up.

    from msvssm.lr_range import lr_range_test
    table = lr_range_test(cfg)                  # one row per step: lr, loss, smoothed loss
    suggestion(table)                           # the lr of the steepest fall of the smoothed loss

It reads only the *training* side of the run's split (never validation or test), uses the run's own
optimiser factory, loss, batch size and model, and leaves the caller's random state and thread count as
they were. A range test is a quick look, not a tuned choice: the learning rate it suggests is a starting
point to check on validation, as ``docs/training_study.md`` did for the ``cpu`` recipe.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn


def lr_range_test(cfg, lr_min: float = 1e-5, lr_max: float = 1.0, steps: int = 60, smoothing: float = 0.9,
                  diverge: float = 4.0, device: str | torch.device = "cpu") -> pd.DataFrame:
    """Train a fresh ``cfg.model`` (seeded by ``cfg.seed``) for up to ``steps`` batches of the training side, the
    learning rate multiplied by a constant factor each step from ``lr_min`` to ``lr_max``; stop early once the
    smoothed loss exceeds ``diverge`` times its minimum. Returns one row per step: ``step``, ``lr``, ``loss``,
    ``smoothed`` (bias-corrected exponential moving average with ``smoothing``)."""
    from .ops.threads import cpu_threads
    from .train.data import BatchIterator
    from .train.run import augment_params, build_optimizer, build_run_model, isolated_random_state, load_run_data

    if not 0 < lr_min < lr_max or steps < 2:
        raise ValueError(f"need 0 < lr_min < lr_max and steps >= 2 (got {lr_min}, {lr_max}, {steps})")
    device = torch.device(device)
    rows = []
    with cpu_threads(cfg.threads or None), isolated_random_state(device):
        data = load_run_data(cfg)
        torch.manual_seed(cfg.seed)
        model = build_run_model(cfg, len(data.class_names), device).train()
        optimizer = build_optimizer(cfg, model)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        factor = (lr_max / lr_min) ** (1 / (steps - 1))
        batches = BatchIterator(data.train, cfg.batch_size, train=True, seed=cfg.seed, augment=augment_params(cfg),
                                device=device)
        average, best, step, epoch = 0.0, math.inf, 0, 0
        while step < steps:
            batches.set_epoch(epoch)
            for images, labels in batches:
                lr = lr_min * factor ** step
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = loss_fn(model(images), labels)  # (b, classes) logits -> scalar
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                value = float(loss.detach())
                average = smoothing * average + (1 - smoothing) * value
                smoothed = average / (1 - smoothing ** (step + 1))
                rows.append({"step": step, "lr": lr, "loss": value, "smoothed": smoothed})
                best = min(best, smoothed)
                step += 1
                if step >= steps or not math.isfinite(value) or smoothed > diverge * best:
                    return pd.DataFrame(rows)
            epoch += 1
    return pd.DataFrame(rows)


def suggestion(table: pd.DataFrame) -> float:
    """The learning rate where the smoothed loss falls fastest (most negative slope against log lr), before
    its minimum; a common reading of the range test (fastai's "steep" point)."""
    upto = table.loc[: table["smoothed"].idxmin()]
    if len(upto) < 3:
        return float(upto["lr"].iloc[0])
    slope = np.gradient(upto["smoothed"].to_numpy(), np.log(upto["lr"].to_numpy()))
    return float(upto["lr"].iloc[int(np.argmin(slope))])

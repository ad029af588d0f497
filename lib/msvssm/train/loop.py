"""The training loop a student reads top to bottom, and the evaluation pass.

Everything else (building the model and data, checkpoints, logging, several
processes, mixed precision) lives in :mod:`msvssm.train.run` and is handed in here
as plain objects, so these two functions show only what learning is:

    for each batch:  forward -> loss -> backward -> clip -> optimiser step -> schedule -> EMA
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterable

import torch
import torch.nn as nn
from torch import Tensor


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf: training stops, and the last good checkpoint is kept."""


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    epoch: int,
    step: int,
    scheduler=None,
    clip_grad: float = 0.0,
    ema=None,
    mix: Callable | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    scaler=None,
    progress=None,
) -> tuple[dict[str, float], int]:
    """One pass over the training batches. Returns ({"loss", "accuracy"}, the new global step).

    images (b, 3, H, W) float, labels (b,) int; ``mix`` (optional, timm's Mixup) turns
    labels into soft targets; ``step`` counts optimiser updates since the start of the run
    and drives the per-iteration learning-rate schedule.
    """
    model.train()
    total_loss = correct = seen = 0.0
    for images, labels in batches:
        targets = labels if mix is None else None
        if mix is not None:
            images, targets = mix(images, labels)  # soft targets (b, classes)
        with autocast():
            logits = model(images)  # (b, classes)
            loss = loss_fn(logits, targets)  # scalar
        if not math.isfinite(loss.item()):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}: stopping; the last good "
                "checkpoint is kept (lower lr, turn on clip_grad, or try amp=none)"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:  # fp16 on CUDA: scale the loss so small gradients do not underflow
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        # The gradient norm (clipped to clip_grad if > 0): a NaN/inf gradient must not reach the weights.
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad if clip_grad > 0 else float("inf"))
        if scaler is None and not math.isfinite(grad_norm.item()):
            raise NonFiniteLossError(
                f"gradient norm is {grad_norm.item()} at epoch {epoch + 1}, step {step + 1}: stopping; the last good "
                "checkpoint is kept (lower lr, or try amp=none)")
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        step += 1
        if scheduler is not None:
            scheduler.step_update(num_updates=step)  # per-iteration warm-up and cosine
        if ema is not None:
            ema.update(model, step=step)
        b = labels.shape[0]
        total_loss += loss.item() * b
        correct += (logits.argmax(1) == labels).sum().item()
        seen += b
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
    if seen == 0:
        raise RuntimeError("the training split gave no full batch: lower batch_size or add data")
    return {"loss": total_loss / seen, "accuracy": correct / seen}, step


@torch.no_grad()
def predict(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[Tensor, Tensor]:
    """Logits (n, classes) as float32 on the CPU and labels (n,) for every batch, in order."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in batches:
        with autocast():
            all_logits.append(model(images).float().cpu())  # (b, classes)
        all_labels.append(labels.cpu())
    if not all_logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.int64)
    return torch.cat(all_logits), torch.cat(all_labels)

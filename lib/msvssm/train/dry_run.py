"""A dry run: the whole configuration for a few steps, before committing days of GPU time to it.

    msvssm train --profile gpu --data DATA --dry-run                   # on the GPU it will train on
    msvssm train --profile gpu --data DATA --dry-run --set device=cpu  # the same code path on a CPU

It builds everything a real run builds, by the same functions (:func:`msvssm.train.run.setup_run`:
the model at full size and its first forward, the data's split, the paper's augmentation, the
optimiser, schedule, EMA, autocast and loss scaler, DDP under torchrun), then

1. trains ``steps`` optimiser steps on the first ``steps`` global batches of the training side (a
   side too small for them, as the smoke data, is repeated to fill them),
2. scores one validation batch with the model that a run validates (the EMA weights when EMA is on),
3. writes ``last.pt`` as a run does after an epoch, reads it back into the model, optimiser,
   schedule, EMA and scaler as ``--resume`` does, and checks that the weights came back exactly,

and reports the time of a step (the second: the first pays for warm-up), the peak GPU memory
and what a full run would take at that speed. Everything it writes goes to a temporary folder
that is removed: no run folder is created and nothing enters a sweep's cache. Only the data
folder's split file is made, as the real run would make it.
"""
from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..ops.threads import cpu_threads
from ..utils import get_logger, synchronize
from .config import TrainConfig
from .distributed import init_distributed
from .loop import predict, train_one_epoch

log = get_logger("train")

# 874 one-minute DEAP videos at 1 frame/s, ~92 % with a face found, ~70 % of them for training (README).
DEAP_SCALE_TRAINING_IMAGES = 32_000


def dry_run(cfg: TrainConfig, *, steps: int = 2) -> dict[str, Any]:
    """Run ``cfg`` for ``steps`` training steps, one validation batch and a checkpoint round trip.

    Returns a report: device, autocast dtype, scan backend, per-process batch, seconds per step,
    training img/s, peak GPU memory (GB, None on a CPU), validation batch loss, and the projected
    hours of the full run (epochs x steps per epoch of the whole training side x the step time).
    Raises what a real run would raise (a bad config, missing data, a device that cannot run it).
    """
    from .run import (RunError, autocast_factory, batch_per_process, isolated_random_state, resolve_device,
                      restore_last_checkpoint, run_record, save_epoch, setup_run)

    if steps < 1:
        raise ValueError("a dry run needs at least one step")
    dist = init_distributed(cfg)
    try:
        device = resolve_device(cfg, dist)
        per_process = batch_per_process(cfg, dist.world_size)
        with tempfile.TemporaryDirectory(prefix="msvssm-dry-run-") as tmp, cpu_threads(cfg.threads or None), \
                isolated_random_state(device):
            cfg = cfg.replace(out=str(Path(tmp) / "run"))
            limit = {"train": steps * cfg.batch_size, "val": per_process * 2 * dist.world_size, "test": 1}
            run = setup_run(cfg, dist, device, resume=False, limit=limit)
            full_train = run.data.side_sizes["train"]  # the whole side, not the few images decoded
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            autocast = autocast_factory(device, run.amp_dtype)
            run.train_batches.set_epoch(0)
            times, batches = [], iter(run.train_batches)
            for _ in range(steps):
                synchronize(device)
                t0 = time.perf_counter()  # the batch's transfer and augmentation count, as in training
                batch = next(batches)
                stats, run.step = train_one_epoch(
                    run.train_model, [batch], run.optimizer, run.loss_fn, epoch=0, step=run.step,
                    scheduler=run.scheduler, clip_grad=cfg.clip_grad, ema=run.ema, mix=run.mix, autocast=autocast,
                    scaler=run.scaler)
                synchronize(device)
                times.append(time.perf_counter() - t0)
            logits, labels = predict(run.eval_model, itertools.islice(run.val_batches, 1), autocast)
            if logits.shape != (len(labels), len(run.data.class_names)) or not torch.isfinite(logits).all():
                raise RunError(f"the validation batch gave logits of shape {tuple(logits.shape)}, "
                               f"finite: {bool(torch.isfinite(logits).all())}")
            val_loss = float(torch.nn.functional.cross_entropy(logits, labels))
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            checkpoint_ok = _checkpoint_round_trip(run, stats, save_epoch, restore_last_checkpoint)
            record = run_record(cfg, device, run.model, run.data, dist.world_size) if dist.is_main else {}
            step_s = times[-1]
            steps_per_epoch = full_train // cfg.batch_size
            report = {
                "model": cfg.model, "image_size": cfg.image_size, "device": record.get("device", str(device)),
                "world_size": dist.world_size, "batch_size": cfg.batch_size, "batch_per_process": per_process,
                "amp": str(run.amp_dtype or "float32"), "augment": cfg.augment, "ema": cfg.ema,
                "scan_backend": record.get("scan_backend", {}).get("used"),
                "parameters": sum(p.numel() for p in run.model.parameters()),
                "steps": steps, "step_seconds": [round(t, 3) for t in times],
                "train_img_s": cfg.batch_size / step_s, "train_loss": stats["loss"], "val_batch_loss": val_loss,
                "peak_gpu_memory_gb": peak, "checkpoint_round_trip": checkpoint_ok,
                "training_images": full_train, "steps_per_epoch": steps_per_epoch,
                "epochs": cfg.epochs, "projected_hours": cfg.epochs * steps_per_epoch * step_s / 3600,
            }
        return report
    finally:
        dist.close()


def _checkpoint_round_trip(run, stats, save_epoch, restore_last_checkpoint) -> bool:
    """Save last.pt as after an epoch, restore it as --resume does, and check the weights came back."""
    before = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    row = {"epoch": 1, "lr": run.optimizer.param_groups[0]["lr"], "train_loss": stats["loss"],
           "train_accuracy": stats["accuracy"]}
    save_epoch(run, row)
    if run.dist.is_main:
        with torch.no_grad():  # spoil the weights, so that only the restore can bring them back
            for p in run.model.parameters():
                p.add_(1.0)
        restore_last_checkpoint(run)
    run.dist.barrier()
    after = run.model.state_dict()
    return all(torch.equal(before[k], after[k]) for k in before)


def format_report(report: dict[str, Any]) -> str:
    """The dry run's report in a few lines."""
    peak = report["peak_gpu_memory_gb"]
    hours = report["projected_hours"]
    return "\n".join([
        f"dry run of {report['model']} at {report['image_size']} px on {report['device']} "
        f"({report['world_size']} process(es)): {report['steps']} training steps, 1 validation batch, "
        f"checkpoint saved and restored: {'exactly' if report['checkpoint_round_trip'] else 'NOT exactly'}",
        f"  batch {report['batch_size']} ({report['batch_per_process']} per process), amp {report['amp']}, "
        f"augment {report['augment']}, EMA {report['ema']}, scan backend {report['scan_backend']}, "
        f"{report['parameters'] / 1e6:.1f} M parameters",
        f"  step times {report['step_seconds']} s -> {report['train_img_s']:.1f} training img/s; "
        f"peak GPU memory {'n/a (CPU)' if peak is None else f'{peak:.2f} GB'}",
        f"  losses: training {report['train_loss']:.3f}, validation batch {report['val_batch_loss']:.3f}",
        (f"  a full run: {report['epochs']} epochs x {report['steps_per_epoch']} steps ({report['training_images']} "
         f"training images) at this speed is about {hours:.1f} h" if report["steps_per_epoch"] else
         f"  this data has fewer training images ({report['training_images']}) than one batch: no projection of it"),
        f"  the DEAP-scale data (about {DEAP_SCALE_TRAINING_IMAGES:,} training crops, an estimate: README) would take "
        f"about {report['epochs'] * DEAP_SCALE_TRAINING_IMAGES / report['train_img_s'] / 3600:.1f} h at this speed",
        "nothing was written to a run folder",
    ])

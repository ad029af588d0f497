"""Plumbing around the loop: build everything from a config, train, checkpoint, resume, evaluate.

    from msvssm.train import TrainConfig, train
    run_dir = train(TrainConfig.from_profile("cpu", data="data/faces-synth-default-128", out="runs/demo"))

A run folder holds::

    config.json     the validated configuration (what --set changed included)
    inputs.json     what it is computed from, by content (msvssm.train.inputs): resume and reuse check it
    record.json     what produced it: versions, git commit, device, scan backend, data hash, synthetic or not
    history.csv     per epoch: learning rate, train/val loss, accuracy, weighted F1, seconds
    last.pt         exact state after the last completed epoch (``--resume`` continues from it)
    best.pt         weights with the best validation weighted F1
    metrics.json    the test split scored once, at the end, with best.pt (accuracy, weighted_f1, ...)
    confusion.png, curves.png   the paper's Fig. 2 and Fig. 3 for this run

Model selection uses the validation split only; the test split is touched once. (The
paper reports the best test numbers it saw, which selects on the test set; say so where
the numbers are compared.)

Several processes: launched with ``torchrun --nproc_per_node=N``, each process trains on its
share (``batch_size / N``) of every global batch (gloo on CPU, NCCL on GPU); only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..ops.threads import cpu_threads, thread_settings
from ..utils import atomic_path, atomic_write_json, get_logger, git_commit
from .checkpoint import check_compatible, load_checkpoint, load_weights, save_checkpoint
from .config import ConfigError, TrainConfig
from .data import AugmentParams, BatchIterator, InMemorySplit, epoch_seed, load_split
from .inputs import file_sha256
from .distributed import DistContext, all_gather_predictions, init_distributed
from .loop import predict, train_one_epoch

log = get_logger("train")

HISTORY_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_weighted_f1",
                   "seconds", "test_accuracy", "test_weighted_f1")


class RunError(RuntimeError):
    """A run that cannot start: missing data, empty split, absent class, existing run folder..."""


# ----------------------------------------------------------------------------- devices and precision


def resolve_device(cfg: TrainConfig, dist: DistContext | None = None) -> torch.device:
    """``cuda`` (this process's GPU), or ``cpu``; ``device=cuda`` without a usable GPU is an error that says why."""
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RunError(f"device=cuda asked for (the gpu profile asks for it), but {cuda_unusable_reason()}. "
                           "To run this configuration on the CPU on purpose (a dry run), add --set device=cpu")
        return torch.device("cuda", dist.local_rank if dist else 0)
    return torch.device("cpu")


def cuda_unusable_reason() -> str:
    """Why ``torch.cuda.is_available()`` is False, in words a user can act on."""
    if torch.version.cuda is None:
        return (f"this torch ({torch.__version__}) is a CPU-only build: install a CUDA build of torch "
                "(README, GPU section)")
    return (f"torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no usable GPU: no NVIDIA GPU or "
            f"driver is visible, or the driver is older than CUDA {torch.version.cuda} needs (check `nvidia-smi`; "
            "with an older driver, install the same torch version from PyTorch's wheel index for your CUDA)")


def resolve_amp(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32. ``auto``: bf16 on a GPU that computes it natively
    (compute capability 8.0 and up: A100, RTX 30xx, H100), else fp16 with a loss scaler; none on CPU.

    ``torch.cuda.is_bf16_supported()`` alone also says yes where bf16 is only emulated (a V100, a
    T4), which is slower than fp16 there; hence ``including_emulation=False``.
    On CPU, bf16 autocast was measured at +4 % for msvssm_nano (``make bench-train``):
    too little to be the default; ask for it with amp=bf16.
    """
    mode = cfg.amp
    if mode == "auto":
        if device.type != "cuda":
            return None
        mode = "bf16" if native_bf16(device) else "fp16"
    if mode == "none":
        return None
    if mode == "fp16" and device.type == "cpu":
        raise ConfigError("amp=fp16 is for CUDA; on a CPU use amp=bf16 or none")
    return torch.bfloat16 if mode == "bf16" else torch.float16


def native_bf16(device: torch.device) -> bool:
    """Whether the GPU computes bfloat16 in hardware (not emulated)."""
    import inspect

    if "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cuda.get_device_capability(device)[0] >= 8  # older torch: capability 8.0 brought bf16


def autocast_factory(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


# ----------------------------------------------------------------------------- data


@dataclass
class RunData:
    train: InMemorySplit
    val: InMemorySplit
    test: InMemorySplit
    class_names: list[str]
    split_file: Path
    data_dir: Path
    side_sizes: dict[str, int] = dataclass_field(default_factory=dict)  # images per side in the split file


def split_file_for(cfg: TrainConfig, dist: DistContext | None = None) -> Path:
    """The shared split file of (protocol, split_seed), or of fold ``fold`` of ``folds``; made once, reused by
    every run on the data, made again if the data's manifest changed since (:func:`msvssm.data.splits.current_split`)."""
    from ..data.splits import current_split, split_name

    path = Path(cfg.data) / "splits" / f"{split_name(cfg.split, cfg.split_seed, cfg.folds or None, cfg.fold)}.csv"
    if dist is None or dist.is_main:
        path = current_split(cfg.data, cfg.split, cfg.split_seed, cfg.folds, cfg.fold)
    if dist is not None:
        dist.barrier()
    return path


def open_run_data(cfg: TrainConfig, dist: DistContext | None = None):
    """Check the data and make or reuse the split: (datasets per side, class names, split file). Nothing decoded yet."""
    from ..data import FaceImageDataset, read_classes

    data_dir = Path(cfg.data)
    if not cfg.data:
        raise RunError("no data folder: set data=... (a preprocessed faces folder with manifest.csv)")
    if not data_dir.is_dir():
        raise RunError(f"data folder {data_dir} does not exist: run `msvssm preprocess` (or `make reproduce`) first")
    split_file = split_file_for(cfg, dist)
    classes = read_classes(data_dir)
    sides = {}
    for side in ("train", "val", "test"):
        try:
            ds = FaceImageDataset(data_dir, split_file, side, classes=classes)
        except ValueError as err:
            raise RunError(f"split {split_file}: {err}") from err
        if len(ds) == 0:
            raise RunError(f"split {split_file} has no {side} images")
        sides[side] = ds
    counts = sides["train"].class_counts()
    absent = [c for c, n in zip(classes, counts) if n == 0]
    if absent:
        raise RunError(f"class(es) {absent} have no training image in {split_file}: the model cannot learn them")
    return sides, classes, split_file


def decode_run_data(cfg: TrainConfig, sides, classes, split_file, limit: dict[str, int] | None = None) -> RunData:
    """Decode the three sides into memory (uint8 tensors at the run's image size); ``limit``: exactly
    so many images of a side (a dry run's few batches: its first ones, repeated when the side is smaller)."""
    t0 = time.perf_counter()
    limit = limit or {}
    decoded = {side: load_split(ds, cfg.image_size, cfg.workers, limit.get(side)) for side, ds in sides.items()}
    for side, n in limit.items():
        if len(decoded[side]) < n:
            decoded[side] = decoded[side].repeated(n)
    log.info("decoded %s images of %dx%d into memory in %.1f s",
             {s: len(v) for s, v in decoded.items()}, cfg.image_size, cfg.image_size, time.perf_counter() - t0)
    return RunData(decoded["train"], decoded["val"], decoded["test"], classes, split_file, Path(cfg.data),
                   {side: len(ds) for side, ds in sides.items()})


def load_run_data(cfg: TrainConfig, dist: DistContext | None = None) -> RunData:
    """Check the data, make or reuse the split, decode the three sides into memory."""
    return decode_run_data(cfg, *open_run_data(cfg, dist))


# ----------------------------------------------------------------------------- model, optimiser, schedule


def build_run_model(cfg: TrainConfig, num_classes: int, device: torch.device | str = "cpu") -> nn.Module:
    """The config's model on ``device``, checked with one forward pass of a blank image of the run's size."""
    from ..models import build_model

    kwargs = dict(cfg.model_kwargs)
    if cfg.drop_path >= 0:
        kwargs["drop_path_rate"] = cfg.drop_path
    if cfg.scan_backend:
        kwargs["scan_backend"] = cfg.scan_backend
    try:
        model = build_model(cfg.model, num_classes=num_classes, **kwargs)
    except TypeError as err:
        raise ConfigError(f"model_kwargs {cfg.model_kwargs} do not fit model {cfg.model!r}: {err}") from err
    model = model.to(device)
    # A model that cannot run on this input (size, channels, backend, device) fails now, before the data is decoded.
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, cfg.image_size, cfg.image_size, device=device))
    except Exception as err:
        raise ConfigError(
            f"model {cfg.model!r} fails on a 3x{cfg.image_size}x{cfg.image_size} image on {device}: "
            f"{type(err).__name__}: {err}") from err
    return model


def build_optimizer(cfg: TrainConfig, model: nn.Module):
    """timm's optimiser factory: AdamW with no weight decay on the model's ``no_weight_decay()``, norms and biases.

    AdamW runs fused (one kernel for all parameters, CPU and CUDA): 2.5 ms a step instead of
    8 ms for the foreach form on ``msvssm_nano`` on 2 cores (``make bench-train``).
    """
    from timm.optim import create_optimizer_v2

    fused = {"fused": True} if cfg.opt.lower() in ("adamw", "adam") else {"foreach": True}
    return create_optimizer_v2(model, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


def build_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """timm's cosine schedule with linear warm-up, in optimiser steps (``step_update`` every iteration)."""
    from timm.scheduler import CosineLRScheduler

    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    return CosineLRScheduler(optimizer, t_initial=total, lr_min=cfg.min_lr, warmup_t=warmup,
                             warmup_lr_init=cfg.lr * 0.01, warmup_prefix=False, t_in_epochs=False)


def augment_params(cfg: TrainConfig) -> AugmentParams | None:
    """The augmentation a config asks for: the paper's (with its strengths), flips only, or none."""
    if cfg.augment == "none":
        return None
    if cfg.augment == "flip":
        return AugmentParams(hflip=cfg.hflip, degrees=0.0, translate=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    return AugmentParams(cfg.hflip, cfg.degrees, cfg.translate, cfg.brightness, cfg.contrast, cfg.saturation)


def build_mixup(cfg: TrainConfig, num_classes: int):
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                 num_classes=num_classes)


def build_scaler(amp_dtype: torch.dtype | None, device: torch.device):
    """fp16 needs a loss scaler (small gradients underflow in float16); bf16 and float32 do not."""
    return torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None


def build_ema(cfg: TrainConfig, model: nn.Module):
    """timm's weight EMA (with its warm-up of the decay), or None."""
    if not cfg.ema:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True)


# ----------------------------------------------------------------------------- records


def data_provenance(data_dir: Path) -> dict[str, Any]:
    """The manifest's hash and whether the crops come from the synthetic DEAP."""
    info: dict[str, Any] = {"data_dir": str(data_dir), "manifest_sha256": file_sha256(data_dir / "manifest.csv")}
    synthetic = None
    pre = data_dir / "preprocess_config.json"
    if pre.exists():
        root = Path(json.loads(pre.read_text(encoding="utf-8")).get("root", ""))
        synthetic = (root / "synth_meta.json").exists()
        info["source_root"] = str(root)
    info["synthetic"] = synthetic  # None: an ImageFolder or a source we cannot tell
    return info


def run_record(cfg: TrainConfig, device: torch.device, model: nn.Module, data: RunData, world_size: int) -> dict:
    import timm

    from .. import __version__, available_scan_backends

    from ..ops.registry import resolve_backend

    requested = sorted({m.scan_backend or "" for m in model.modules() if hasattr(m, "scan_backend")})
    used = sorted({resolve_backend(r or None, device) for r in requested})
    return {
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "versions": {"msvssm": __version__, "torch": torch.__version__, "timm": timm.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "git_commit": git_commit(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "cpu_threads": torch.get_num_threads(),
        "threads": thread_settings(),  # torch's and the numba kernels' counts, numba's threading layer
        "world_size": world_size,
        "batch_per_process": cfg.batch_size // world_size,
        "scan_backend": {"used": used, "requested": [r or os.environ.get("MSVSSM_SCAN_BACKEND") or "auto"
                                                     for r in requested],
                         "available": available_scan_backends(device)},
        "split_file": str(data.split_file),
        "split_sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "class_names": data.class_names,
        "parameters": sum(p.numel() for p in model.parameters()),
        **data_provenance(data.data_dir),
    }


# ----------------------------------------------------------------------------- evaluation


def score(model: nn.Module, batches: BatchIterator, class_names, autocast, dist: DistContext | None = None) -> dict:
    """Loss, accuracy, weighted F1 and the rest of :func:`msvssm.evaluation.classification_metrics`."""
    from ..evaluation import classification_metrics

    logits, labels = predict(model, batches, autocast)
    if dist is not None and dist.world_size > 1:
        logits, labels = all_gather_predictions(logits, labels, dist)
    metrics = classification_metrics(labels.numpy(), logits.argmax(1).numpy(), class_names)
    metrics["loss"] = float(nn.functional.cross_entropy(logits, labels).item())
    return metrics


# ----------------------------------------------------------------------------- the run


def prepare_out_dir(cfg: TrainConfig, resume: bool) -> Path:
    if not cfg.out:
        raise RunError("no output folder: set out=... (or --out)")
    out = Path(cfg.out)
    saved = out / "config.json"
    if saved.exists():
        previous = TrainConfig.load(saved)
        if previous.identity() != cfg.identity():
            diff = {k: (previous.identity()[k], v) for k, v in cfg.identity().items() if previous.identity()[k] != v}
            raise RunError(f"{out} holds a run of another configuration (saved vs now: {diff}); use another --out")
        if not resume and (out / "last.pt").exists():
            raise RunError(f"{out} already holds a run: pass --resume to continue it, or use another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def is_complete(out: str | os.PathLike, inputs: dict[str, Any] | None = None) -> bool:
    """Whether ``out`` holds a finished run (metrics.json written after the test evaluation) and, when
    ``inputs`` (:func:`msvssm.train.inputs.run_inputs`) are given, one computed from exactly those."""
    out = Path(out)
    if not (out / "metrics.json").exists():
        return False
    if inputs is None:
        return True
    from .inputs import inputs_key, read_inputs

    saved = read_inputs(out)
    return saved is not None and inputs_key(saved) == inputs_key(inputs)


@dataclass
class Training:
    """Everything the epochs of one run use, built from its config by :func:`setup_run`."""

    cfg: TrainConfig
    dist: DistContext
    out: Path
    device: torch.device
    amp_dtype: torch.dtype | None
    data: RunData
    inputs: dict[str, Any]
    model: nn.Module
    train_model: nn.Module  # the model, wrapped in DDP when distributed
    optimizer: Any
    scheduler: Any
    scaler: Any
    ema: Any
    mix: Any
    loss_fn: nn.Module
    train_batches: BatchIterator
    val_batches: BatchIterator
    test_batches: BatchIterator | None
    start_epoch: int = 0
    step: int = 0
    history: list = dataclass_field(default_factory=list)
    best: dict = dataclass_field(default_factory=lambda: {"val_weighted_f1": -1.0, "epoch": -1})

    @property
    def autocast(self):
        return autocast_factory(self.device, self.amp_dtype)

    @property
    def eval_model(self) -> nn.Module:
        """What is validated and saved as best.pt: the EMA weights when EMA is on."""
        return self.ema.module if self.ema is not None else self.model


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train ``cfg`` to the end (or continue it with ``resume``), score the test split once; returns the run folder.

    The caller's random state and thread count are left as they were: the run draws from
    torch's and numpy's global generators (timm's DropPath and Mixup use them), reseeded from
    (seed, epoch), inside a scope that restores the caller's states when it ends.
    """
    dist = init_distributed(cfg)
    try:
        device = resolve_device(cfg, dist)
        with cpu_threads(cfg.threads or None), isolated_random_state(device):  # both restored afterwards
            run = setup_run(cfg, dist, device, resume)
            if resume and (run.out / "last.pt").exists():
                restore_last_checkpoint(run)
            record_run_start(run)
            for epoch in range(run.start_epoch, cfg.epochs):
                row = run_epoch(run, epoch, progress)
                save_epoch(run, row)
            if dist.is_main:
                evaluate_run(run.out, split="test", data=run.data, autocast=run.autocast, device=device)
            dist.barrier()
        return run.out
    finally:
        dist.close()


@contextlib.contextmanager
def isolated_random_state(device: torch.device):
    """Run the body with torch's, numpy's and Python's global generators forked: the caller's states come back."""
    import random

    np_state, py_state = np.random.get_state(), random.getstate()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def setup_run(cfg: TrainConfig, dist: DistContext, device: torch.device, resume: bool,
              limit: dict[str, int] | None = None) -> Training:
    """Check the folder and the data, build the model (seeded), decode the data (``limit``: the first so
    many images per side, for a dry run), build optimiser and friends."""
    from .inputs import run_inputs

    out = prepare_out_dir(cfg, resume) if dist.is_main else Path(cfg.out)
    dist.barrier()
    amp_dtype = resolve_amp(cfg, device)
    sides, classes, split_file = open_run_data(cfg, dist)
    inputs = run_inputs(cfg, split_file, device=device)
    if resume and (out / "last.pt").exists():
        check_inputs_unchanged(out, inputs, "resume")
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
    model = build_run_model(cfg, len(classes), device)
    data = decode_run_data(cfg, sides, classes, split_file, limit)
    per_process = batch_per_process(cfg, dist.world_size)
    train_batches = BatchIterator(data.train, per_process, train=True, seed=cfg.seed, augment=augment_params(cfg),
                                  rank=dist.rank, world_size=dist.world_size, device=device)
    val_batches = BatchIterator(data.val, per_process * 2, train=False, rank=dist.rank,
                                world_size=dist.world_size, device=device)
    # track_test: a learning-curve study's view of the test split; it never selects anything.
    test_batches = BatchIterator(data.test, per_process * 2, train=False, rank=dist.rank,
                                 world_size=dist.world_size, device=device) if cfg.track_test else None
    if len(train_batches) == 0:
        raise RunError(f"{len(data.train)} training images give no full batch of {cfg.batch_size}")
    optimizer = build_optimizer(cfg, model)
    mix = build_mixup(cfg, len(data.class_names))
    return Training(
        cfg=cfg, dist=dist, out=out, device=device, amp_dtype=amp_dtype, data=data, inputs=inputs, model=model,
        train_model=dist.wrap(model), optimizer=optimizer,
        scheduler=build_scheduler(cfg, optimizer, len(train_batches)), scaler=build_scaler(amp_dtype, device),
        ema=build_ema(cfg, model), mix=mix,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=0.0 if mix is not None else cfg.label_smoothing),
        train_batches=train_batches, val_batches=val_batches, test_batches=test_batches)


def batch_per_process(cfg: TrainConfig, world_size: int) -> int:
    """Each process's share of the global ``batch_size``.

    ``batch_size`` is the global batch, whatever the number of processes: with it the number of
    optimiser steps per epoch, the learning rate and the EMA decay per step are the recipe's on 1
    GPU or 8, so adding GPUs never changes what is trained, only how fast.
    """
    if cfg.batch_size % world_size:
        raise RunError(f"batch_size={cfg.batch_size} is the global batch and must divide evenly over "
                       f"{world_size} processes (each takes batch_size / {world_size})")
    per_process = cfg.batch_size // world_size
    if (cfg.mixup > 0 or cfg.cutmix > 0) and per_process % 2:
        raise RunError(f"mixup/cutmix pair samples within each process's batch: {per_process} per process is odd")
    return per_process


def check_inputs_unchanged(out: Path, inputs: dict, action: str) -> None:
    """Refuse to ``action`` (resume, reuse) a run whose inputs changed, saying what changed."""
    from .inputs import changed_inputs, inputs_key, read_inputs

    saved = read_inputs(out)
    if saved is not None and inputs_key(saved) == inputs_key(inputs):
        return
    changes = changed_inputs(saved, inputs) or ["its inputs.json differs from the current inputs"]
    raise RunError(f"cannot {action} {out}: " + "; ".join(changes) +
                   ". Its results would not be what this data and code compute: train into another --out "
                   "(or delete the folder)")


def restore_last_checkpoint(run: Training) -> None:
    """Continue exactly where ``last.pt`` stopped: weights, optimiser, schedule, EMA, loss scale, history."""
    path = run.out / "last.pt"
    state = load_checkpoint(path)
    check_compatible(state, run.cfg.model, len(run.data.class_names), path)
    load_weights(run.model, state["model"], path)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.ema is not None:
        load_weights(run.ema.module, state["ema"], path)
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.step, run.history, run.best = state["epoch"], state["step"], state["history"], state["best"]
    log.info("resuming %s after epoch %d (step %d)", run.out, run.start_epoch, run.step)


def record_run_start(run: Training) -> None:
    """config.json, inputs.json and record.json (a resume keeps the first record and notes itself in it)."""
    cfg, out = run.cfg, run.out
    if run.dist.is_main:
        from .inputs import INPUTS_FILE

        atomic_write_json(out / "config.json", cfg.to_dict())
        atomic_write_json(out / INPUTS_FILE, run.inputs)
        record = run_record(cfg, run.device, run.model, run.data, run.dist.world_size)
        if run.start_epoch > 0 and (out / "record.json").exists():  # keep what started the run; note the resume
            first = json.loads((out / "record.json").read_text(encoding="utf-8"))
            first.setdefault("resumed", []).append({"after_epoch": run.start_epoch, **{
                k: record[k] for k in ("git_commit", "versions", "device", "world_size", "scan_backend")}})
            record = first
        atomic_write_json(out / "record.json", record)
    if run.start_epoch == 0:
        log.info("training %s (%d parameters) on %s for %d epochs of %d steps, %s",
                 cfg.model, sum(p.numel() for p in run.model.parameters()), run.device, cfg.epochs,
                 len(run.train_batches), f"amp {run.amp_dtype}" if run.amp_dtype else "float32")


def run_epoch(run: Training, epoch: int, progress: bool) -> dict[str, Any]:
    """Train one epoch, validate when due (saving best.pt on a new best), score the test split if tracked."""
    from tqdm.auto import tqdm

    cfg, dist = run.cfg, run.dist
    t0 = time.perf_counter()
    # Every random draw of an epoch comes from (seed, epoch): resuming redoes it exactly.
    # The rank enters the torch seed so that each process draws its own drop-path masks.
    torch.manual_seed(epoch_seed(cfg.seed, epoch, f"torch{dist.rank}"))
    np.random.seed(epoch_seed(cfg.seed, epoch, "numpy") % 2**32)  # timm's Mixup draws from numpy
    run.train_batches.set_epoch(epoch)
    lr_at_start = run.optimizer.param_groups[0]["lr"]
    bar = tqdm(total=len(run.train_batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
               disable=not (progress and dist.is_main))
    stats, run.step = train_one_epoch(
        run.train_model, run.train_batches, run.optimizer, run.loss_fn, epoch=epoch, step=run.step,
        scheduler=run.scheduler, clip_grad=cfg.clip_grad, ema=run.ema, mix=run.mix, autocast=run.autocast,
        scaler=run.scaler, progress=bar)
    bar.close()
    stats = dist.mean_dict(stats)
    row = {"epoch": epoch + 1, "lr": lr_at_start, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"]}
    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
        val = score(run.eval_model, run.val_batches, run.data.class_names, run.autocast, dist)
        row.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_weighted_f1=val["weighted_f1"])
        if val["weighted_f1"] > run.best["val_weighted_f1"]:
            run.best = {"val_weighted_f1": val["weighted_f1"], "val_accuracy": val["accuracy"], "epoch": epoch + 1}
            if dist.is_main:
                save_checkpoint(run.out / "best.pt", {
                    "model": run.eval_model.state_dict(), "model_name": cfg.model,
                    "model_kwargs": cfg.model_kwargs, "class_names": run.data.class_names,
                    "image_size": cfg.image_size, "epoch": epoch + 1, "val": run.best})
    row["seconds"] = time.perf_counter() - t0  # training and validation; not the study's test pass
    if run.test_batches is not None:
        test = score(run.eval_model, run.test_batches, run.data.class_names, run.autocast, dist)
        row.update(test_accuracy=test["accuracy"], test_weighted_f1=test["weighted_f1"])
    return row


def save_epoch(run: Training, row: dict[str, Any]) -> None:
    """Append the epoch to history.csv, then write last.pt (a kill between the two redoes the epoch)."""
    run.history.append(row)
    if run.dist.is_main:
        write_history(run.out / "history.csv", run.history)
        save_checkpoint(run.out / "last.pt", {
            "model": run.model.state_dict(), "model_name": run.cfg.model, "class_names": run.data.class_names,
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "ema": run.ema.module.state_dict() if run.ema is not None else None,
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "epoch": row["epoch"], "step": run.step, "history": run.history, "best": run.best})
        log.info("epoch %d/%d  %s", row["epoch"], run.cfg.epochs, "  ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k != "epoch" and isinstance(v, float)))
    run.dist.barrier()


def write_history(path: Path, history: list[dict]) -> None:
    frame = pd.DataFrame(history).reindex(columns=list(HISTORY_COLUMNS))
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")


def read_history(run: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(Path(run) / "history.csv")


def load_run_model(run: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict, TrainConfig]:
    """The best model of a run folder, in eval mode, with its checkpoint metadata and config."""
    from ..models import build_model

    run = Path(run)
    cfg = TrainConfig.load(run / "config.json")
    state = load_checkpoint(run / "best.pt")
    check_compatible(state, cfg.model, len(state["class_names"]), run / "best.pt")
    kwargs = dict(state.get("model_kwargs") or {})
    if cfg.scan_backend:
        kwargs["scan_backend"] = cfg.scan_backend
    model = build_model(cfg.model, num_classes=len(state["class_names"]), **kwargs)
    load_weights(model, state["model"], run / "best.pt")
    return model.to(device).eval(), state, cfg


def _best_model_on(run: Path, split: str, data: RunData | None, device):
    """The run's best model, its checkpoint and config, the run's data and evaluation batches of ``split``."""
    if split not in ("train", "val", "test"):
        raise RunError(f"split must be train, val or test, not {split!r}")
    model, state, cfg = load_run_model(run, device)
    data = data if data is not None else load_run_data(cfg)
    check_data_unchanged(run, cfg, data)
    batches = BatchIterator(getattr(data, split), cfg.batch_size * 2, train=False, device=device)
    return model, state, cfg, data, batches


def check_data_unchanged(run: Path, cfg: TrainConfig, data: RunData) -> None:
    """Refuse to score a run on data or a split file other than the ones it was trained and selected on."""
    from .inputs import data_fingerprint, read_inputs

    saved = read_inputs(run)
    if saved is None:
        log.warning("%s has no inputs.json (made before runs recorded their inputs): cannot check that %s is the "
                    "data it was trained on", run, cfg.data)
        return
    now, changes = data_fingerprint(cfg.data), []
    for key, what in (("manifest_sha256", "the manifest"), ("crops_sha256", "the face crops")):
        if saved.get("data", {}).get(key) != now[key]:
            changes.append(f"{what} changed")
    if saved.get("split", {}).get("sha256") != file_sha256(data.split_file):
        changes.append(f"the split file {data.split_file.name} changed")
    if changes:
        raise RunError(f"run {run} was trained on other data than {cfg.data} holds now ({', '.join(changes)}): "
                       "its checkpoint would be scored on images it may have trained on; train it again")


def evaluate_run(run: str | os.PathLike, split: str = "test", *, data: RunData | None = None, autocast=None,
                 device: torch.device | str = "cpu", figures: bool = True) -> dict:
    """Score a run's best checkpoint on ``split``; writes ``metrics.json`` (test) or ``metrics_<split>.json``,
    plus the paper's Fig. 2 (normalised confusion) and Fig. 3 (curves) into the run folder."""
    from .. import plots

    run = Path(run)
    model, state, cfg, data, batches = _best_model_on(run, split, data, device)
    metrics = score(model, batches, data.class_names, autocast or contextlib.nullcontext)
    record = json.loads((run / "record.json").read_text(encoding="utf-8")) if (run / "record.json").exists() else {}
    metrics.update(split=split, model=cfg.model, best_epoch=state.get("epoch"), selected_on="val weighted F1",
                   synthetic=record.get("synthetic"), split_file=str(data.split_file), protocol=cfg.split,
                   folds=cfg.folds, fold=cfg.fold, seed=cfg.seed)
    atomic_write_json(run / ("metrics.json" if split == "test" else f"metrics_{split}.json"), metrics)
    if figures:
        tag = "synthetic DEAP" if metrics["synthetic"] else "data: " + str(data.data_dir.name)
        fold = f" fold {cfg.fold + 1}/{cfg.folds}" if cfg.folds else ""
        title = f"{cfg.model}, {cfg.split} split{fold}, seed {cfg.seed} ({tag})"
        plots.save_figure(plots.plot_confusion(metrics["confusion_normalized"], data.class_names,
                                               title=f"{split}: {title}"), run, "confusion" if split == "test" else f"confusion_{split}", close=True)
        if (run / "history.csv").exists():
            plots.save_figure(plots.plot_training_curves(read_history(run), title=title), run, "curves", close=True)
    return metrics


def split_predictions(run: str | os.PathLike, split: str = "test", *, data: RunData | None = None,
                      device: torch.device | str = "cpu") -> pd.DataFrame:
    """One row per image of ``split``, scored with the run's best checkpoint.

    Columns: ``path`` (relative to the data folder), ``participant``, ``trial`` and the
    other manifest columns of the split file, ``label`` and ``pred`` (class names),
    ``correct`` and ``p_<class>`` (softmax probabilities). For analyses the summary
    metrics hide: accuracy per participant, the errors themselves.
    """
    model, _, cfg, data, batches = _best_model_on(Path(run), split, data, device)
    side = getattr(data, split)
    logits, labels = predict(model, batches)
    probs = torch.softmax(logits, dim=1).numpy()
    rows = pd.read_csv(data.split_file)
    rows = rows[rows["split"] == split].reset_index(drop=True)
    if list(rows["path"].astype(str)) != side.paths:
        raise RunError(f"split file {data.split_file} no longer lists the {split} images the run decoded")
    names = np.asarray(data.class_names)
    out = rows.assign(label=names[labels.numpy()], pred=names[probs.argmax(1)])
    out["correct"] = out["label"] == out["pred"]
    for i, name in enumerate(data.class_names):
        out[f"p_{name}"] = probs[:, i]
    return out

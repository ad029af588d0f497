"""What a model costs: parameters, FLOPs and throughput (CPU or GPU), measured side by side.

Used by the ablation and baselines notebooks; ``benchmarks/bench_models.py`` is the
fuller benchmark (several sizes, training throughput, the published sizes).
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Mapping

import pandas as pd
import torch
import torch.nn as nn

from .flops import count_flops
from .utils import synchronize


def inference_form(name: str, model: nn.Module) -> nn.Module:
    """The form a model is deployed and counted in: RepViT fused, everything else as is."""
    if name.startswith("repvit"):
        from .models.repvit import fuse

        return fuse(copy.deepcopy(model)).eval()
    return model.eval()


def model_costs(models: Mapping[str, nn.Module], image_size: int, batch: int = 8, repeats: int = 3,
                warmup: int = 1, device: str | torch.device = "cpu") -> pd.DataFrame:
    """One row per model: ``params_M``, ``GMACs`` (fvcore multiply-accumulates per image, the
    scan counted as VMamba does) and ``infer_img_s`` (eval, no_grad, ``batch`` images of
    ``image_size`` on ``device``, median over ``repeats`` round-robin rounds, so noise hits all
    models alike). FLOPs are counted on the CPU; the models are left on ``device``."""
    device = torch.device(device)
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    rows, times = {}, {name: [] for name in models}
    for name, model in models.items():
        cost = count_flops(model.cpu(), (3, image_size, image_size))
        rows[name] = {"params_M": cost["params"] / 1e6, "GMACs": cost["flops"] / 1e9}
        model.to(device).eval()
    with torch.no_grad():
        for _ in range(warmup):
            for model in models.values():
                model(x)
        for _ in range(repeats):
            for name, model in models.items():
                synchronize(device)
                t = time.perf_counter()
                model(x)
                synchronize(device)  # CUDA runs asynchronously: time the work, not its launch
                times[name].append(time.perf_counter() - t)
    for name in models:
        rows[name]["infer_img_s"] = batch / statistics.median(times[name])
    return pd.DataFrame.from_dict(rows, orient="index")

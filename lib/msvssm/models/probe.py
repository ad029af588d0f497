"""What a trained MS-VSSM learned in its optional parts: Layer Scale values and SE gates.

    layer_scale_table(model)          one row per block: |Λ| statistics next to the initial value
    se_gate_table(model, images)      one row per (block, direction): the mean SE gate on real images
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn as nn

from .ss2d import SS2D, LayerScale, PathSqueezeExcite

DIRECTION_NAMES = ("row-major", "column-major", "row-major reversed", "column-major reversed")


def _blocks(model: nn.Module):
    """(stage, block, SS2D module) for every SS2D in the model, in forward order."""
    for name, module in model.named_modules():
        if isinstance(module, SS2D):
            parts = name.split(".")  # stages.<i>.blocks.<j>.op
            stage = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
            block = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else -1
            yield stage, block, name, module


def layer_scale_table(model: nn.Module) -> pd.DataFrame:
    """Per block: mean, median and max of |Λ| over channels, and the initial value (paper: 1e-5)."""
    rows = []
    for stage, block, name, ss2d in _blocks(model):
        if isinstance(ss2d.layer_scale, LayerScale):
            gamma = ss2d.layer_scale.gamma.detach().abs().float()
            rows.append({"stage": stage + 1, "block": block + 1, "module": name, "channels": gamma.numel(),
                         "abs_mean": gamma.mean().item(), "abs_median": gamma.median().item(),
                         "abs_max": gamma.max().item(), "init": ss2d.layer_scale.init_value})
    return pd.DataFrame(rows)


@torch.no_grad()
def se_gate_table(model: nn.Module, images: torch.Tensor) -> pd.DataFrame:
    """Per (block, direction): the SE gate averaged over images and channels, and its spread over channels.

    ``images`` (b, 3, H, W), normalised as the model expects. A gate of 0.5 is what the SE
    gives at initialisation (zero biases, small weights); a direction whose mean gate moved
    away from 0.5 is one the trained model weighs differently.
    """
    captured: list[tuple[int, int, torch.Tensor]] = []
    handles = []
    for stage, block, _, ss2d in _blocks(model):
        if isinstance(ss2d.path_se, PathSqueezeExcite):
            def hook(module, inputs, output, stage=stage, block=block):
                captured.append((stage, block, module.gates(inputs[0]).float()))  # (b, K, channels)
            handles.append(ss2d.path_se.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        model(images)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    rows = []
    for stage, block, gates in captured:
        per_channel = gates.mean(0)  # (K, channels)
        for k in range(per_channel.shape[0]):
            rows.append({"stage": stage + 1, "block": block + 1, "direction": DIRECTION_NAMES[k],
                         "gate_mean": per_channel[k].mean().item(), "gate_std_over_channels": per_channel[k].std().item()})
    return pd.DataFrame(rows)

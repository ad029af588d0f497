"""RepViT (Wang et al., CVPR 2024) baselines from timm, behind the course's ``build_model``.

RepViT is a MobileNetV3-shaped ConvNet with ViT-style macro design; every conv block has
BatchNorm and a re-parameterisable training form (3x3 depthwise + 1x1 + identity
branches) that folds into one conv for inference. Fully convolutional: 64, 112, 224
inputs all work.

    >>> model = build_model("repvit_m0_9", num_classes=4)   # train in this form
    >>> deployed = fuse(model)                              # eval-mode copy, branches folded

Single head (``distillation=False``); timm's RepViT has no drop_path. The timm sizes are
M0.9 / M1.0 / M1.1 / M1.5 (ImageNet: 5.1M / 6.8M / 8.2M / 14.0M parameters fused);
``repvit_nano`` is a CPU teaching size with about ``msvssm_nano``'s parameter count.
"""
from __future__ import annotations

import torch.nn as nn

from .registry import register_model

# CPU teaching size: widths 40..320, stage 3 deepest as in RepViT (2.0M parameters with 4 classes).
NANO = dict(embed_dim=(40, 80, 160, 320), depth=(1, 2, 6, 1))


def _check_overrides(overrides: dict) -> dict:
    if overrides.pop("drop_path_rate", 0.0):
        raise ValueError("timm's RepViT has no stochastic depth (drop_path_rate); leave it at 0")
    return overrides


def _timm(name: str, num_classes: int, overrides: dict) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, distillation=False, num_classes=num_classes, **_check_overrides(overrides))


def fuse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The inference form: ``model`` in eval mode with every re-parameterisable branch folded.

    Returns a fused copy (or ``model`` itself, fused, with ``inplace=True``). The fused model
    computes the same function as the unfused one in eval mode, with fewer parameters and
    less time; it cannot be trained further as RepViT (the branches are gone).
    """
    from timm.utils import reparameterize_model

    model.eval()
    return reparameterize_model(model, inplace=inplace).eval()


@register_model
def repvit_m0_9(num_classes: int = 4, **overrides) -> nn.Module:
    """RepViT-M0.9 (timm): 5.1M parameters fused, 0.8 GFLOPs at 224."""
    return _timm("repvit_m0_9", num_classes, overrides)


@register_model
def repvit_m1_0(num_classes: int = 4, **overrides) -> nn.Module:
    """RepViT-M1.0 (timm): 6.8M parameters fused."""
    return _timm("repvit_m1_0", num_classes, overrides)


@register_model
def repvit_m1_1(num_classes: int = 4, **overrides) -> nn.Module:
    """RepViT-M1.1 (timm): 8.2M parameters fused."""
    return _timm("repvit_m1_1", num_classes, overrides)


@register_model
def repvit_m1_5(num_classes: int = 4, **overrides) -> nn.Module:
    """RepViT-M1.5 (timm): 14.0M parameters fused."""
    return _timm("repvit_m1_5", num_classes, overrides)


@register_model
def repvit_nano(num_classes: int = 4, **overrides) -> nn.Module:
    """CPU teaching size built from timm's ``RepVit`` class: widths 40-320, depths 1,2,6,1."""
    from timm.models.repvit import RepVit

    kwargs = {**NANO, "distillation": False, "num_classes": num_classes, **_check_overrides(overrides)}
    return RepVit(**kwargs)

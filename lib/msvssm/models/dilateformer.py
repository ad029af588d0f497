"""DilateFormer (Jiao et al., IEEE TMM 2023; the paper's "DilatedFormer"): a baseline, written from its description.

It is in neither timm nor PyPI, so it lives here. Layout::

    patch embed (four 3x3 convs, H/4) -> stage 1 (MSDA) -> down -> stage 2 (MSDA) -> down
      -> stage 3 (global MHSA) -> down -> stage 4 (global MHSA) -> LN -> mean -> Linear

    patch embed: conv-BN-GELU (s1) -> conv-BN-GELU (s2) -> conv-BN-GELU (s1) -> conv (s2), no norm
                 after the last conv (as published)

    block:  x = x + dwconv3x3(x)                 conditional position encoding (residual)
            x = x + drop_path(attn(LN(x)))       MSDA in stages 1-2, global MHSA in stages 3-4
            x = x + drop_path(MLP(LN(x)))        Linear(c, 4c) -> GELU -> Linear(4c, c)

Glossary (code name -> meaning)::

    b            batch
    h, w         feature-map height and width;  l = h * w tokens
    c            stage width (72, 144, 288, 576 for tiny)
    G            dilation groups of MSDA (3: dilations 1, 2, 3)
    hg           heads per group (heads / G);  e = head dim = c / heads
    kk           neighbourhood size, 3 x 3 = 9 keys per query in MSDA

Multi-scale dilated attention (MSDA): q, k, v come from one 1x1 conv; the heads are split
into G groups, group g uses dilation r_g. Each query attends only to the 3x3 grid of
positions around it spaced r_g apart (its "dilated neighbourhood"), gathered with
``F.unfold``; positions outside the map are zero keys/values and are *not* masked (the
original's behaviour: a zero key gives logit 0). The groups' outputs are concatenated
along channels (built out of place: the original writes them into a view autograd still
needs, which fails backward on current torch) and projected by a Linear.

Differences from the original code, all deliberate: any input size works (no fixed-size
assert in the patch embed; sides divisible by 32 give exact /4.../32 maps, others round
up at each stride-2 conv, e.g. 112 -> 28, 14, 7, 4); attention is written with explicit
``matmul`` so fvcore counts it. The layers and their order are the original's (tiny: 17,238,744
parameters at 1000 classes, as its code gives); only two names differ (``cpe`` for
``pos_embed``, ``downsample.conv``/``.norm`` for ``downsample.proj.0``/``.1``).

Published (ImageNet-1k, 224): tiny 17.2M params / 3.2 GFLOPs, small 24.1M / 4.8G,
base 47.4M / 10.0G. ``dilateformer_nano`` is a CPU teaching size (~2M parameters).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models.vision_transformer import init_weights_vit_timm
from torch import Tensor

from .registry import register_model


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: four 3x3 convs, strides 1, 2, 1, 2 -> H/4 x W/4.

    widths: in -> w0 (s1) -> w1 (s2) -> w2 (s1) -> c (s2), all without bias; BN + GELU after
    the first three, nothing after the last: the published stem (3 -> 16 -> 32 -> 64 -> c,
    the original's ``patch_way="overlaping"``), whose last conv feeds the first block's
    position conv unnormalised. ``proj`` holds the same ten layers at the same indices
    (``proj.0`` ... ``proj.9``) as the original's.
    """

    def __init__(self, in_chans: int, dim: int, widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        w0, w1, w2 = widths
        layers: list[nn.Module] = []
        for c_in, c_out, stride in ((in_chans, w0, 1), (w0, w1, 2), (w1, w2, 1)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]
        layers.append(nn.Conv2d(w2, dim, 3, 2, 1, bias=False))  # no norm after it, as published
        self.proj = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, in_chans, H, W) -> (b, c, H/4, W/4)."""
        return self.proj(x)


class Downsample(nn.Module):
    """conv3x3 stride 2 + BatchNorm between stages: (b, c, h, w) -> (b, c_out, h/2, w/2)."""

    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, 2, 1)
        self.norm = nn.BatchNorm2d(dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, c, h, w) -> (b, c_out, h/2, w/2)."""
        return self.norm(self.conv(x))


class MultiScaleDilatedAttention(nn.Module):
    """MSDA: heads in len(dilations) groups, each attending to a 3x3 neighbourhood at its dilation.

    Input and output are channels-last (b, h, w, c), as the block's LayerNorm produces.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        dilations: Sequence[int] = (1, 2, 3),
        kernel_size: int = 3,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        if num_heads % len(dilations) or dim % num_heads:
            raise ValueError(
                f"MSDA needs heads ({num_heads}) divisible by the number of dilations ({len(dilations)}) "
                f"and dim ({dim}) divisible by heads"
            )
        self.dim, self.num_heads, self.dilations, self.kernel_size = dim, num_heads, tuple(dilations), kernel_size
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def neighbourhood(self, t: Tensor, dilation: int) -> Tensor:
        """t: (b, hg, e, h, w) -> its dilated 3x3 neighbourhoods (b, hg, l, e, kk), zeros outside the map."""
        b, hg, e, h, w = t.shape
        k = self.kernel_size
        cols = F.unfold(t.reshape(b, hg * e, h, w), k, dilation=dilation, padding=dilation * (k // 2))  # (b, hg*e*kk, l)
        cols = cols.reshape(b, hg, e, k * k, h * w)  # (b, hg, e, kk, l)
        return cols.permute(0, 1, 4, 2, 3)  # (b, hg, l, e, kk)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, h, w, c) -> (b, h, w, c)."""
        b, h, w, c = x.shape
        G = len(self.dilations)
        hg, e = self.num_heads // G, self.head_dim
        qkv = self.qkv(x.permute(0, 3, 1, 2))  # (b, 3c, h, w)
        qkv = qkv.reshape(b, 3, G, hg, e, h, w)  # (b, 3, G, hg, e, h, w)
        outs = []
        for g, r in enumerate(self.dilations):
            q = qkv[:, 0, g].reshape(b, hg, e, h * w).permute(0, 1, 3, 2).unsqueeze(-2)  # (b, hg, l, 1, e)
            k = self.neighbourhood(qkv[:, 1, g], r)  # (b, hg, l, e, kk)
            v = self.neighbourhood(qkv[:, 2, g], r).transpose(-2, -1)  # (b, hg, l, kk, e)
            attn = (q * self.scale) @ k  # (b, hg, l, 1, kk)
            attn = self.attn_drop(attn.softmax(dim=-1))  # (b, hg, l, 1, kk)
            y = (attn @ v).squeeze(-2)  # (b, hg, l, e)
            outs.append(y.permute(0, 2, 1, 3).reshape(b, h, w, hg * e))  # (b, h, w, hg*e)
        y = torch.cat(outs, dim=-1)  # (b, h, w, c)  groups side by side, out of place
        return self.proj_drop(self.proj(y))  # (b, h, w, c)


class GlobalAttention(nn.Module):
    """Multi-head self-attention over all h*w tokens (stages 3-4), explicit matmuls."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({num_heads})")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, h, w, c) -> (b, h, w, c)."""
        b, h, w, c = x.shape
        nh, e = self.num_heads, self.head_dim
        qkv = self.qkv(x.reshape(b, h * w, c))  # (b, l, 3c)
        q, k, v = qkv.reshape(b, h * w, 3, nh, e).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (b, nh, l, e)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (b, nh, l, l)
        attn = self.attn_drop(attn.softmax(dim=-1))  # (b, nh, l, l)
        y = (attn @ v).transpose(1, 2).reshape(b, h, w, c)  # (b, h, w, c)
        return self.proj_drop(self.proj(y))  # (b, h, w, c)


class Mlp(nn.Module):
    """Linear(c, ratio*c) -> GELU -> Linear(ratio*c, c), channels last."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1, self.act, self.fc2, self.drop = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, h, w, c) -> (b, h, w, c)."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DilateBlock(nn.Module):
    """Position conv (residual), then pre-norm attention and MLP, each with a residual and drop_path."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        local: bool,
        dilations: Sequence[int] = (1, 2, 3),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
    ):
        super().__init__()
        self.cpe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if local:
            self.attn: nn.Module = MultiScaleDilatedAttention(dim, num_heads, dilations, 3, qkv_bias, attn_drop, drop)
        else:
            self.attn = GlobalAttention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio, drop)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, c, h, w) -> (b, c, h, w)."""
        x = x + self.cpe(x)  # (b, c, h, w)  conditional position encoding
        x = x.permute(0, 2, 3, 1)  # (b, h, w, c)
        x = x + self.drop_path(self.attn(self.norm1(x)))  # (b, h, w, c)
        x = x + self.drop_path(self.mlp(self.norm2(x)))  # (b, h, w, c)
        return x.permute(0, 3, 1, 2)  # (b, c, h, w)


class DilateFormer(nn.Module):
    """Hierarchical vision transformer with multi-scale dilated attention in the early stages.

    Args:
        num_classes: classifier outputs (0: feature extractor, ``nn.Identity`` head).
        in_chans: input image channels.
        dim: width of stage 1 (doubled at each downsample).
        depths: blocks per stage.
        num_heads: heads per stage (MSDA stages: divisible by ``len(dilations)``).
        local_stages: how many leading stages use MSDA (2 in the paper); the rest are global.
        dilations: one dilation per MSDA head group.
        mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, drop_path_rate: the usual.
        stem_widths: the patch embed's three inner widths.
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_chans: int = 3,
        dim: int = 72,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        local_stages: int = 2,
        dilations: Sequence[int] = (1, 2, 3),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        stem_widths: Sequence[int] = (16, 32, 64),
    ):
        super().__init__()
        dims = [dim * 2**i for i in range(len(depths))]
        self.num_classes, self.in_chans, self.dims = num_classes, in_chans, dims
        self.num_features = dims[-1]
        self.patch_embed = PatchEmbed(in_chans, dims[0], stem_widths)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            blocks = [
                DilateBlock(dims[i], num_heads[i], i < local_stages, dilations, mlp_ratio, qkv_bias, rates[start + j],
                            drop_rate, attn_drop_rate)
                for j in range(depth)
            ]
            stage = nn.Sequential()
            stage.add_module("blocks", nn.Sequential(*blocks))
            stage.add_module("downsample", Downsample(dims[i], dims[i + 1]) if i < len(depths) - 1 else nn.Identity())
            self.stages.append(stage)
        self.norm = nn.LayerNorm(self.num_features, eps=1e-6)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights_vit_timm)  # Linear: trunc_normal(0.02), bias 0; others their default

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set[str]:
        return {"norm", "cpe"}

    def forward_features(self, x: Tensor) -> Tensor:
        """x: (b, in_chans, H, W) -> (b, ~H/32, ~W/32, num_features), normalised (each stride-2 conv rounds up)."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected images shaped (batch, {self.in_chans}, height, width), got {tuple(x.shape)}")
        x = self.patch_embed(x)  # (b, c, H/4, W/4)
        for stage in self.stages:
            x = stage(x)  # (b, c_i, h_i, w_i)
        return self.norm(x.permute(0, 2, 3, 1))  # (b, H/32, W/32, num_features)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(b, h, w, num_features) -> logits (b, num_classes) (or pooled features)."""
        x = x.mean(dim=(1, 2))  # (b, num_features)
        return x if pre_logits else self.head(x)  # (b, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, in_chans, H, W) -> logits (b, num_classes)."""
        return self.forward_head(self.forward_features(x))


SIZES: dict[str, dict] = {
    "nano": dict(dim=36, depths=(1, 1, 2, 1), num_heads=(3, 3, 6, 12), drop_path_rate=0.05),
    "tiny": dict(dim=72, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.1),
    "small": dict(dim=72, depths=(3, 5, 8, 3), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "base": dict(dim=96, depths=(4, 8, 10, 3), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
}


@register_model
def dilateformer_nano(num_classes: int = 4, **overrides) -> DilateFormer:
    """CPU teaching size: dim 36, depths 1,1,2,1 (about msvssm_nano's parameter count)."""
    return DilateFormer(num_classes=num_classes, **{**SIZES["nano"], **overrides})


@register_model
def dilateformer_tiny(num_classes: int = 4, **overrides) -> DilateFormer:
    """DilateFormer-T: dim 72, depths 2,2,6,2, heads 3,6,12,24 (17.2M params, 3.2 GFLOPs at 224)."""
    return DilateFormer(num_classes=num_classes, **{**SIZES["tiny"], **overrides})


@register_model
def dilateformer_small(num_classes: int = 4, **overrides) -> DilateFormer:
    """DilateFormer-S: dim 72, depths 3,5,8,3 (24.1M params)."""
    return DilateFormer(num_classes=num_classes, **{**SIZES["small"], **overrides})


@register_model
def dilateformer_base(num_classes: int = 4, **overrides) -> DilateFormer:
    """DilateFormer-B: dim 96, depths 4,8,10,3 (47.4M params)."""
    return DilateFormer(num_classes=num_classes, **{**SIZES["base"], **overrides})

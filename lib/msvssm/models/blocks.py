"""Building blocks around SS2D: the VSS block, the MLP, DSPP, stem and downsampling.

Symbols: the glossary in :mod:`msvssm.ops`. Shapes: the model body is channels-last,
(b, height, width, channels), as VMamba; convolutions permute to
(b, channels, height, width) and back. H, W are the input image's size.

Where this follows VMamba rather than the paper's text: the stem ends at H/4 and
``Downsample`` closes stages 1-3 (none after stage 4), so stage i's DSPP and
blocks work at H/4/2^i. The paper's 3.1 says stage 1 "does not perform
downsampling" after the H/4 stem yet outputs H/8 (and stage 4 keeps H/32 after
a further downsample): read literally it contradicts itself; it is VMamba's
layout counted after each stage's trailing downsample. Inside the VSS block the
3x3 conv is depthwise, not depthwise separable (see ``ss2d``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import DropPath
from torch import Tensor

from .ss2d import SS2D


class Mlp(nn.Module):
    """Linear(dim, ratio * dim) -> GELU -> Linear(ratio * dim, dim), channels last."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, height, width, dim) -> (b, height, width, dim)."""
        return self.fc2(self.act(self.fc1(x)))  # (b, height, width, dim)


class VSSBlock(nn.Module):
    """Pre-norm block with two residual branches (VMamba v2; paper 3.2.2)::

        x = x + drop_path(SS2D(LN(x)))     # SS2D carries the optional SE and Layer Scale
        x = x + drop_path(MLP(LN(x)))      # no MLP branch when mlp_ratio == 0 (VMamba's option)

    Layer Scale sits inside SS2D, after its ``out_norm`` and before ``out_proj``
    (paper 3.3.2), not on the residual branch's output as in CaiT.
    """

    def __init__(self, dim: int, drop_path: float = 0.0, mlp_ratio: float = 4.0, **ss2d_kwargs):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, **ss2d_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio) if mlp_ratio > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, height, width, dim) -> (b, height, width, dim)."""
        x = x + self.drop_path(self.op(self.norm(x)))  # (b, height, width, dim)
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))  # (b, height, width, dim)
        return x


class ConvAct(nn.Sequential):
    """Conv2d followed by GELU (channels first), padded to keep the spatial size."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, dilation: int = 1):
        pad = dilation * (kernel // 2)
        super().__init__(nn.Conv2d(c_in, c_out, kernel, padding=pad, dilation=dilation), nn.GELU())


class DSPP(nn.Module):
    """Dense/Dilated Spatial Pyramid Pooling at the start of a stage (paper 3.4).

    Data flow on a (b, dim, height, width) map, every output the same spatial size::

        x0 = conv1x1(x)                                  dim -> mid  (mid = ratio * dim)
        branch 0: GAP(x0) -> conv1x1 -> align -> broadcast to height x width
        branch i (i = 1, 2, 3): avgpool(k_i, stride 1)(x0) -> conv3x3(dilation r_i) -> align
            with k = 3, 5, 7 and r = 1, 2, 3
        align: conv1x1                                   mid -> mid
        concat (4 mid) -> conv1x1 (fuse)                 4 mid -> dim

    Each pooled branch sees a square window of radius k_i // 2 + r_i (2, 4, 6):
    the pool reaches k_i // 2 pixels, the dilated 3x3 conv r_i more. The global
    branch is constant over space; it runs its two 1x1 convs on the pooled 1x1
    map and broadcasts last (the same numbers as convolving the broadcast map).

    In ``MSVSSM`` DSPP is the first module of each stage, after the previous
    stage's downsample, so it works at its stage's resolution (H/4/2^i).

    Where the paper is silent we chose, and why:
      * width ``ratio`` (default 1/4): the paper calls the module lightweight;
        a full-width DSPP would add ~22M parameters at stage 4 of the tiny
        model (70 % of the network); at a quarter width it adds 1.9M. With
        mid = dim / 4 the concat is back at dim.
      * activation: GELU after every conv but the final fusion (GELU is the
        model's activation elsewhere); no normalisation inside (BatchNorm would
        make the model batch-size sensitive; the VSS blocks' LayerNorms follow).
      * ``residual=True``: the output is added to the input (x + DSPP(x)), so
        the stage keeps the raw features and DSPP adds multi-scale context on
        top; the ablation then "adds one part" to an otherwise unchanged path.
        ``residual=False`` replaces the input, the other reading of the paper.
        (The fusion conv keeps its default init: a zero init would make DSPP an
        exact identity at the start but would also starve every conv before it
        of gradient on the first step.)
      * average pooling ignores padding (count_include_pad=False) so border
        pixels are not darkened.
    """

    def __init__(self, dim: int, ratio: float = 0.25, residual: bool = True, pool_sizes=(3, 5, 7), dilations=(1, 2, 3)):
        super().__init__()
        mid = max(int(dim * ratio), 8)
        self.residual = residual
        self.reduce = ConvAct(dim, mid, 1)
        self.global_branch = ConvAct(mid, mid, 1)
        self.pools = nn.ModuleList(
            nn.AvgPool2d(k, stride=1, padding=k // 2, count_include_pad=False) for k in pool_sizes
        )
        self.dilated = nn.ModuleList(ConvAct(mid, mid, 3, dilation=r) for r in dilations)
        self.align = nn.ModuleList(ConvAct(mid, mid, 1) for _ in range(1 + len(pool_sizes)))
        self.fuse = nn.Conv2d(mid * (1 + len(pool_sizes)), dim, 1)

    def branches(self, x0: Tensor) -> list[Tensor]:
        """The four aligned branches on the reduced map x0 (b, mid, height, width): 4 x (b, mid, height, width).

        The global branch runs both its 1x1 convs on the pooled 1x1 map and only
        then broadcasts: the same numbers as convolving the broadcast map, at
        1/(height * width) of the cost (and the FLOP count says so).
        """
        pooled = x0.mean(dim=(2, 3), keepdim=True)  # (b, mid, 1, 1)
        g = self.align[0](self.global_branch(pooled)).expand_as(x0)  # (b, mid, height, width)
        local = [align(conv(pool(x0))) for pool, conv, align in zip(self.pools, self.dilated, self.align[1:])]
        return [g] + local  # 4 x (b, mid, height, width)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, height, width, dim) channels-last -> (b, height, width, dim)."""
        inp = x.permute(0, 3, 1, 2)  # (b, dim, height, width), with channels-last strides
        if inp.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # torch 2.14's CPU bf16 convolution returns NaN weight gradients for the dilation-3 branch
            # on channels-last strides at 56x56 (msvssm_tiny's stage 1 at 224 px; found by the dry run,
            # pinned by tests/test_models.py); NCHW strides compute it right.
            inp = inp.contiguous()
        x0 = self.reduce(inp)  # (b, mid, height, width)
        out = self.fuse(torch.cat(self.branches(x0), dim=1))  # (b, dim, height, width)
        if self.residual:
            out = out + inp  # (b, dim, height, width)
        return out.permute(0, 2, 3, 1)  # (b, height, width, dim)


class LayerNormChannelsFirst(nn.LayerNorm):
    """LayerNorm over the channel axis of a (b, channels, height, width) map."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Stem(nn.Module):
    """conv3x3 s2 (in -> dim/2) -> LN -> GELU -> conv3x3 s2 (dim/2 -> dim) -> LN: H/4 x W/4 (VMamba v2)."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1)
        self.norm1 = LayerNormChannelsFirst(dim // 2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, in_chans, H, W) -> (b, ceil(H/4), ceil(W/4), dim)."""
        x = self.act(self.norm1(self.conv1(x)))  # (b, dim/2, H/2, W/2)
        return self.norm2(self.conv2(x).permute(0, 2, 3, 1))  # (b, H/4, W/4, dim)


class Downsample(nn.Module):
    """conv3x3 s2 (dim -> dim_out) -> LN, at the end of stages 1-3 (VMamba's layout)."""

    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, height, width, dim) -> (b, ceil(height/2), ceil(width/2), dim_out)."""
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))

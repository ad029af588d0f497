"""Building blocks around SS2D: the VSS block, the MLP, DSPP, stem and downsampling.

Shapes: the model body is channels-last, (b, h, w, c), as VMamba; convolutions
permute to (b, c, h, w) and back.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import DropPath
from torch import Tensor

from .ss2d import SS2D


class Mlp(nn.Module):
    """Linear(c, ratio*c) -> GELU -> Linear(ratio*c, c), channels last."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, h, w, c) -> (b, h, w, c)."""
        return self.fc2(self.act(self.fc1(x)))


class VSSBlock(nn.Module):
    """Pre-norm block with two residual branches (VMamba v2; paper 3.2.2)::

        x = x + drop_path(SS2D(LN(x)))     # SS2D carries the optional SE and Layer Scale
        x = x + drop_path(MLP(LN(x)))
    """

    def __init__(self, dim: int, drop_path: float = 0.0, mlp_ratio: float = 4.0, **ss2d_kwargs):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, **ss2d_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio) if mlp_ratio > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, h, w, c) -> (b, h, w, c)."""
        x = x + self.drop_path(self.op(self.norm(x)))  # (b, h, w, c)
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))  # (b, h, w, c)
        return x


class ConvAct(nn.Sequential):
    """Conv2d followed by GELU (channels first)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, dilation: int = 1):
        pad = dilation * (kernel // 2)
        super().__init__(nn.Conv2d(c_in, c_out, kernel, padding=pad, dilation=dilation), nn.GELU())


class DSPP(nn.Module):
    """Dense/Dilated Spatial Pyramid Pooling at the start of a stage (paper 3.4).

    Data flow on a (b, c, h, w) map, every output the same spatial size::

        x0 = conv1x1(x)                             c -> m  (m = ratio * c)
        branch 0: GAP(x0) -> conv1x1 -> broadcast to h x w
        branch i (i = 1, 2, 3): avgpool(k_i, stride 1)(x0) -> conv3x3(dilation i)
            with k = 3, 5, 7
        each branch -> conv1x1 (align)              m -> m
        concat (4m) -> conv1x1 (fuse)               4m -> c

    Where the paper is silent we chose, and why:
      * width ``ratio`` (default 1/4): the paper calls the module lightweight;
        a full-width DSPP would add ~22M parameters at stage 4 of the tiny
        model (70 % of the network); at a quarter width it adds 1.9M. With m = c/4 the concat is back at c.
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
        """The four aligned branches on the reduced map x0 (b, m, h, w): 4 x (b, m, h, w).

        The global branch runs both its 1x1 convs on the pooled 1x1 map and only
        then broadcasts: the same numbers as convolving the broadcast map, at
        1/(h*w) of the cost (and the FLOP count says so).
        """
        pooled = x0.mean(dim=(2, 3), keepdim=True)  # (b, m, 1, 1)
        g = self.align[0](self.global_branch(pooled)).expand_as(x0)  # (b, m, h, w)
        local = [align(conv(pool(x0))) for pool, conv, align in zip(self.pools, self.dilated, self.align[1:])]
        return [g] + local  # 4 x (b, m, h, w)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, h, w, c) channels-last -> (b, h, w, c)."""
        inp = x.permute(0, 3, 1, 2)  # (b, c, h, w)
        x0 = self.reduce(inp)  # (b, m, h, w)
        out = self.fuse(torch.cat(self.branches(x0), dim=1))  # (b, c, h, w)
        if self.residual:
            out = out + inp
        return out.permute(0, 2, 3, 1)  # (b, h, w, c)


class LayerNormChannelsFirst(nn.LayerNorm):
    """LayerNorm over the channel axis of a (b, c, h, w) map."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Stem(nn.Module):
    """conv3x3 s2 (in -> c/2) -> LN -> GELU -> conv3x3 s2 (c/2 -> c) -> LN: H/4 x W/4."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1)
        self.norm1 = LayerNormChannelsFirst(dim // 2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, in_chans, H, W) -> (b, ceil(H/4), ceil(W/4), c)."""
        x = self.act(self.norm1(self.conv1(x)))  # (b, c/2, H/2, W/2)
        return self.norm2(self.conv2(x).permute(0, 2, 3, 1))  # (b, H/4, W/4, c)


class Downsample(nn.Module):
    """conv3x3 s2 (c -> c_out) -> LN, between stages."""

    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, h, w, c) -> (b, ceil(h/2), ceil(w/2), c_out)."""
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))

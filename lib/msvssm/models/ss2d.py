"""SS2D and SE-SS2D: the 2D selective-scan mixer of VMamba v2 (``v05_noz``), with the
paper's path-aware Squeeze-and-Excitation and Layer Scale as optional parts.

Symbols: the glossary in :mod:`msvssm.ops` (b, l, d, d_inner, n, K, channels,
height, width; u, Δ, A, B, C, D, y). Single letters are only the paper's symbols:
widths are ``dim`` / ``channels`` / ``d_inner``, and inside SS2D ``d = K * d_inner``
(the channels of the one scan call, all directions stacked). Names this file adds::

    dt_rank      rank of Δ's projection, ceil(dim / 16)
    x_proj       per direction, d_inner -> dt_rank + 2n: Δ (low rank), B, C
    dt_proj      per direction, dt_rank -> d_inner; its bias is Δ's ``delta_bias``
    A_logs       log(-A), (d, n); A = -exp(A_logs)
    Ds           the skip D, (d,)

Data flow of ``SS2D.forward`` (x is channels-last (b, height, width, dim))::

    in_proj -> depthwise 3x3 conv -> SiLU -> x_proj / dt_proj (per pixel, K directions' weights)
      -> cross-scan (K = 4) -> selective scan (S6), all directions in one call
      -> back on the grid per direction -> [SE per direction] -> sum over K (cross-merge)
      -> LayerNorm(d_inner) -> [Layer Scale Λ] -> out_proj

x_proj and dt_proj are per-position linear maps, so computing them on the grid before the
cross-scan gives the numbers VMamba computes on each direction's sequence. The three
middle steps are one operator, :func:`msvssm.ops.cross_selective_scan` (with the
``numba`` backend one fused CPU kernel; otherwise the composition of the library's
``cross_scan``, ``selective_scan`` and ``cross_unscan``).

The bracketed parts are ``path_se`` and ``layer_scale``; when off they are
``nn.Identity``, so the ablation uses one code path.

Dtypes (as VMamba v05, whose scan returns float32 "oflex" output). Under autocast
(say bf16): in_proj, the conv, x_proj and dt_proj run in bf16; the scan runs with
autocast off on float32 inputs and returns float32; SE, the merge, ``out_norm``
and Layer Scale run in float32 with autocast off (in the parameters' dtype: float32
under AMP; a model cast wholesale with ``.to(torch.bfloat16)`` runs them in bf16);
out_proj runs in bf16 again. Without autocast everything is the parameters' dtype,
the scan float32.

Where this follows VMamba rather than the paper's text:
  * Scan paths. The paper (3.2.3) lists "top-right to bottom-left" and
    "bottom-left to top-right" column-major variants; VMamba, and this code
    (``msvssm.ops.cross_scan``), use the transposed (column-major) flattening
    from the top-left and its reverse from the bottom-right.
  * The 3x3 convolution is depthwise (``groups = d_inner``, no pointwise part), as
    VMamba; the paper (3.2.2) calls it depthwise separable. in_proj before it
    plays the pointwise role.
  * Layer Scale sits after ``out_norm`` (paper 3.3.2: after SE-SS2D, before the
    projection), so Λ multiplies LayerNorm's own per-channel gain: LN(y) * g * Λ.
    The "+LayerScale" ablation row therefore adds a second per-channel scale,
    initialised at 1e-5 (g starts at 1), whose effect is mostly that start: the
    SS2D branch begins near zero. Placed before the norm, the 1e-5 would be
    normalised away (LayerNorm removes any common scale of its input).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..ops import cross_selective_scan


class PathSqueezeExcite(nn.Module):
    """Independent Squeeze-and-Excitation for each of the K scan directions (paper 3.3.1).

    For direction k with output map Y_k (b, channels, height, width)::

        s_k = GAP(Y_k)                                       (b, channels)
        w_k = sigmoid(W2_k ReLU(W1_k s_k + b1_k) + b2_k)     (b, channels)
              W1_k: channels -> hidden = max(channels // reduction, min_hidden)
        Y_k <- Y_k * w_k

    The K SE modules share nothing; their weights are stacked so all K run as
    one batched einsum. In SS2D, ``channels = d_inner``.
    """

    def __init__(self, channels: int, directions: int = 4, reduction: int = 16, min_hidden: int = 4):
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        self.fc1_weight = nn.Parameter(torch.empty(directions, hidden, channels))
        self.fc1_bias = nn.Parameter(torch.zeros(directions, hidden))
        self.fc2_weight = nn.Parameter(torch.empty(directions, channels, hidden))
        self.fc2_bias = nn.Parameter(torch.zeros(directions, channels))
        # Same init as K separate nn.Linear layers.
        for weight in (self.fc1_weight, self.fc2_weight):
            bound = 1.0 / math.sqrt(weight.shape[-1])
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, y: Tensor) -> Tensor:
        """y: (b, K, channels, height, width) -> same shape, each direction's channels reweighted.

        The product runs in (b, height, width, K, channels) order, the scan's memory
        layout in SS2D: there it is one contiguous pass (4-5x faster than broadcasting
        over the strided view); the result is the same either way.
        """
        gates = self.gates(y)  # (b, K, channels)
        return (y.permute(0, 3, 4, 1, 2) * gates[:, None, None]).permute(0, 3, 4, 1, 2)  # (b, K, channels, height, width)

    def gates(self, y: Tensor) -> Tensor:
        """The excitation w_k of every direction: y (b, K, channels, height, width) -> (b, K, channels) in (0, 1)."""
        squeeze = y.permute(0, 3, 4, 1, 2).mean(dim=(1, 2))  # (b, K, channels); GAP in SS2D's memory order
        hidden = torch.einsum("bkc,kjc->bkj", squeeze, self.fc1_weight) + self.fc1_bias  # (b, K, hidden)
        hidden = F.relu(hidden)  # (b, K, hidden)
        gate = torch.einsum("bkj,kcj->bkc", hidden, self.fc2_weight) + self.fc2_bias  # (b, K, channels)
        return torch.sigmoid(gate)  # (b, K, channels)

    def extra_repr(self) -> str:
        directions, hidden, channels = self.fc1_weight.shape
        return f"channels={channels}, directions={directions}, hidden={hidden}"


class LayerScale(nn.Module):
    """Learnable per-channel scale Λ, F_out = F ⊙ Λ (CaiT; paper 3.3.2). Channels last.

    In SS2D it follows ``out_norm``, so Λ composes with LayerNorm's gain (see the
    module docstring).
    """

    def __init__(self, channels: int, init_value: float = 1e-5):
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((channels,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., channels) -> same shape."""
        return x * self.gamma  # (..., channels)

    def extra_repr(self) -> str:
        return f"channels={self.gamma.numel()}, init_value={self.init_value}"


class SS2D(nn.Module):
    """2D selective scan over four directions (VMamba v2, no gate z); dtypes in the module docstring.

    Args:
        dim: input/output width (the stage's channels, C in the paper).
        d_state: n, state size per channel (VMamba v2: 1).
        ssm_ratio: d_inner = ssm_ratio * dim.
        dt_rank: rank of Δ's projection; "auto" = ceil(dim / 16).
        d_conv: kernel of the depthwise conv (3).
        path_se: SE-SS2D, an independent SE per scan direction before the merge.
        se_reduction: SE bottleneck ratio.
        layer_scale: learnable per-channel scale of the d_inner features after
            (SE-)SS2D and its LayerNorm, right before out_proj (paper 3.3.2).
        layer_scale_init: initial value of that scale (paper: 1e-5).
        dt_min, dt_max, dt_init_floor: Δ's initial range (log-uniform), as VMamba.
        scan_backend: selective-scan backend name or None (argument > env var > auto).
        fused_scan: with the ``numba`` backend, run the scan step as one compiled kernel
            (the default) or as the readable composition cross-scan -> scan -> cross-unscan
            (the same numbers up to rounding; kept for tests and benchmarks).
    """

    K = 4

    def __init__(
        self,
        dim: int,
        d_state: int = 1,
        ssm_ratio: float = 1.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        path_se: bool = False,
        se_reduction: int = 16,
        layer_scale: bool = False,
        layer_scale_init: float = 1e-5,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        scan_backend: str | None = None,
        fused_scan: bool = True,
    ):
        super().__init__()
        d_inner = int(ssm_ratio * dim)
        self.dim, self.d_inner, self.d_state = dim, d_inner, d_state
        self.dt_rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend = scan_backend
        self.fused_scan = fused_scan
        K, dt_rank, n = self.K, self.dt_rank, d_state

        self.in_proj = nn.Linear(dim, d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=d_conv // 2, groups=d_inner, bias=False)
        self.act = nn.SiLU()

        # x_proj: K stacked Linear(d_inner -> dt_rank + 2n, bias=False), default Linear init.
        self.x_proj_weight = nn.Parameter(torch.empty(K, dt_rank + 2 * n, d_inner))
        nn.init.uniform_(self.x_proj_weight, -(d_inner**-0.5), d_inner**-0.5)
        # dt_proj: K stacked Linear(dt_rank -> d_inner); weight uniform(+-dt_rank^-0.5), bias = softplus^-1(Δ).
        bound = dt_rank**-0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, dt_rank).uniform_(-bound, bound))
        dt = torch.exp(torch.rand(K, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)  # (K, d_inner)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus, (K, d_inner)
        # A = -[1..n] for every channel of every direction; D = 1.
        A = torch.arange(1, n + 1, dtype=torch.float32).repeat(K * d_inner, 1)  # (d, n), d = K * d_inner
        self.A_logs = nn.Parameter(torch.log(A))  # (d, n)
        self.Ds = nn.Parameter(torch.ones(K * d_inner))  # (d,)

        self.path_se = PathSqueezeExcite(d_inner, K, se_reduction) if path_se else nn.Identity()
        self.out_norm = nn.LayerNorm(d_inner)
        self.layer_scale = LayerScale(d_inner, layer_scale_init) if layer_scale else nn.Identity()
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def scan(self, x: Tensor) -> Tensor:
        """The S6 core on a (b, d_inner, height, width) map: each direction's output, float32.

        Returns (b, K, d_inner, height, width). x_proj and dt_proj are per-pixel linear
        maps, so they run on the grid, before any reordering (the same numbers as on each
        direction's sequence, without four copies of x); they run in the autocast dtype,
        if any. The scan step (:func:`msvssm.ops.cross_selective_scan`: cross-scan,
        selective scan, back on the grid) runs with autocast off on float32 inputs, and
        its float32 output is returned as is (VMamba v05's "oflex" scan) for the merge
        and ``out_norm``.
        """
        K, n, dt_rank = self.K, self.d_state, self.dt_rank
        x_cl = x.permute(0, 2, 3, 1)  # (b, height, width, d_inner): channels last, as SS2D's memory
        x_dbl = torch.einsum("bhwc,kjc->bhwkj", x_cl, self.x_proj_weight)  # (b, height, width, K, dt_rank + 2n)
        dts, B, C = torch.split(x_dbl, [dt_rank, n, n], dim=-1)  # (b, height, width, K, dt_rank | n | n)
        dts = torch.einsum("bhwkr,kcr->bhwkc", dts, self.dt_projs_weight)  # (b, height, width, K, d_inner)
        grid = lambda t: t.permute(0, 3, 4, 1, 2)  # noqa: E731  (b, height, width, K, ·) -> (b, K, ·, height, width)
        with torch.autocast(x.device.type, enabled=False):
            return cross_selective_scan(
                x.float(),  # u  (b, d_inner, height, width)
                grid(dts).float(),  # Δ before delta_bias and softplus  (b, K, d_inner, height, width)
                -torch.exp(self.A_logs.float()),  # A  (d, n), d = K * d_inner
                grid(B).float(),  # B  (b, K, n, height, width): one group per direction
                grid(C).float(),  # C  (b, K, n, height, width)
                self.Ds.float(),  # D  (d,)
                self.dt_projs_bias.reshape(-1).float(),  # delta_bias  (d,)
                backend=self.scan_backend,
                fused=self.fused_scan,
            )  # y  (b, K, d_inner, height, width)  float32

    @staticmethod
    def merge(y: Tensor) -> Tensor:
        """Cross-merge on the grid: sum over the K directions, (b, K, d_inner, height, width) -> (b, d_inner, height, width).

        Summed in (b, height, width, K, d_inner) order, the scan's memory layout: the result
        is channels-last in memory, so ``out_norm`` reads it without a copy.
        """
        return y.permute(0, 3, 4, 1, 2).sum(dim=3).permute(0, 3, 1, 2)  # (b, d_inner, height, width)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, height, width, dim) channels-last -> (b, height, width, dim)."""
        x = self.in_proj(x)  # (b, height, width, d_inner)
        x = self.act(self.conv2d(x.permute(0, 3, 1, 2)))  # (b, d_inner, height, width)
        y = self.scan(x)  # (b, K, d_inner, height, width)  float32
        y = y.to(self.out_norm.weight.dtype)  # the parameters' dtype: float32 under AMP
        with torch.autocast(x.device.type, enabled=False):
            y = self.path_se(y)  # (b, K, d_inner, height, width)  SE per direction (or identity)
            y = self.merge(y)  # (b, d_inner, height, width)
            y = self.out_norm(y.permute(0, 2, 3, 1))  # (b, height, width, d_inner)
            y = self.layer_scale(y)  # (b, height, width, d_inner)  Λ (or identity)
        return self.out_proj(y)  # (b, height, width, dim)  in the autocast dtype, if any

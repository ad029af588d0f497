"""SS2D and SE-SS2D: the 2D selective-scan mixer of VMamba v2 (``v05_noz``), with the
paper's path-aware Squeeze-and-Excitation and Layer Scale as optional parts.

Glossary (code name -> paper / VMamba symbol)::

    b            batch
    h, w         feature-map height and width;  l = h * w  (sequence length L)
    c            block width  (C of the stage)
    d            d_inner = ssm_ratio * C  (channels inside SS2D)
    n            d_state  (N, state size per channel; VMamba v2 uses 1)
    K            4 scan directions (see ``msvssm.ops.cross_scan``)
    r            dt_rank = ceil(C / 16)  (rank of the Δ projection)
    x_proj       per-direction projection d -> (r + 2n): Δ (low rank), B, C
    dt_proj      per-direction r -> d; its bias is Δ's ``delta_bias``
    A_logs       log(-A), (K*d, n); A = -exp(A_logs)
    Ds           skip D, (K*d,)

Data flow of ``SS2D.forward`` (x is channels-last (b, h, w, c))::

    in_proj -> depthwise 3x3 conv -> SiLU -> cross-scan (K=4)
      -> x_proj / dt_proj -> selective scan (S6) per direction
      -> back on the grid per direction -> [SE per direction] -> sum over K (cross-merge)
      -> LayerNorm(d) -> [Layer Scale Λ] -> out_proj

The bracketed parts are ``path_se`` and ``layer_scale``; when off they are
``nn.Identity``, so the ablation uses one code path.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..ops import cross_scan, cross_unscan, selective_scan


class PathSqueezeExcite(nn.Module):
    """Independent Squeeze-and-Excitation for each of the K scan directions (paper 3.3.1).

    For direction k with output map Y_k (b, d, h, w)::

        s_k = GAP(Y_k)                                   (b, d)
        w_k = sigmoid(W2_k ReLU(W1_k s_k + b1_k) + b2_k) (b, d)   W1_k: d -> d/reduction
        Y_k <- Y_k * w_k

    The K SE modules share nothing; their weights are stacked so all K run as
    one batched einsum.
    """

    def __init__(self, channels: int, directions: int = 4, reduction: int = 16, min_hidden: int = 4):
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        self.channels, self.directions, self.hidden = channels, directions, hidden
        self.fc1_weight = nn.Parameter(torch.empty(directions, hidden, channels))
        self.fc1_bias = nn.Parameter(torch.zeros(directions, hidden))
        self.fc2_weight = nn.Parameter(torch.empty(directions, channels, hidden))
        self.fc2_bias = nn.Parameter(torch.zeros(directions, channels))
        # Same init as K separate nn.Linear layers.
        for weight in (self.fc1_weight, self.fc2_weight):
            bound = 1.0 / math.sqrt(weight.shape[-1])
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, y: Tensor) -> Tensor:
        """y: (b, K, d, h, w) -> same shape, each direction's channels reweighted."""
        squeeze = y.mean(dim=(-2, -1))  # (b, K, d)
        hidden = torch.einsum("bkd,kjd->bkj", squeeze, self.fc1_weight) + self.fc1_bias  # (b, K, d/r)
        hidden = F.relu(hidden)
        gate = torch.einsum("bkj,kdj->bkd", hidden, self.fc2_weight) + self.fc2_bias  # (b, K, d)
        gate = torch.sigmoid(gate)
        return y * gate[..., None, None]  # (b, K, d, h, w)


class LayerScale(nn.Module):
    """Learnable per-channel scale Λ, F_out = F ⊙ Λ (CaiT; paper 3.3.2). Channels last."""

    def __init__(self, channels: int, init_value: float = 1e-5):
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((channels,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., channels) -> same shape."""
        return x * self.gamma

    def extra_repr(self) -> str:
        return f"channels={self.gamma.numel()}, init_value={self.init_value}"


class SS2D(nn.Module):
    """2D selective scan over four directions (VMamba v2, no gate z).

    Args:
        dim: input/output width C.
        d_state: N, state size per channel (VMamba v2: 1).
        ssm_ratio: d_inner = ssm_ratio * C.
        dt_rank: rank of Δ's projection; "auto" = ceil(C / 16).
        path_se: SE-SS2D, an independent SE per scan direction before the merge.
        se_reduction: SE bottleneck ratio.
        layer_scale: learnable per-channel scale of the d_inner features after
            (SE-)SS2D and its LayerNorm, right before out_proj (paper 3.3.2).
        layer_scale_init: initial value of that scale (paper: 1e-5).
        scan_backend: selective-scan backend name or None (argument > env var > auto).
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
    ):
        super().__init__()
        d_inner = int(ssm_ratio * dim)
        self.dim, self.d_inner, self.d_state = dim, d_inner, d_state
        self.dt_rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend = scan_backend
        K, R, N = self.K, self.dt_rank, d_state

        self.in_proj = nn.Linear(dim, d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=d_conv // 2, groups=d_inner, bias=False)
        self.act = nn.SiLU()

        # x_proj: K stacked Linear(d_inner -> R + 2N, bias=False), default Linear init.
        self.x_proj_weight = nn.Parameter(torch.empty(K, R + 2 * N, d_inner))
        nn.init.uniform_(self.x_proj_weight, -(d_inner**-0.5), d_inner**-0.5)
        # dt_proj: K stacked Linear(R -> d_inner); weight uniform(+-R^-0.5), bias = softplus^-1(dt).
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, R).uniform_(-(R**-0.5), R**-0.5))
        dt = torch.exp(torch.rand(K, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        # A = -[1..N] for every channel of every direction; D = 1.
        A = torch.arange(1, N + 1, dtype=torch.float32).repeat(K * d_inner, 1)  # (K*d, N)
        self.A_logs = nn.Parameter(torch.log(A))
        self.Ds = nn.Parameter(torch.ones(K * d_inner))

        self.path_se = PathSqueezeExcite(d_inner, K, se_reduction) if path_se else nn.Identity()
        self.out_norm = nn.LayerNorm(d_inner)
        self.layer_scale = LayerScale(d_inner, layer_scale_init) if layer_scale else nn.Identity()
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def scan(self, x: Tensor) -> Tensor:
        """The S6 core on a (b, d_inner, h, w) map: each direction's output, (b, K, d_inner, h, w), float32.

        x_proj and dt_proj run in the autocast dtype, if any; the scan itself runs
        with autocast off, on float32 inputs, and its float32 output is returned
        as is (VMamba v05's "oflex" scan), for the merge and ``out_norm``.
        """
        b, d_inner, h, w = x.shape
        K, N, R, l = self.K, self.d_state, self.dt_rank, h * w
        xs = cross_scan(x)  # (b, K, d_inner, l)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)  # (b, K, R+2N, l)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)  # (b, K, R, l) (b, K, N, l) (b, K, N, l)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)  # (b, K, d_inner, l)
        with torch.autocast(x.device.type, enabled=False):
            ys = selective_scan(
                xs.reshape(b, K * d_inner, l).float(),  # u  (b, d, l), d = K * d_inner
                dts.reshape(b, K * d_inner, l).float(),  # Δ before bias and softplus  (b, d, l)
                -torch.exp(self.A_logs.float()),  # A  (d, N)
                Bs.float().contiguous(),  # B  (b, K, N, l): groups = directions
                Cs.float().contiguous(),  # C  (b, K, N, l)
                self.Ds.float(),  # D  (d,)
                delta_bias=self.dt_projs_bias.reshape(-1).float(),  # (d,)
                delta_softplus=True,
                backend=self.scan_backend,
            )  # (b, d, l) float32
        return cross_unscan(ys.reshape(b, K, d_inner, l), h, w)  # (b, K, d_inner, h, w)

    @staticmethod
    def merge(y: Tensor) -> Tensor:
        """Cross-merge on the grid: sum the K directions, (b, K, d_inner, h, w) -> (b, d_inner, h, w)."""
        return y.sum(dim=1)  # (b, d_inner, h, w)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, h, w, channels) channels-last -> (b, h, w, channels)."""
        x = self.in_proj(x)  # (b, h, w, d_inner)
        x = self.act(self.conv2d(x.permute(0, 3, 1, 2)))  # (b, d_inner, h, w)
        y = self.scan(x)  # (b, K, d_inner, h, w)  float32
        # Parameters' dtype: float32 under AMP; a model cast with .to(bfloat16) runs this part in bfloat16.
        y = y.to(self.out_norm.weight.dtype)
        with torch.autocast(x.device.type, enabled=False):
            y = self.path_se(y)  # (b, K, d_inner, h, w)  SE per direction (or identity)
            y = self.merge(y)  # (b, d_inner, h, w)
            y = self.out_norm(y.permute(0, 2, 3, 1))  # (b, h, w, d_inner)
            y = self.layer_scale(y)  # (b, h, w, d_inner)  Λ (or identity)
        return self.out_proj(y)  # (b, h, w, channels)  autocast dtype, if any

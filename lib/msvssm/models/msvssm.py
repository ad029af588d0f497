"""The MS-VSSM classifier (and the plain VSSM it extends), with timm-style factories.

Symbols: the glossary in :mod:`msvssm.ops`; shapes are channels-last
(b, height, width, channels), H x W the input image::

    stem (H/4) -> stage 1 -> down -> stage 2 -> down -> stage 3 -> down -> stage 4 -> norm -> GAP -> head
    stage i = [DSPP] -> depth_i x VSS block([SE-]SS2D [+ Layer Scale], MLP) -> downsample (i < 4)
    stage i's DSPP and blocks run at H/4/2^i with dims[i] channels

The three options of the paper are independent constructor flags:

    path_se      SE-SS2D: an SE per scan direction before cross-merge   (paper 3.3.1)
    layer_scale  learnable per-channel scale before SS2D's out_proj      (paper 3.3.2)
    dspp         DSPP module at the beginning of every stage            (paper 3.4)

Off, each becomes ``nn.Identity``, so the ablation rows VSSM, +SE,
+SE+LayerScale, +SE+LayerScale+DSPP are the same code with different flags.

Where this follows VMamba rather than the paper's text:
  * Stage layout. The downsample is the last module of stages 1-3 (VMamba's
    parameter names ``stages.i.downsample``), not the first of stages 2-4. The
    paper's 3.1 says stage 1 outputs H/8 without downsampling after an H/4 stem,
    which only holds counting VMamba's trailing downsample; here stage i works
    at H/4/2^i, and ``forward_intermediates`` returns each stage's output before
    its downsample, at that resolution. DSPP of stage i runs after stage i-1's
    downsample, so it too sees H/4/2^i: the paper's "beginning of each stage".
  * Scan paths (column-major flattening, not "top-right to bottom-left"), the
    depthwise (not depthwise separable) conv, and Layer Scale after ``out_norm``
    (a second per-channel scale on top of LayerNorm's gain): see ``ss2d``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from torch import Tensor

from .blocks import DSPP, Downsample, Stem, VSSBlock
from .registry import register_model

ABLATION_FLAGS: dict[str, dict[str, bool]] = {
    "VSSM": dict(path_se=False, layer_scale=False, dspp=False),
    "VSSM+SE": dict(path_se=True, layer_scale=False, dspp=False),
    "VSSM+SE+LayerScale": dict(path_se=True, layer_scale=True, dspp=False),
    "VSSM+SE+LayerScale+DSPP": dict(path_se=True, layer_scale=True, dspp=True),
}


class MSVSSM(nn.Module):
    """Hierarchical visual state space classifier.

    timm's model API: ``forward_features`` (final normalised map), ``forward_head``,
    ``forward_intermediates`` (the 4 stage outputs), ``get_classifier`` /
    ``reset_classifier`` and ``no_weight_decay`` (for ``timm.optim.create_optimizer_v2``).

    Args:
        num_classes: classifier outputs (4 for the paper's HVHA/HVLA/LVHA/LVLA;
            0 gives a feature extractor with ``nn.Identity`` head).
        in_chans: input image channels.
        dims: width of the first stage (doubled at each downsample) or a list of 4.
        depths: VSS blocks per stage.
        d_state, ssm_ratio, dt_rank, mlp_ratio: VMamba's block hyper-parameters.
        drop_path_rate: stochastic depth, linear from 0 to this over all blocks.
        path_se, se_reduction: SE-SS2D.
        layer_scale, layer_scale_init: Layer Scale (init 1e-5 as the paper).
        dspp, dspp_ratio, dspp_residual: DSPP at the start of each stage.
        scan_backend: selective-scan backend for every block (None: env var, then auto).
        fused_scan: with the numba backend, SS2D's scan step as one kernel (see ``SS2D``).
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_chans: int = 3,
        dims: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 8, 2),
        d_state: int = 1,
        ssm_ratio: float = 1.0,
        dt_rank: int | str = "auto",
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.2,
        path_se: bool = False,
        se_reduction: int = 16,
        layer_scale: bool = False,
        layer_scale_init: float = 1e-5,
        dspp: bool = False,
        dspp_ratio: float = 0.25,
        dspp_residual: bool = True,
        scan_backend: str | None = None,
        fused_scan: bool = True,
    ):
        super().__init__()
        if isinstance(dims, int):
            dims = [dims * 2**i for i in range(len(depths))]
        if len(dims) != len(depths):
            raise ValueError(f"dims {list(dims)} and depths {list(depths)} must have the same length")
        self.num_classes, self.dims, self.depths = num_classes, list(dims), list(depths)
        self.in_chans = in_chans
        self.num_features = self.dims[-1]
        self.flags = dict(path_se=path_se, layer_scale=layer_scale, dspp=dspp)

        self.stem = Stem(in_chans, self.dims[0])
        drop_rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        ss2d_kwargs = dict(
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            dt_rank=dt_rank,
            path_se=path_se,
            se_reduction=se_reduction,
            layer_scale=layer_scale,
            layer_scale_init=layer_scale_init,
            scan_backend=scan_backend,
            fused_scan=fused_scan,
        )
        self.stages = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(self.dims, depths)):
            start = sum(depths[:i])
            stage = nn.Sequential()
            stage.add_module("dspp", DSPP(dim, dspp_ratio, dspp_residual) if dspp else nn.Identity())
            stage.add_module(
                "blocks",
                nn.Sequential(
                    *(VSSBlock(dim, drop_rates[start + j], mlp_ratio, **ss2d_kwargs) for j in range(depth))
                ),
            )
            is_last = i == len(depths) - 1
            stage.add_module("downsample", nn.Identity() if is_last else Downsample(dim, self.dims[i + 1]))
            self.stages.append(stage)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # VMamba: Linear weights trunc_normal(0.02), biases 0; LayerNorm 1/0.
        # SS2D's own parameters (x_proj, dt_proj, A_logs, Ds, SE) are not nn.Linear and keep their init.
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def set_scan_backend(self, backend: str | None) -> None:
        """Use ``backend`` (None: env var, then auto) in every SS2D of the model."""
        for module in self.modules():
            if hasattr(module, "scan_backend"):
                module.scan_backend = backend

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters AdamW must not decay (timm's convention, read by ``create_optimizer_v2``).

        ``A_logs`` (2-D) and ``Ds`` parametrise the SSM's decay and skip (Mamba keeps them
        out of weight decay), Layer Scale's ``gamma`` is a per-channel gain initialised at
        1e-5 (decay would pull it back to 0), every bias (``dt_projs_bias`` and the SE
        biases are 2-D) and every norm's weight. timm's own rule (``ndim <= 1`` or a name
        ending in ``.bias``) misses the 2-D ones, hence the explicit set.
        """
        norms = {name for name, m in self.named_modules() if isinstance(m, nn.LayerNorm)}
        return {
            name
            for name, p in self.named_parameters()
            if p.ndim <= 1
            or name.endswith("bias")
            or name.rsplit(".", 1)[-1] in ("A_logs", "Ds", "gamma")
            or name.rsplit(".", 1)[0] in norms
        }

    def get_classifier(self) -> nn.Module:
        """The classification head (``nn.Identity`` when ``num_classes == 0``)."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh head for ``num_classes`` outputs (0: ``nn.Identity``), timm's API; pooling stays average."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"only average pooling is supported, got global_pool={global_pool!r}")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head.apply(self._init_weights)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """x: (b, in_chans, H, W) -> the 4 stage outputs, channels-last, each at its stage's resolution.

        Stage i's output is (b, ceil(H / 4 / 2^i), ceil(W / 4 / 2^i), dims[i]): taken after
        its VSS blocks and before the downsample that ends stages 1-3 (VMamba's layout).
        """
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected images shaped (batch, {self.in_chans}, height, width), got {tuple(x.shape)}"
                + (" (channels last? use x.permute(0, 3, 1, 2))" if x.dim() == 4 and x.shape[-1] == self.in_chans else "")
            )
        x = self.stem(x)  # (b, H/4, W/4, dims[0])
        outs: list[Tensor] = []
        for stage in self.stages:
            x = stage.blocks(stage.dspp(x))  # (b, H/4/2^i, W/4/2^i, dims[i])
            outs.append(x)
            x = stage.downsample(x)  # (b, H/4/2^(i+1), W/4/2^(i+1), dims[i+1]); identity after stage 4
        return outs

    def forward_features(self, x: Tensor) -> Tensor:
        """x: (b, in_chans, H, W) -> final normalised feature map (b, H/32, W/32, num_features)."""
        return self.norm(self.forward_intermediates(x)[-1])  # stage 4 has no downsample

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(b, height, width, num_features) -> logits (b, num_classes) (or pooled features)."""
        x = x.mean(dim=(1, 2))  # (b, num_features)  global average pool
        return x if pre_logits else self.head(x)  # (b, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, in_chans, H, W) images -> logits (b, num_classes)."""
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------
# Model zoo. Sizes tiny/small/base follow VMamba v2's published configs
# (VMamba-T s1l8, S s2l15, B s2l15, all d_state 1, mlp_ratio 4); nano is a
# CPU teaching size. One explicit factory per size and family, so each name
# can be jumped to; ``overrides`` win over the size and the family's flags.
SIZES: dict[str, dict] = {
    "nano": dict(dims=32, depths=(1, 1, 3, 1), ssm_ratio=1.0, drop_path_rate=0.05),
    "tiny": dict(dims=96, depths=(2, 2, 8, 2), ssm_ratio=1.0, drop_path_rate=0.2),
    "small": dict(dims=96, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.3),
    "base": dict(dims=128, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.6),
}
_PLAIN = ABLATION_FLAGS["VSSM"]
_FULL = ABLATION_FLAGS["VSSM+SE+LayerScale+DSPP"]


def _build(size: str, flags: dict[str, bool], num_classes: int, overrides: dict) -> MSVSSM:
    return MSVSSM(num_classes=num_classes, **{**SIZES[size], **flags, **overrides})


@register_model
def vssm_nano(num_classes: int = 4, **overrides) -> MSVSSM:
    """VSSM baseline, CPU teaching size: dims 32, depths 1-1-3-1, ssm_ratio 1 (1.94M params at 1000 classes)."""
    return _build("nano", _PLAIN, num_classes, overrides)


@register_model
def vssm_tiny(num_classes: int = 4, **overrides) -> MSVSSM:
    """VSSM baseline = VMamba-T s1l8: dims 96, depths 2-2-8-2, ssm_ratio 1 (30.25M params at 1000 classes)."""
    return _build("tiny", _PLAIN, num_classes, overrides)


@register_model
def vssm_small(num_classes: int = 4, **overrides) -> MSVSSM:
    """VSSM baseline = VMamba-S: dims 96, depths 2-2-15-2, ssm_ratio 2 (50.15M params at 1000 classes)."""
    return _build("small", _PLAIN, num_classes, overrides)


@register_model
def vssm_base(num_classes: int = 4, **overrides) -> MSVSSM:
    """VSSM baseline = VMamba-B: dims 128, depths 2-2-15-2, ssm_ratio 2 (88.56M params at 1000 classes)."""
    return _build("base", _PLAIN, num_classes, overrides)


@register_model
def msvssm_nano(num_classes: int = 4, **overrides) -> MSVSSM:
    """MS-VSSM (SE-SS2D, Layer Scale, DSPP) on ``vssm_nano`` (2.29M params at 1000 classes)."""
    return _build("nano", _FULL, num_classes, overrides)


@register_model
def msvssm_tiny(num_classes: int = 4, **overrides) -> MSVSSM:
    """MS-VSSM (SE-SS2D, Layer Scale, DSPP) on ``vssm_tiny`` (34.05M params at 1000 classes)."""
    return _build("tiny", _FULL, num_classes, overrides)


@register_model
def msvssm_small(num_classes: int = 4, **overrides) -> MSVSSM:
    """MS-VSSM (SE-SS2D, Layer Scale, DSPP) on ``vssm_small`` (59.75M params at 1000 classes)."""
    return _build("small", _FULL, num_classes, overrides)


@register_model
def msvssm_base(num_classes: int = 4, **overrides) -> MSVSSM:
    """MS-VSSM (SE-SS2D, Layer Scale, DSPP) on ``vssm_base`` (105.59M params at 1000 classes)."""
    return _build("base", _FULL, num_classes, overrides)

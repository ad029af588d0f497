"""Solutions to the exercises of notebook 06 (checked by tests/test_exercises.py).

Names: ``dim`` is the channel count d of the map (the paper's C), ``mid`` the width of each branch,
``dspp`` the module."""
import torch
import torch.nn.functional as F


def dspp_branch(x0, weight, bias, pool_k, dilation):
    """One local branch: avgpool(pool_k, stride 1) -> 3x3 conv with ``dilation`` -> GELU, size kept.

    x0 (b, mid, height, width); weight (mid, mid, 3, 3); bias (mid,) -> (b, mid, height, width)."""
    pooled = F.avg_pool2d(x0, pool_k, stride=1, padding=pool_k // 2, count_include_pad=False)  # (b, mid, h, w)
    pad = dilation * (weight.shape[-1] // 2)  # a 3x3 conv with dilation r spans 2r + 1 pixels: pad r
    return F.gelu(F.conv2d(pooled, weight, bias, padding=pad, dilation=dilation))  # (b, mid, h, w)


def dspp_pyramid(x, dspp):
    """DSPP from its parts: x (b, height, width, dim) channels last -> (b, height, width, dim)."""
    inp = x.permute(0, 3, 1, 2)  # (b, dim, h, w)
    x0 = dspp.reduce(inp)  # (b, mid, h, w)
    g = dspp.align[0](dspp.global_branch(x0.mean(dim=(2, 3), keepdim=True))).expand_as(x0)  # (b, mid, h, w)
    local = [align(conv(pool(x0))) for pool, conv, align in zip(dspp.pools, dspp.dilated, dspp.align[1:])]
    out = dspp.fuse(torch.cat([g] + local, dim=1)) + inp  # (b, dim, h, w): fused, plus the input
    return out.permute(0, 2, 3, 1)  # (b, h, w, dim)


def receptive_field(pool_k, dilation, conv_k=3):
    """Side of the receptive field of avgpool(pool_k, stride 1) followed by a conv_k conv with ``dilation``."""
    return pool_k + dilation * (conv_k - 1)


def dspp_params(dim, ratio):
    """Parameters of DSPP(dim, ratio): every conv has a bias."""
    mid = max(int(dim * ratio), 8)
    reduce = dim * mid + mid
    global_branch = mid * mid + mid
    dilated = 3 * (9 * mid * mid + mid)
    align = 4 * (mid * mid + mid)
    fuse = 4 * mid * dim + dim
    return reduce + global_branch + dilated + align + fuse

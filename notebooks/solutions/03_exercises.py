"""Solutions to the exercises of notebook 03 (checked by tests/test_exercises.py)."""
import math

import torch
import torch.nn.functional as F


def my_cross_scan(x):
    """(b, c, h, w) -> (b, K=4, c, l), l = h*w: row-major, column-major, and both reversed."""
    rows = x.flatten(2)  # (b, c, l): pixel (i, j) at t = i*w + j
    cols = x.transpose(2, 3).flatten(2)  # (b, c, l): pixel (i, j) at t = j*h + i
    return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)  # (b, K, c, l)


def my_cross_merge(y, h, w):
    """(b, K, c, l) -> (b, c, h, w): read the reversed paths backwards, put each path on the grid, sum."""
    b, _, c, l = y.shape
    rows = y[:, 0] + y[:, 2].flip(-1)  # (b, c, l), both in row-major order
    cols = y[:, 1] + y[:, 3].flip(-1)  # (b, c, l), both in column-major order
    return rows.reshape(b, c, h, w) + cols.reshape(b, c, w, h).transpose(2, 3)  # (b, c, h, w)


def my_ss2d(m, x):
    """SS2D's forward from the weights of ``m`` (an msvssm.models.SS2D): x (b, h, w, dim) -> (b, h, w, dim)."""
    from msvssm.ops import selective_scan_reference

    b, hh, ww, _ = x.shape
    d, n, r, l = m.d_inner, m.d_state, m.dt_rank, hh * ww
    u = F.linear(x, m.in_proj.weight)  # (b, h, w, d)
    u = F.silu(F.conv2d(u.permute(0, 3, 1, 2), m.conv2d.weight, padding=1, groups=d))  # (b, d, h, w)
    us = my_cross_scan(u)  # (b, K, d, l)
    x_dbl = torch.einsum("bkdl,kcd->bkcl", us, m.x_proj_weight)  # (b, K, r + 2n, l)
    dts, Bs, Cs = x_dbl.split([r, n, n], dim=2)  # (b, K, r | n | n, l)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, m.dt_projs_weight)  # (b, K, d, l)
    ys = selective_scan_reference(us.reshape(b, 4 * d, l), dts.reshape(b, 4 * d, l), -torch.exp(m.A_logs),
                                  Bs, Cs, m.Ds, delta_bias=m.dt_projs_bias.flatten(), delta_softplus=True)
    y = my_cross_merge(ys.reshape(b, 4, d, l), hh, ww).permute(0, 2, 3, 1)  # (b, h, w, d)
    y = F.layer_norm(y, (d,), m.out_norm.weight, m.out_norm.bias)
    return F.linear(y, m.out_proj.weight)  # (b, h, w, dim)


def ss2d_params(dim, d_state, ssm_ratio):
    """Parameters of a plain SS2D (no SE, no Layer Scale), by formula."""
    d, n, K = int(ssm_ratio * dim), d_state, 4
    r = math.ceil(dim / 16)
    in_proj = dim * d
    conv = d * 9  # depthwise 3x3, no bias
    x_proj = K * (r + 2 * n) * d
    dt_proj = K * d * r + K * d  # weight and bias
    a_logs, ds = K * d * n, K * d
    out_norm = 2 * d
    out_proj = d * dim
    return in_proj + conv + x_proj + dt_proj + a_logs + ds + out_norm + out_proj

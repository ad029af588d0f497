"""Exercises of notebook 06 DSPP: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it).

Names: ``dim`` is the channel count d of the map (the paper's C), ``mid`` the width of each branch
(max(int(dim * ratio), 8)); the DSPP module itself is always ``dspp``, never a single letter."""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .core import BLOCK_MODULES, Result, _call, _call_own, _close, exercise


def _dspp_param_count(dim: int, ratio: float) -> int:
    from ..models import DSPP

    return sum(p.numel() for p in DSPP(dim, ratio).parameters())


def _dspp_formula(dim: int, mid: int) -> int:
    """reduce + global + 3 dilated 3x3 + 4 align + fuse, every conv with a bias, at branch width ``mid``."""
    return (dim * mid + mid) + (mid * mid + mid) + 3 * (9 * mid * mid + mid) + 4 * (mid * mid + mid) + (4 * mid * dim + dim)


def _library_dspp(dim: int = 32, seed: int = 0):
    """A DSPP with seeded weights and non-zero biases (so a forgotten bias shows)."""
    from ..models import DSPP

    torch.manual_seed(seed)
    dspp = DSPP(dim)
    with torch.no_grad():
        for name, p in dspp.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.3)
    return dspp.eval()


def _as_tensor(value):
    return value.detach() if torch.is_tensor(value) else torch.as_tensor(np.asarray(value, dtype=np.float32))


# ---------------------------------------------------------------- exercise 06.1: one local branch

def _branch_wrong_padding(x0, weight, bias, pool_k, dilation):
    """Mistake: the 3x3 conv padded by 1 whatever its dilation (the map shrinks by 2 (dilation - 1))."""
    pooled = F.avg_pool2d(x0, pool_k, stride=1, padding=pool_k // 2, count_include_pad=False)
    return F.gelu(F.conv2d(pooled, weight, bias, padding=1, dilation=dilation))


def _branch_pool_stride_k(x0, weight, bias, pool_k, dilation):
    """Mistake: the pool's stride left at PyTorch's default, the kernel size (the map shrinks about k times)."""
    pooled = F.avg_pool2d(x0, pool_k, padding=pool_k // 2, count_include_pad=False)
    return F.gelu(F.conv2d(pooled, weight, bias, padding=dilation, dilation=dilation))


def _dilated_pool(x0, pool_k, dilation):
    """An average pool of pool_k taps spaced ``dilation`` apart (a depthwise conv with a flat kernel)."""
    mid = x0.shape[1]
    kernel = torch.ones((mid, 1, pool_k, pool_k), dtype=x0.dtype)
    pad = dilation * (pool_k // 2)
    total = F.conv2d(x0, kernel, padding=pad, dilation=dilation, groups=mid)
    count = F.conv2d(torch.ones_like(x0), kernel, padding=pad, dilation=dilation, groups=mid)
    return total / count  # padding not counted, as DSPP's pools


def _branch_dilated_pool(x0, weight, bias, pool_k, dilation):
    """Mistake: the dilation given to the pool, the 3x3 conv left undilated."""
    return F.gelu(F.conv2d(_dilated_pool(x0, pool_k, dilation), weight, bias, padding=1))


def _branch_no_gelu(x0, weight, bias, pool_k, dilation):
    """Mistake: the GELU after the dilated conv forgotten."""
    pooled = F.avg_pool2d(x0, pool_k, stride=1, padding=pool_k // 2, count_include_pad=False)
    return F.conv2d(pooled, weight, bias, padding=dilation, dilation=dilation)


def _branch_pad_counted(x0, weight, bias, pool_k, dilation):
    """Mistake: the pool's zero padding counted in the average (border pixels darkened)."""
    pooled = F.avg_pool2d(x0, pool_k, stride=1, padding=pool_k // 2, count_include_pad=True)
    return F.gelu(F.conv2d(pooled, weight, bias, padding=dilation, dilation=dilation))


@exercise("06", "dspp_branch", wrong=(
    _branch_wrong_padding, _branch_pool_stride_k, _branch_dilated_pool, _branch_no_gelu, _branch_pad_counted,
))
def check_dspp_branch(fn: Callable) -> Result:
    """Exercise 06.1: ``dspp_branch(x0, weight, bias, pool_k, dilation)`` -> one local DSPP branch.

    x0 (b, mid, height, width); weight (mid, mid, 3, 3), bias (mid,) of the branch's 3x3 conv. Compared
    with the library's ``dspp.dilated[i](dspp.pools[i](x0))`` for its three branches, with its weights."""
    dspp = _library_dspp()
    mid = dspp.reduce[0].out_channels
    torch.manual_seed(1)
    x0 = torch.randn(2, mid, 11, 13)  # height != width: a transposed map shows
    h, w = x0.shape[-2:]
    for pool, conv_act in zip(dspp.pools, dspp.dilated):
        conv = conv_act[0]
        k, r = pool.kernel_size, conv.dilation[0]
        where = f"branch (pool {k}, dilation {r})"
        args = (x0.clone(), conv.weight.detach().clone(), conv.bias.detach().clone(), k, r)
        got, err = _call_own(fn, BLOCK_MODULES, *args)
        if err:
            return False, f"{where}: {err}"
        try:
            got = _as_tensor(got)
        except Exception as exc:
            return False, f"{where}: cannot read your answer as a tensor ({type(exc).__name__}: {exc})"
        with torch.no_grad():
            want = conv_act(pool(x0))
        if got.shape != want.shape:
            hint = ""
            if got.dim() == 4 and tuple(got.shape[:2]) == tuple(want.shape[:2]):
                gh, gw = got.shape[-2:]
                if gh < h and (gh, gw) == ((h + 2 * (k // 2) - k) // k + 1, (w + 2 * (k // 2) - k) // k + 1):
                    hint = (f" (your map shrank to {gh}x{gw}: that is a pool with stride {k}; DSPP pools with "
                            "stride 1 so every branch keeps the map's size)")
                elif (h - gh, w - gw) == (2 * (r - 1), 2 * (r - 1)) and r > 1:
                    hint = (f" (2 (dilation - 1) = {2 * (r - 1)} pixels lost: a 3x3 conv with dilation {r} spans "
                            f"{2 * r + 1} pixels, so it needs padding {r}, not 1)")
                elif gh < h:
                    hint = (" (the branch must keep the map's size: pool with stride 1 and padding pool_k // 2, "
                            "conv with padding = dilation)")
            return False, f"{where}: shape {tuple(got.shape)}, expected {tuple(want.shape)}{hint}"
        ok, msg = _close(got, want, rtol=1e-4, atol=1e-5)
        if not ok:
            with torch.no_grad():
                known = [(_branch_dilated_pool, "the dilation belongs to the 3x3 conv (its taps spaced r apart); "
                          "the pool is a plain dense k x k average"),
                         (_branch_no_gelu, "a GELU follows the dilated conv"),
                         (_branch_pad_counted, "the borders are off: average only over pixels inside the map "
                          "(count_include_pad=False)")]
                hint = next((h_ for wrong, h_ in known if _close(got, wrong(*args), rtol=1e-4, atol=1e-5)[0]), "")
            if not hint:
                hint = "avgpool(pool_k, stride 1, padding pool_k // 2, count_include_pad=False) -> conv3x3 -> GELU"
            return False, f"{where}: {msg} (hint: {hint})"
    return True, "pool k (stride 1) -> 3x3 conv with dilation r (padding r) -> GELU: the library's three branches"


# ---------------------------------------------------------------- exercise 06.2: the pyramid

def _parts(x, dspp):
    """(input channels first, the reduced map x0, the four aligned branches) from the library's modules."""
    inp = x.permute(0, 3, 1, 2)
    x0 = dspp.reduce(inp)
    g = dspp.align[0](dspp.global_branch(x0.mean(dim=(2, 3), keepdim=True))).expand_as(x0)
    local = [align(conv(pool(x0))) for pool, conv, align in zip(dspp.pools, dspp.dilated, dspp.align[1:])]
    return inp, x0, [g] + local


def _pyramid_no_residual(x, dspp):
    """Mistake: the fused branches returned without the input added back."""
    _, _, branches = _parts(x, dspp)
    return dspp.fuse(torch.cat(branches, dim=1)).permute(0, 2, 3, 1)


def _pyramid_gelu_after_fuse(x, dspp):
    """Mistake: a GELU after the fusion conv (DSPP leaves the fusion linear)."""
    inp, _, branches = _parts(x, dspp)
    return (F.gelu(dspp.fuse(torch.cat(branches, dim=1))) + inp).permute(0, 2, 3, 1)


def _pyramid_no_align(x, dspp):
    """Mistake: the align 1x1 convs skipped, branches concatenated as they come."""
    inp = x.permute(0, 3, 1, 2)
    x0 = dspp.reduce(inp)
    g = dspp.global_branch(x0.mean(dim=(2, 3), keepdim=True)).expand_as(x0)
    local = [conv(pool(x0)) for pool, conv in zip(dspp.pools, dspp.dilated)]
    return (dspp.fuse(torch.cat([g] + local, dim=1)) + inp).permute(0, 2, 3, 1)


def _pyramid_no_global(x, dspp):
    """Mistake: only the three local branches, the global one replaced by zeros."""
    inp, x0, branches = _parts(x, dspp)
    branches[0] = torch.zeros_like(x0)
    return (dspp.fuse(torch.cat(branches, dim=1)) + inp).permute(0, 2, 3, 1)


def _pyramid_channels_first(x, dspp):
    """Mistake: the result left channels first (b, dim, height, width)."""
    inp, _, branches = _parts(x, dspp)
    return dspp.fuse(torch.cat(branches, dim=1)) + inp


class _UseTheParts(RuntimeError):
    pass


def _forbidden(*args, **kwargs):
    raise _UseTheParts("build the pyramid from dspp's parts (reduce, global_branch, pools, dilated, align, fuse), "
                       "not with dspp(x), dspp.forward or dspp.branches")


@exercise("06", "dspp_pyramid", wrong=(
    _pyramid_no_residual, _pyramid_gelu_after_fuse, _pyramid_no_align, _pyramid_no_global, _pyramid_channels_first,
))
def check_dspp_pyramid(fn: Callable) -> Result:
    """Exercise 06.2: ``dspp_pyramid(x, dspp)`` -> DSPP's output, built from the module's parts.

    x (b, height, width, dim) channels last. Compared with the library's ``dspp(x)``; the module handed to
    the student has its ``forward`` and ``branches`` disabled, so the pyramid must be assembled."""
    dspp = _library_dspp()
    dim = dspp.fuse.out_channels
    torch.manual_seed(2)
    x = torch.randn(2, 9, 11, dim)  # height != width != dim: a wrong permute shows
    with torch.no_grad():
        want = dspp(x)
    student_dspp = copy.deepcopy(dspp)
    student_dspp.forward = _forbidden
    student_dspp.branches = _forbidden
    with torch.no_grad():
        got, err = _call(fn, x.clone(), student_dspp)
    if err:
        return False, err
    try:
        got = _as_tensor(got)
    except Exception as exc:
        return False, f"cannot read your answer as a tensor ({type(exc).__name__}: {exc})"
    if got.shape != want.shape:
        hint = ""
        if tuple(got.shape) == (x.shape[0], dim, x.shape[1], x.shape[2]):
            hint = " (that is channels first: permute back to (b, height, width, dim) at the end)"
        return False, f"shape {tuple(got.shape)}, expected {tuple(want.shape)}{hint}"
    ok, msg = _close(got, want, rtol=1e-4, atol=1e-5)
    if ok:
        return True, ("reduce -> [global, 3 local] -> align -> concat -> fuse -> + x: the library's DSPP, "
                      "with its weights")
    with torch.no_grad():
        known = [(_pyramid_no_residual, "DSPP is residual: add the input x back after the fusion conv"),
                 (_pyramid_gelu_after_fuse, "the fusion conv is linear: no GELU after it"),
                 (_pyramid_no_align, "each branch (the global one too) goes through its own align conv "
                  "(dspp.align[i]) before the concat"),
                 (_pyramid_no_global, "the concat has four branches: the global one (GAP -> global_branch -> "
                  "align[0], broadcast over the map) comes first")]
        hint = next((h_ for wrong, h_ in known if _close(got, wrong(x, dspp), rtol=1e-4, atol=1e-5)[0]), "")
    if not hint:
        hint = ("order of the concat is [global, pool 3, pool 5, pool 7]; x0 = reduce(x) feeds every branch; "
                "the output is fuse(concat) + x")
    return False, f"{msg} (hint: {hint})"


# ---------------------------------------------------------------- exercise 06.3: receptive field

@exercise("06", "receptive_field", wrong=(
    lambda k, r, c: k * r * c,  # sizes multiplied
    lambda k, r, c: k + c - 1,  # the dilation forgotten
    lambda k, r, c: r * (k - 1) + c,  # the dilation applied to the pool
))
def check_branch_receptive_field(fn: Callable) -> Result:
    """Exercise 06.3: ``receptive_field(pool_k, dilation, conv_k=3)`` -> side of one DSPP branch's receptive field.

    The dilation is r here (d is the channel count in the course's notation)."""
    for k, r, c in ((3, 1, 3), (5, 2, 3), (7, 3, 3), (1, 1, 1), (3, 4, 5), (1, 2, 3)):
        got, err = _call(fn, k, r, c)
        if err:
            return False, err
        want = k + r * (c - 1)
        try:
            value = int(got)
        except Exception as exc:
            return False, f"receptive_field({k}, {r}, {c}) = {got!r} is not a number ({type(exc).__name__})"
        if value != want:
            if value == k * r * c:
                hint = " (sizes of stacked stride-1 ops do not multiply: a pool of k and a conv spanning r (c - 1) + 1 compose to k + r (c - 1))"
            elif value == k + c - 1:
                hint = " (the dilated conv's taps are r apart: it spans r (c - 1) + 1 pixels, not c)"
            elif value == r * (k - 1) + c:
                hint = " (the dilation is the conv's, not the pool's: the pool is a dense k x k window)"
            else:
                hint = ""
            return False, f"receptive_field({k}, {r}, {c}) = {got}, expected {want}{hint}"
    return True, "pool k then a conv of size c with dilation r: k + r (c - 1); DSPP's branches see 5, 9 and 13 pixels"


# ---------------------------------------------------------------- exercise 06.4: parameters

@exercise("06", "dspp_params", wrong=(
    lambda dim, ratio: sum(p.numel() for p in __import__("msvssm").models.DSPP(dim, ratio).parameters()),
    lambda dim, ratio: _dspp_param_count(dim, ratio) - dim,  # fuse bias forgotten
    lambda dim, ratio: _dspp_formula(dim, int(dim * ratio)),  # the width's floor of 8 forgotten
))
def check_dspp_params(fn: Callable) -> Result:
    """Exercise 06.4: ``dspp_params(dim, ratio)`` -> parameters of ``DSPP(dim, ratio)`` (convs have biases)."""
    from ..models import DSPP

    for dim, ratio in ((32, 0.25), (96, 0.25), (768, 0.25), (64, 1.0), (16, 0.25)):
        got, err = _call_own(fn, BLOCK_MODULES, dim, ratio)
        if err:
            return False, err
        want = sum(p.numel() for p in DSPP(dim, ratio).parameters())
        try:
            value = int(got)
        except Exception as exc:
            return False, f"dspp_params({dim}, {ratio}) = {got!r} is not a number ({type(exc).__name__})"
        if value != want:
            hint = " (the branch width is mid = max(int(dim * ratio), 8))" if int(dim * ratio) < 8 else ""
            if value == want - dim:
                hint = " (the fusion conv has a bias too: dim more)"
            return False, f"dspp_params({dim}, {ratio}) = {got}, expected {want}{hint}"
    return True, "the three 3x3 dilated convs dominate: 3 x 9 mid^2 of the weights"

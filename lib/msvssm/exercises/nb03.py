"""Exercises of notebook 03 SS2D: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it).

The student writes cross-scan, cross-merge and the whole SS2D forward; each is compared with the
library (:func:`msvssm.ops.cross_scan`, :func:`msvssm.ops.cross_merge`, :class:`msvssm.models.SS2D`),
and a wrong answer that matches a known mistake gets a hint naming it.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .core import CROSS_SCAN_MODULES, SS2D_MODULES, Result, _call_own, _close, exercise

PATH_NAMES = ("k=0 row-major", "k=1 column-major", "k=2 row-major reversed", "k=3 column-major reversed")
GRIDS = ((4, 5), (3, 3), (2, 6))  # (height, width): non-square grids catch reshape/transpose mix-ups


def _same(a, b) -> bool:
    try:
        a = torch.as_tensor(a).double()
    except Exception:
        return False
    return a.shape == b.shape and torch.allclose(a, b.double(), rtol=1e-6, atol=1e-9)


# --- Exercise 1: cross-scan -------------------------------------------------------------------

def _scan_no_transpose(x):
    """Wrong: the column paths flattened like the rows (no transpose of height and width)."""
    b, c, h, w = x.shape
    rows = x.flatten(2)
    cols = x.reshape(b, c, w, h).flatten(2)  # same memory order as rows: a reshape is not a transpose
    return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)


def _scan_no_flip(x):
    """Wrong: paths 2 and 3 are copies of 0 and 1, not their reverses."""
    rows, cols = x.flatten(2), x.transpose(2, 3).flatten(2)
    return torch.stack([rows, cols, rows, cols], dim=1)


def _scan_paper_order(x):
    """Wrong order: the paper's listing (row, reverse row, column, reverse column), not the library's."""
    rows, cols = x.flatten(2), x.transpose(2, 3).flatten(2)
    return torch.stack([rows, rows.flip(-1), cols, cols.flip(-1)], dim=1)


@exercise("03", "my_cross_scan", wrong=(
    _scan_no_transpose, _scan_no_flip, _scan_paper_order,
    lambda x: __import__("msvssm").cross_scan(x),  # the library's cross-scan
))
def check_cross_scan(fn: Callable) -> Result:
    """Exercise 03.1: ``my_cross_scan(x)``, (b, c, h, w) -> (b, K, c, l), the library's four paths in its order."""
    from ..ops import cross_scan

    gen = torch.Generator().manual_seed(0)
    for h, w in GRIDS:
        x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
        got, err = _call_own(fn, CROSS_SCAN_MODULES, x.clone())
        if err:
            return False, err
        want = cross_scan(x)  # (b, K, c, l)
        ok, why = _close(got, want, rtol=1e-9, atol=1e-12)
        if ok:
            continue
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            return False, f"on a {h}x{w} map: {why}; the result is (b, K=4, c, l = h*w)"
        rows, cols = x.flatten(2), x.transpose(2, 3).flatten(2)
        for k in range(4):
            if _same(got[:, k], want[:, k]):
                continue
            hint = ""
            for j in range(4):
                if j != k and _same(got[:, k], want[:, j]):
                    hint = (f" it is the library's {PATH_NAMES[j]}: the order is k=0 rows, k=1 columns, k=2 and "
                            f"k=3 their reverses (the paper lists them in another order)")
            if (k == 1 and _same(got[:, k], rows)) or (k == 3 and _same(got[:, k], rows.flip(-1))):
                hint = (" it reads the pixels row by row: transpose height and width before flattening "
                        "(x.transpose(2, 3).flatten(2)); a reshape keeps the row-major order")
            if k in (2, 3) and _same(got[:, k], (rows, cols)[k - 2]):
                hint = " it is not reversed: path k+2 is path k read backwards (.flip(-1) along l)"
            return False, f"on a {h}x{w} map, path {PATH_NAMES[k]} is wrong;{hint or ' ' + why}"
        return False, why
    return True, "four orders of the same pixels: every pixel appears once in each path"


# --- Exercise 2: cross-merge ------------------------------------------------------------------

def _merge_no_flip(y, h, w):
    """Wrong: the reversed paths summed without reading them backwards first."""
    b, _, c, l = y.shape
    rows = y[:, 0] + y[:, 2]
    cols = y[:, 1] + y[:, 3]
    return rows.reshape(b, c, h, w) + cols.reshape(b, c, w, h).transpose(2, 3)


def _merge_no_transpose(y, h, w):
    """Wrong: the column paths put back as if they were row-major."""
    b, _, c, l = y.shape
    return (y[:, 0] + y[:, 2].flip(-1) + y[:, 1] + y[:, 3].flip(-1)).reshape(b, c, h, w)


def _merge_transpose_only(y, h, w):
    """Wrong: column paths reshaped to (h, w) and then transposed (square grids only give the right shape)."""
    b, _, c, l = y.shape
    rows = y[:, 0] + y[:, 2].flip(-1)
    cols = y[:, 1] + y[:, 3].flip(-1)
    return rows.reshape(b, c, h, w) + cols.reshape(b, c, h, w).transpose(2, 3)


def _merge_mean(y, h, w):
    """Wrong: the mean of the four paths instead of their sum."""
    from ..ops import cross_unscan

    return cross_unscan(y, h, w).mean(dim=1)


def _merge_path_hint(k: int, got: torch.Tensor, path: torch.Tensor, h: int, w: int) -> str:
    """Why path k alone was put back wrong, when it matches a known mistake."""
    b, c, l = path.shape
    as_rows = lambda s: s.reshape(b, c, h, w)  # noqa: E731
    as_cols = lambda s: s.reshape(b, c, w, h).transpose(2, 3)  # noqa: E731
    right = (as_rows, as_cols)[k % 2]
    wrong_grid = (as_cols, as_rows)[k % 2]
    if k >= 2 and _same(got, right(path)):
        return "you forgot to flip it back: a reversed path's first element belongs to the LAST pixel (.flip(-1))"
    if k % 2 == 1 and (_same(got, wrong_grid(path)) or _same(got, wrong_grid(path.flip(-1)))):
        return ("you put it back row by row: a column path lists the pixels column by column, so reshape to "
                "(b, c, w, h) and transpose back to (b, c, h, w)")
    if k % 2 == 1 and h == w and (_same(got, path.reshape(b, c, h, w).transpose(2, 3))
                                  or _same(got, path.flip(-1).reshape(b, c, h, w).transpose(2, 3))):
        return "reshape a column path to (b, c, w, h) before transposing (on a square grid both give the same shape)"
    if k % 2 == 1 and k >= 2 and _same(got, as_rows(path)):
        return "neither flipped back nor transposed back"
    if _same(got * 4, right(path.flip(-1) if k >= 2 else path)):
        return "the merge is the SUM over the four paths, not the mean"
    return ""


@exercise("03", "my_cross_merge", wrong=(
    _merge_no_flip, _merge_no_transpose, _merge_transpose_only, _merge_mean,
    lambda y, h, w: __import__("msvssm").cross_merge(y, h, w),  # the library's cross-merge
))
def check_cross_merge(fn: Callable) -> Result:
    """Exercise 03.2: ``my_cross_merge(y, h, w)``, (b, K, c, l) -> (b, c, h, w): each path back on the grid, summed."""
    from ..ops import cross_merge

    gen = torch.Generator().manual_seed(1)
    for h, w in GRIDS:
        y = torch.randn(2, 4, 3, h * w, generator=gen, dtype=torch.float64)
        got, err = _call_own(fn, CROSS_SCAN_MODULES, y.clone(), h, w)
        if err:
            return False, err
        want = cross_merge(y, h, w)
        ok, why = _close(got, want, rtol=1e-9, atol=1e-12)
        if ok:
            continue
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            return False, (f"on a {h}x{w} map: {why}; the result is (b, c, h, w). A column path reshapes to "
                           f"(b, c, w, h) and is transposed back")
        # one path at a time: which one is put back wrong, and how
        for k in range(4):
            single = torch.zeros_like(y)
            single[:, k] = y[:, k]
            got_k, err = _call_own(fn, CROSS_SCAN_MODULES, single, h, w)
            if err:
                return False, err
            if _close(got_k, cross_merge(single, h, w), rtol=1e-9, atol=1e-12)[0]:
                continue
            hint = _merge_path_hint(k, torch.as_tensor(got_k).double(), y[:, k], h, w)
            return False, f"on a {h}x{w} map, path {PATH_NAMES[k]} lands on the wrong pixels: {hint or why}"
        return False, f"on a {h}x{w} map: {why}"
    return True, "each path back on the grid, then summed: the adjoint of cross-scan"


# --- Exercise 3: the whole SS2D ---------------------------------------------------------------

def _test_ss2d():
    """A small SS2D whose every parameter matters: Δ of order 1 (the scan visible, not drowned by the skip),
    random A, D and LayerNorm affine."""
    from ..models import SS2D

    torch.manual_seed(3)  # SS2D draws its init from the global generator; the check is deterministic
    m = SS2D(16, d_state=2, ssm_ratio=1.5, scan_backend="reference")
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        m.dt_projs_bias.copy_(torch.rand(m.dt_projs_bias.shape, generator=gen) * 2 - 1)  # Δ ≈ softplus(±1)
        m.A_logs.copy_(torch.rand(m.A_logs.shape, generator=gen) * 1.5 - 1)
        m.Ds.copy_(torch.randn(m.Ds.shape, generator=gen))
        m.out_norm.weight.copy_(1 + 0.5 * torch.randn(m.out_norm.weight.shape, generator=gen))
        m.out_norm.bias.copy_(0.5 * torch.randn(m.out_norm.bias.shape, generator=gen))
    return m


def _ss2d_variant(m, x, silu=True, softplus=True, skip=True, merge=None):
    """SS2D's forward with one mistake switched on (used for the wrong answers and their hints)."""
    from ..ops import cross_merge, cross_scan, selective_scan_reference

    merge = merge or cross_merge
    b, hh, ww, _ = x.shape
    d, n, r, l = m.d_inner, m.d_state, m.dt_rank, hh * ww
    u = F.conv2d(F.linear(x, m.in_proj.weight).permute(0, 3, 1, 2), m.conv2d.weight, padding=1, groups=d)
    u = F.silu(u) if silu else u  # (b, d, h, w)
    us = cross_scan(u)  # (b, K, d, l)
    x_dbl = torch.einsum("bkdl,kcd->bkcl", us, m.x_proj_weight)  # (b, K, r + 2n, l)
    dts, Bs, Cs = x_dbl.split([r, n, n], dim=2)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, m.dt_projs_weight)  # (b, K, d, l)
    ys = selective_scan_reference(us.reshape(b, 4 * d, l), dts.reshape(b, 4 * d, l), -torch.exp(m.A_logs),
                                  Bs, Cs, m.Ds if skip else None, delta_bias=m.dt_projs_bias.flatten(),
                                  delta_softplus=softplus)  # (b, K*d, l)
    y = merge(ys.reshape(b, 4, d, l), hh, ww).permute(0, 2, 3, 1)  # (b, h, w, d)
    y = F.layer_norm(y, (d,), m.out_norm.weight, m.out_norm.bias)
    return F.linear(y, m.out_proj.weight)  # (b, h, w, dim)


def _ss2d_no_silu(m, x):
    return _ss2d_variant(m, x, silu=False)


def _ss2d_no_softplus(m, x):
    return _ss2d_variant(m, x, softplus=False)


def _ss2d_no_skip(m, x):
    return _ss2d_variant(m, x, skip=False)


def _ss2d_merge_no_flip(m, x):
    return _ss2d_variant(m, x, merge=_merge_no_flip)


_SS2D_HINTS = (
    (dict(silu=False), "no SiLU after the depthwise conv: u = SiLU(conv(in_proj(x)))"),
    (dict(softplus=False), "Δ = softplus(dt_proj(...) + bias): pass delta_softplus=True (Δ must be positive)"),
    (dict(skip=False), "the skip D u is missing: y_t = C_t h_t + D u_t (pass m.Ds as D)"),
    (dict(merge=_merge_no_flip), "your merge forgets to flip the reversed paths back"),
    (dict(merge=_merge_no_transpose), "your merge forgets to transpose the column paths back"),
)


class _NoShortcut:
    """The SS2D's parameters and submodules, without ``forward``/``scan``: the student computes the data flow."""

    def __init__(self, m):
        self._m = m

    def __getattr__(self, name):
        if name in ("forward", "scan", "__call__"):
            raise AttributeError(f"write the data flow yourself instead of calling m.{name}")
        return getattr(self._m, name)

    def __call__(self, *args, **kwargs):
        raise TypeError("write the data flow yourself instead of calling m(x)")


@exercise("03", "my_ss2d", wrong=(
    _ss2d_no_silu, _ss2d_no_softplus, _ss2d_no_skip, _ss2d_merge_no_flip,
    lambda m, x: m._m(x),  # the wrapped module itself
))
def check_ss2d(fn: Callable) -> Result:
    """Exercise 03.3: ``my_ss2d(m, x)``, x (b, h, w, dim) channels last -> (b, h, w, dim), SS2D's forward from
    ``m``'s weights, compared with ``SS2D.forward`` on a non-square map."""
    m = _test_ss2d()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 5, m.dim, generator=gen)
    with torch.no_grad():
        got, err = _call_own(fn, SS2D_MODULES, _NoShortcut(m), x.clone())
        if err:
            return False, err
        want = m(x)
        ok, why = _close(got, want, rtol=1e-4, atol=1e-5)
        if ok:
            return True, "the same numbers as msvssm.models.SS2D with the same weights"
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            for changes, hint in _SS2D_HINTS:
                if _close(got, _ss2d_variant(m, x, **changes), rtol=1e-4, atol=1e-5)[0]:
                    return False, hint
    return False, f"{why} (x is channels last (b, h, w, dim); return the same layout)"


# --- Exercise 4: parameters by formula --------------------------------------------------------

def ss2d_param_count_truth(dim: int, d_state: int, ssm_ratio: float) -> int:
    from ..models import SS2D

    return sum(p.numel() for p in SS2D(dim, d_state=d_state, ssm_ratio=ssm_ratio).parameters())


def _params_formula(dim, n, ratio, conv_bias=False, rank_from_inner=False, projections_only=False):
    d, K = int(ratio * dim), 4
    r = math.ceil((d if rank_from_inner else dim) / 16)
    if projections_only:
        return 2 * dim * d
    return (dim * d + d * 9 + (d if conv_bias else 0) + K * (r + 2 * n) * d + K * d * r + K * d
            + K * d * n + K * d + 2 * d + d * dim)


def _params_projections_only(dim, n, ratio):
    return _params_formula(dim, n, ratio, projections_only=True)


def _params_conv_bias(dim, n, ratio):
    return _params_formula(dim, n, ratio, conv_bias=True)


def _params_rank_from_inner(dim, n, ratio):
    return _params_formula(dim, n, ratio, rank_from_inner=True)


@exercise("03", "ss2d_params", wrong=(
    _params_projections_only, _params_conv_bias, _params_rank_from_inner,
    lambda dim, n, r: sum(p.numel() for p in __import__("msvssm").models.SS2D(dim, d_state=n, ssm_ratio=r).parameters()),
))
def check_ss2d_params(fn: Callable) -> Result:
    """Exercise 03.4: ``ss2d_params(dim, d_state, ssm_ratio)`` -> parameters of a plain SS2D, by formula."""
    for dim, n, ratio in ((32, 1, 1.0), (96, 1, 1.0), (96, 16, 2.0), (40, 4, 1.5)):
        got, err = _call_own(fn, SS2D_MODULES, dim, n, ratio)
        if err:
            return False, err
        want = ss2d_param_count_truth(dim, n, ratio)
        try:
            got = int(got)
        except Exception:
            return False, f"return an integer, got {got!r}"
        if got != want:
            hint = ""
            if got == _params_conv_bias(dim, n, ratio):
                hint = " (the depthwise conv has no bias)"
            elif got == _params_rank_from_inner(dim, n, ratio):
                hint = " (dt_rank = ceil(dim / 16) from the block's width dim, not from d_inner)"
            elif got == _params_projections_only(dim, n, ratio):
                hint = " (that is in_proj and out_proj only)"
            return False, f"ss2d_params({dim}, {n}, {ratio}) = {got}, expected {want}{hint}"
    return True, "in_proj and out_proj dominate; the S6 parameters are a few percent"

"""Exercises of notebook 04 SE-SS2D: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

from typing import Callable

import torch

from .core import SS2D_MODULES, Result, _call_own, _close, _known_mistake, exercise


# ---- SE per path: y (b, K, d, l) -> each path gated by its own SE --------------------------------------------
def _se_one(s, w1, b1, w2, b2, sigmoid=True):
    """The excitation of one path from its squeezed descriptor s (b, d): (b, d)."""
    gate = torch.relu(s @ w1.T + b1) @ w2.T + b2
    return torch.sigmoid(gate) if sigmoid else gate


def _path_se_merged_squeeze(y, w1, b1, w2, b2):
    """Wrong: squeezes the MERGED map (sum over paths), so all four gates see the same descriptor."""
    s = y.sum(dim=1).mean(dim=-1)  # (b, d) of the merged output
    return torch.stack([y[:, k] * _se_one(s, w1[k], b1[k], w2[k], b2[k])[..., None] for k in range(y.shape[1])], 1)


def _path_se_after_merge(y, w1, b1, w2, b2):
    """Wrong: one SE on the merged output (returns the merged, gated map (b, d, l))."""
    merged = y.sum(dim=1)  # (b, d, l)
    return merged * _se_one(merged.mean(dim=-1), w1[0], b1[0], w2[0], b2[0])[..., None]


def _path_se_no_sigmoid(y, w1, b1, w2, b2):
    """Wrong: no sigmoid, the gate is the raw second FC output."""
    return torch.stack([y[:, k] * _se_one(y[:, k].mean(-1), w1[k], b1[k], w2[k], b2[k], sigmoid=False)[..., None]
                        for k in range(y.shape[1])], 1)


def _path_se_channel_squeeze(y, w1, b1, w2, b2):
    """Wrong: squeezes over the channels (dim -2) instead of the length (dim -1); runs only when d == l."""
    return torch.stack([y[:, k] * _se_one(y[:, k].mean(-2), w1[k], b1[k], w2[k], b2[k])[..., None]
                        for k in range(y.shape[1])], 1)


def _path_se_shared(y, w1, b1, w2, b2):
    """Wrong: one SE (path 0's weights) for every path."""
    return torch.stack([y[:, k] * _se_one(y[:, k].mean(-1), w1[0], b1[0], w2[0], b2[0])[..., None]
                        for k in range(y.shape[1])], 1)


def _path_se_cases():
    """(y, w1, b1, w2, b2) from a library PathSqueezeExcite with random biases; d == l in the first case."""
    from ..models import PathSqueezeExcite

    cases = []
    for seed, (b, d, h, w, r) in enumerate(((2, 16, 4, 4, 4), (3, 24, 5, 6, 4))):
        torch.manual_seed(seed)
        se = PathSqueezeExcite(d, directions=4, reduction=r).double()
        with torch.no_grad():
            for p in (se.fc1_bias, se.fc2_bias):
                p.normal_()
            se.fc2_weight.mul_(3.0)  # gates spread over (0, 1), so a missing sigmoid shows
        y_grid = torch.randn(b, 4, d, h, w, dtype=torch.float64)
        with torch.no_grad():
            want = se(y_grid).flatten(-2)  # (b, K, d, l): the library, on the grid
        weights = [t.detach().clone() for t in (se.fc1_weight, se.fc1_bias, se.fc2_weight, se.fc2_bias)]
        cases.append((y_grid.flatten(-2), weights, want))  # a path's output as a sequence (b, K, d, l)
    return cases


@exercise("04", "my_path_se", wrong=(
    _path_se_after_merge,  # SE on the merged output instead of per path
    _path_se_merged_squeeze,  # per-path gates, but squeezed from the merged map
    _path_se_no_sigmoid,  # no sigmoid
    _path_se_channel_squeeze,  # squeeze over channels instead of length
    _path_se_shared,  # one SE for all four paths
))
def check_path_se(fn: Callable) -> Result:
    """Exercise 04.1: ``my_path_se(y, w1, b1, w2, b2)``: y (b, K, d, l) -> (b, K, d, l), path k gated by its own SE.

    w1 (K, hidden, d), b1 (K, hidden), w2 (K, d, hidden), b2 (K, d): the weights of ``PathSqueezeExcite``."""
    known = ((_path_se_after_merge, "that is one SE on the merged output: the paper gates each path BEFORE the merge"),
             (_path_se_merged_squeeze, "each path's descriptor must come from that path's own output y[:, k], "
                                       "not from the merged sum"),
             (_path_se_no_sigmoid, "the gate needs a sigmoid: s = sigmoid(W2 ReLU(W1 z + b1) + b2) lies in (0, 1)"),
             (_path_se_channel_squeeze, "you averaged over the channels (dim -2); the squeeze averages each channel "
                                        "over the l positions (dim -1), giving (b, d)"),
             (_path_se_shared, "path k has its own weights w1[k], b1[k], w2[k], b2[k]: the four SEs share nothing"))
    for y, (w1, b1, w2, b2), want in _path_se_cases():
        args = (y, w1, b1, w2, b2)
        got, err = _call_own(fn, SS2D_MODULES, *(a.clone() for a in args))
        if err:
            if "shape" in err or "size" in err:
                err += (" (shapes: squeeze z_k = mean of y[:, k] over its last axis l -> (b, d); "
                        "z_k @ w1[k].T -> (b, hidden); gate (b, d); rescale y[:, k] * gate[..., None])")
            return False, err
        got = torch.as_tensor(got).detach().double()
        if tuple(got.shape) == tuple(y.shape[:1] + y.shape[2:]):
            return False, (f"shape {tuple(got.shape)}, expected {tuple(y.shape)}: you merged the paths; return each "
                           "path gated by its own SE (the merge comes after SE-SS2D)")
        ok, msg = _close(got, want, rtol=1e-6, atol=1e-9)
        if not ok:
            hint = _known_mistake(got, known, args, rtol=1e-6, atol=1e-9)
            return False, f"{msg}: {hint}" if hint else msg
    return True, "squeeze over l, excite (two FCs, ratio r, sigmoid), rescale: per path, as PathSqueezeExcite"


@exercise("04", "se_params", wrong=(
    lambda c, k, r: 2 * c * (c // r) + c // r + c,  # one SE, not one per path
    lambda c, k, r: k * 2 * c * max(c // r, 4),  # forgets the biases
))
def check_se_params(fn: Callable) -> Result:
    """Exercise 04.2: ``se_params(channels, directions, reduction)`` -> parameters of ``PathSqueezeExcite``."""
    from ..models import PathSqueezeExcite

    for c, k, r in ((32, 4, 16), (96, 4, 16), (192, 4, 4), (16, 4, 16), (64, 2, 8)):
        got, err = _call_own(fn, SS2D_MODULES, c, k, r)
        if err:
            return False, err
        want = sum(p.numel() for p in PathSqueezeExcite(c, k, r).parameters())
        if int(got) != want:
            hint = " (the hidden width is max(channels // reduction, 4))" if c // r < 4 else ""
            if int(got) == k * 2 * c * max(c // r, 4):
                hint = " (each FC layer has a bias too)"
            return False, f"se_params({c}, {k}, {r}) = {got}, expected {want}{hint}"
    return True, "K x (2 d h + h + d) with h = max(d // r, 4)"

"""Exercises of notebook 09 baselines: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

from typing import Callable

import torch

from ..optional import require
from .core import Result, _call, _close, exercise


def _fold_bn_forgets_eps(w, b, bn):
    scale = bn.weight.detach() / torch.sqrt(bn.running_var)
    bias = b if b is not None else torch.zeros_like(bn.running_mean)
    return w * scale[:, None, None, None], bn.bias.detach() + (bias - bn.running_mean) * scale


@exercise("09", "fold_bn", wrong=(
    lambda w, b, bn: (w * bn.weight.detach()[:, None, None, None], bn.bias.detach()),  # no 1/sigma, no mu
    _fold_bn_forgets_eps,
))
def check_fold_bn(fn: Callable) -> Result:
    """Exercise 09.1: ``fold_bn(weight, bias, bn)`` -> (W', b') with conv'(x) == bn(conv(x)) in eval mode."""
    import torch.nn as nn

    torch.manual_seed(0)
    for bias in (True, False):
        conv = nn.Conv2d(3, 5, 3, padding=1, bias=bias)
        bn = nn.BatchNorm2d(5, eps=1e-5 if bias else 0.1)  # a large eps: forgetting it must show
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
        bn.eval()
        got, err = _call(fn, conv.weight.detach().clone(), None if conv.bias is None else conv.bias.detach().clone(), bn)
        if err:
            return False, err
        try:
            w, b = got
            x = torch.randn(2, 3, 8, 8)
            out = torch.nn.functional.conv2d(x, torch.as_tensor(w), torch.as_tensor(b), padding=1)
        except Exception as exc:
            return False, f"cannot use your (W', b') as a conv: {type(exc).__name__}: {exc}"
        with torch.no_grad():
            want = bn(conv(x))
        ok, msg = _close(out.detach(), want, rtol=1e-4, atol=1e-5)
        if not ok:
            return False, f"conv {'with' if bias else 'without'} bias: {msg}"
    return True, "RepViT's fuse() does this for every conv + BN pair, then adds its parallel branches"


@exercise("09", "conv_macs", wrong=(
    lambda ci, co, k, h, w, g=1: h * w * co * ci * k * k,  # groups ignored
))
def check_conv_macs(fn: Callable) -> Result:
    """Exercise 09.2: ``conv_macs(c_in, c_out, k, h_out, w_out, groups)`` -> fvcore's count for a bias-free conv."""
    import torch.nn as nn
    FlopCountAnalysis = require("fvcore.nn", "analysis", "exercise 09.2").FlopCountAnalysis

    for c_in, c_out, k, stride, groups, size in [(3, 16, 3, 2, 1, 32), (32, 32, 3, 1, 32, 16), (16, 24, 1, 1, 1, 8),
                                                  (8, 8, 5, 1, 2, 10)]:
        conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False)
        x = torch.zeros(1, c_in, size, size)
        h_out = conv(x).shape[-1]
        want = FlopCountAnalysis(conv, x).unsupported_ops_warnings(False).total()
        got, err = _call(fn, c_in, c_out, k, h_out, h_out, groups)
        if err:
            return False, err
        if int(got) != want:
            return False, f"conv {c_in}->{c_out}, k={k}, groups={groups}, output {h_out}x{h_out}: {got}, fvcore {want}"
    return True, ""

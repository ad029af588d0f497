"""FLOP counting with fvcore, counting the selective scan as VMamba does.

fvcore traces the model with ``torch.jit.trace`` and counts known ops; a
selective scan is an unknown op and would count as zero. Here, for the length
of the count, every SS2D in the model runs a scan wrapped in one autograd
Function (``_ScanForFlopCount``), so the trace shows one ``prim::PythonOp`` per
scan. Counting needs shapes only, so that Function returns zeros of the right
shape instead of scanning (a 224x224 trace with a real CPU scan takes minutes);
the counted model's outputs are meaningless and discarded, and a handle gives it
VMamba's cost::

    scan:  9 * b * l * d * n   (+ b * d * l for the D skip)

Like VMamba (and fvcore), the numbers are multiply-accumulates, reported as "FLOPs".
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .ops.registry import ScanBackend, temporary_backend
from .optional import require

FLOP_COUNT_BACKEND = "flopcount"


class _ScanForFlopCount(torch.autograd.Function):
    """One traceable node per scan, for counting only: returns zeros shaped like y.

    Its traced inputs are (u, delta, A, B, C, D) with D an empty tensor when the
    call has no D, so the handle can tell the two apart from shapes alone.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D):  # type: ignore[override]
        return torch.zeros_like(u)


def _flopcount_backend(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    if z is not None or return_last_state:
        raise ValueError("the flop-count backend counts SS2D's call only (no z, no last state)")
    return _ScanForFlopCount.apply(u, delta, A, B, C, u.new_empty(0) if D is None else D)


def scan_flops(b: int, l: int, d: int, n: int, with_d: bool = True) -> int:
    """VMamba's count for one selective scan: 9*b*l*d*n (+ b*d*l for the D skip).

    ``d`` is the scan's channel count (K * d_inner in SS2D; glossary in :mod:`msvssm.ops`).
    """
    return 9 * b * l * d * n + (b * d * l if with_d else 0)


def _scan_flop_handle(inputs, outputs) -> int:
    """fvcore handle: VMamba's cost for a scan from the traced input shapes."""
    get_shape = require("fvcore.nn.jit_handles", "analysis", "FLOP counting").get_shape

    b, d, l = get_shape(inputs[0])
    n = get_shape(inputs[2])[1]
    with_d = get_shape(inputs[5]) != [0]
    return scan_flops(b, l, d, n, with_d)


@contextlib.contextmanager
def _counting_scan(model: nn.Module) -> Iterator[None]:
    """Register the counting backend and route every SS2D of ``model`` to it, then undo both.

    It is registered only for the length of a count, so it never shows in
    ``available_scan_backends()`` and cannot be chosen by a user.
    """
    backend = ScanBackend(FLOP_COUNT_BACKEND, _flopcount_backend, ("cpu", "cuda", "mps"), lambda: True, lambda: "")
    saved = {m: m.scan_backend for m in model.modules() if hasattr(m, "scan_backend")}
    with temporary_backend(backend):
        for m in saved:
            m.scan_backend = FLOP_COUNT_BACKEND
        try:
            yield
        finally:
            for m, old in saved.items():
                m.scan_backend = old


def count_flops(model: nn.Module, input_size=(3, 224, 224), batch_size: int = 1) -> dict:
    """Count multiply-accumulates of one forward pass with fvcore.

    Returns ``{"flops": total, "by_operator": {...}, "params": n}``; FLOPs per
    image (batch 1 by default). Traces on the model's device in eval mode; the
    model's mode and scan backends are restored afterwards. Not thread-safe
    (the counting backend is registered for the duration of the call).
    """
    FlopCountAnalysis = require("fvcore.nn", "analysis", "FLOP counting").FlopCountAnalysis

    was_training = model.training
    device = next(model.parameters()).device
    x = torch.zeros(batch_size, *input_size, device=device)
    model.eval()
    try:
        with _counting_scan(model), torch.no_grad():
            analysis = FlopCountAnalysis(model, x)
            analysis.set_op_handle("prim::PythonOp._ScanForFlopCount", _scan_flop_handle)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = analysis.total()
            by_op = dict(analysis.by_operator())
    finally:
        model.train(was_training)
    return {
        "flops": total / batch_size,
        "by_operator": {k: v / batch_size for k, v in by_op.items()},
        "params": sum(p.numel() for p in model.parameters()),
    }

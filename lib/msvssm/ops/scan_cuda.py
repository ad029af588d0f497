"""The ``cuda`` selective-scan backend: mamba-ssm's fused CUDA kernel.

Available only when ``mamba_ssm`` imports (it needs its compiled CUDA module
and triton, so any failure is possible: the import is guarded with a broad
``except Exception`` and the error text is kept for ``why_unavailable``) and a
CUDA device is present. Inputs are upcast to float32 before the call (as
VMamba does, to avoid fp16/bf16 overflow under AMP) and ``y`` is cast back to
the input dtype. mamba-ssm's last state carries no gradient.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .selective_scan import ScanBackend, register_backend

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_scan_fn

    _IMPORT_ERROR = ""
except Exception as exc:  # noqa: BLE001 - any failure means "not available"
    _mamba_scan_fn = None
    _IMPORT_ERROR = f"mamba_ssm does not import: {type(exc).__name__}: {exc}"


def _is_available() -> bool:
    return _mamba_scan_fn is not None and torch.cuda.is_available()


def _why_unavailable() -> str:
    if _mamba_scan_fn is None:
        return _IMPORT_ERROR + " (install the 'gpu' extra on a machine with CUDA)"
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return ""


def _f32(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.float()


def selective_scan_cuda(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """mamba-ssm's ``selective_scan_fn`` on float32 copies; same contract as the reference."""
    if _mamba_scan_fn is None:
        raise RuntimeError(_why_unavailable())
    dtype_in = u.dtype
    out = _mamba_scan_fn(
        u.float(), delta.float(), A.float(), B.float(), C.float(),
        _f32(D), _f32(z), _f32(delta_bias), delta_softplus, return_last_state,
    )
    if return_last_state:
        y, last_state = out
        return y.to(dtype_in), last_state.float()
    return out.to(dtype_in)


register_backend(ScanBackend("cuda", selective_scan_cuda, ("cuda",), _is_available, _why_unavailable))

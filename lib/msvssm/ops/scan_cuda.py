"""The ``cuda`` selective-scan backend: mamba-ssm's fused CUDA kernel.

Available only when ``mamba_ssm`` imports (it needs its compiled CUDA module
and triton, so any failure is possible: the import is guarded with a broad
``except Exception`` and the error text is kept for ``why_unavailable``) and a
CUDA device is present. Inputs are upcast to float32 before the call (as
VMamba does, to avoid fp16/bf16 overflow under AMP) and ``y`` is cast back to
the input dtype. mamba-ssm's kernel has no float64 path, so float64 inputs are
refused (use ``chunked``) rather than silently computed in float32. B and C go
to the kernel in their own forms (grouped, variable or fixed) when it takes that
combination, else both are brought to one grouped form. mamba-ssm's last state
carries no gradient. Symbols: the glossary in :mod:`msvssm.ops`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .registry import ScanBackend, register_backend
from .scan_common import grouped_bc

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


def _kernel_takes(B: Tensor, C: Tensor) -> bool:
    """Whether mamba-ssm's kernel accepts this pair of forms as they are.

    Its group count comes from B when B is input-dependent, else it is 1; an
    input-dependent C must have that many groups ((b, n, l) counts as 1).
    """
    groups = lambda X: None if X.dim() == 2 else (1 if X.dim() == 3 else X.shape[1])  # noqa: E731
    gb, gc = groups(B), groups(C)
    return gc is None or gc == (1 if gb is None else gb)


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
    if any(t is not None and t.dtype == torch.float64 for t in (u, delta, A, B, C)):
        raise RuntimeError("the cuda scan backend (mamba-ssm) has no float64 kernel; use backend='chunked'")
    dtype_in = u.dtype
    if not _kernel_takes(B, C):
        B, C = grouped_bc(B, C, *u.shape)
    out = _mamba_scan_fn(
        u.float(), delta.float(), A.float(), B.float().contiguous(), C.float().contiguous(),
        _f32(D), _f32(z), _f32(delta_bias), delta_softplus, return_last_state,
    )
    if return_last_state:
        y, last_state = out
        return y.to(dtype_in), last_state.float()
    return out.to(dtype_in)


register_backend(ScanBackend("cuda", selective_scan_cuda, ("cuda",), _is_available, _why_unavailable))

"""Selective scan (S6): one entry point, several backends.

Glossary (code name -> paper / Mamba symbol)::

    b      batch size                        B (batch)
    d      channels fed to the scan          D  (= K * d_inner in SS2D)
    l      sequence length                   L  (= H * W in SS2D)
    n      state size per channel            N  (d_state)
    g      groups sharing B and C            G  (= K = 4 directions in SS2D)
    u      input sequence      (b, d, l)     x_t
    delta  step size           (b, d, l)     Δ_t  (softplus(delta + delta_bias))
    A      state matrix        (d, n)        A    (negative: decay)
    B      input matrix        (b, g, n, l)  B_t  (input-dependent: "selective")
    C      output matrix       (b, g, n, l)  C_t
    D      skip                (d,)          D
    z      gate                (b, d, l)     y * silu(z) (unused by SS2D v05_noz)

The recurrence, per b, d, n and time t::

    h_t = exp(Δ_t A) * h_{t-1} + Δ_t B_t u_t
    y_t = <C_t, h_t> + D u_t

``selective_scan(...)`` takes the arguments of mamba-ssm's ``selective_scan_fn``
plus ``backend``. Every backend upcasts to float32 inside and casts the result
back to the input dtype, as VMamba does to avoid fp16/bf16 overflow under AMP.
Backend choice is explicit: ``backend=`` argument, else the ``MSVSSM_SCAN_BACKEND``
environment variable, else ``"auto"``, which picks the best backend for the
tensors' device and logs the choice once. Asking for an unavailable backend is
an error, never a silent fallback.
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils import get_logger

log = get_logger("scan")

ENV_VAR = "MSVSSM_SCAN_BACKEND"


def selective_scan_reference(
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
    """The ground truth: a plain sequential loop over time, autograd for gradients.

    Written to be read, not to be fast (it is the style of mamba-ssm's
    ``selective_scan_ref``). Shapes: see the module glossary. Returns ``y``
    (b, d, l) in the dtype of ``u``, and the last state (b, d, n) if asked.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = (t.float() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    b, d, l = u.shape
    g = B.shape[1]
    # Each group of d // g channels shares the same B_t and C_t.
    B = B.repeat_interleave(d // g, dim=1)  # (b, d, n, l)
    C = C.repeat_interleave(d // g, dim=1)  # (b, d, n, l)
    decay = torch.exp(delta[:, :, None, :] * A[None, :, :, None])  # (b, d, n, l)  exp(Δ A)
    drive = delta[:, :, None, :] * B * u[:, :, None, :]  # (b, d, n, l)  Δ B u
    h = u.new_zeros(b, d, A.shape[1])  # (b, d, n)
    ys = []
    for t in range(l):
        h = decay[:, :, :, t] * h + drive[:, :, :, t]  # (b, d, n)
        ys.append((h * C[:, :, :, t]).sum(-1))  # (b, d)
    y = torch.stack(ys, dim=-1)  # (b, d, l)
    if D is not None:
        y = y + D.float()[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y


def run_scan_core(
    core: Callable,
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
    """Shared pre- and post-processing for the fast backends.

    Upcasts to float32, applies ``delta_bias`` and softplus (in autograd), calls
    ``core(u, delta, A, B, C) -> (y, last_state)`` on float32 tensors (the core
    owns the recurrence and its gradient), then adds ``D * u``, gates with
    ``silu(z)`` (in autograd) and casts ``y`` back to the dtype of ``u``, exactly
    as :func:`selective_scan_reference` does.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = (t.float() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    y, last_state = core(u, delta, A, B, C)
    if D is not None:
        y = y + D.float()[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, last_state) if return_last_state else y


class ScanBackend(NamedTuple):
    name: str
    fn: Callable
    devices: tuple[str, ...]  # device types it runs on
    is_available: Callable[[], bool]
    why_unavailable: Callable[[], str]


_BACKENDS: dict[str, ScanBackend] = {}
# Order of preference for "auto", per device type.
_AUTO_ORDER = {"cuda": ("cuda", "chunked", "reference"), "cpu": ("numba", "chunked", "reference")}
_logged_auto: set[tuple[str, str]] = set()


def register_backend(backend: ScanBackend) -> None:
    _BACKENDS[backend.name] = backend


register_backend(
    ScanBackend("reference", selective_scan_reference, ("cpu", "cuda", "mps"), lambda: True, lambda: "")
)


def _load_optional_backends() -> None:
    """Import the modules that register further backends (each guards its own deps)."""
    from . import scan_chunked, scan_cuda, scan_numba  # noqa: F401


def available_scan_backends(device: str | torch.device | None = None) -> list[str]:
    """Names of the backends usable here (optionally: usable on ``device``)."""
    _load_optional_backends()
    dev = None if device is None else torch.device(device).type
    return [
        name
        for name, be in _BACKENDS.items()
        if be.is_available() and (dev is None or dev in be.devices)
    ]


def resolve_backend(name: str | None, device: torch.device) -> str:
    """Turn ``name`` (or the environment variable, or "auto") into a usable backend name."""
    _load_optional_backends()
    requested = name or os.environ.get(ENV_VAR) or "auto"
    if requested == "auto":
        for candidate in _AUTO_ORDER.get(device.type, ("reference",)):
            be = _BACKENDS.get(candidate)
            if be is not None and device.type in be.devices and be.is_available():
                key = (device.type, candidate)
                if key not in _logged_auto:
                    _logged_auto.add(key)
                    log.info("selective scan: backend 'auto' chose %r for %s tensors", candidate, device.type)
                return candidate
        raise RuntimeError(f"no selective-scan backend runs on device {device}")
    if requested not in _BACKENDS:
        raise ValueError(
            f"unknown selective-scan backend {requested!r}; choose one of "
            f"{sorted(_BACKENDS) + ['auto']} (set by argument or ${ENV_VAR})"
        )
    be = _BACKENDS[requested]
    if not be.is_available():
        raise RuntimeError(f"selective-scan backend {requested!r} is not available here: {be.why_unavailable()}")
    if device.type not in be.devices:
        raise RuntimeError(
            f"selective-scan backend {requested!r} runs on {be.devices}, but the tensors are on {device}"
        )
    return requested


def selective_scan(
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
    *,
    backend: str | None = None,
):
    """Drop-in for mamba-ssm's ``selective_scan_fn`` with an explicit ``backend``.

    Args: see the module glossary; shapes u, delta (b, d, l), A (d, n),
    B, C (b, g, n, l) with d divisible by g, D and delta_bias (d,), z (b, d, l).
    Returns y (b, d, l) in u's dtype, plus the last state (b, d, n) in float32
    when ``return_last_state``.
    """
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be (b, d, l); got {tuple(u.shape)} and {tuple(delta.shape)}")
    b, d, l = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d={d}, n); got {tuple(A.shape)}")
    if B.dim() != 4 or C.shape != B.shape or B.shape[0] != b or B.shape[2] != A.shape[1] or B.shape[3] != l:
        raise ValueError(f"B and C must be (b={b}, g, n={A.shape[1]}, l={l}); got {tuple(B.shape)}, {tuple(C.shape)}")
    if d % B.shape[1]:
        raise ValueError(f"channels d={d} must be divisible by groups g={B.shape[1]}")
    name = resolve_backend(backend, u.device)
    return _BACKENDS[name].fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

"""The ``numba`` selective-scan backend: compiled CPU kernels (the fast CPU path).

Forward, per (batch, channel), one sequential loop over time with the state
(n floats) in registers / L1. When a gradient is needed it also writes every state
h_t into a (b, d, l, n) buffer that is saved for the backward (with VMamba's n = 1
as many floats as y); without one (``torch.no_grad``, inputs that need no grad) it
saves nothing.

Backward, per work item = (batch, group, chunk of the group's channels), for
each channel: read its saved states h_t, recompute the decays a_t = exp(Δ_t A)
on the fly, and run the reverse recurrence

    g_t = C_t dy_t + a_{t+1} g_{t+1}        (g_{L-1} also gets dLoss/dh_last)

and accumulate du, dΔ, dA, dB, dC (formulas in :mod:`.scan_chunked`). B and C
are shared by the channels of a group and A by the batch, so their gradients go
to per-item partial buffers (no two parallel iterations write the same element)
and are summed in torch afterwards.

Threads: the kernels run on numba's pool with the library's CPU thread count and
are safe to call from several Python threads at once (:mod:`.threads`, whose
:func:`~.threads.launch` makes every call). The work split depends on the shapes
only, so results do not depend on the thread count.

Kernels are compiled by numba on first use and cached on disk (``cache=True``,
in ``__pycache__`` beside this file), so the compile cost is paid once per
machine (one compile per dtype: float32, and float64 when asked for). Arithmetic
is in the dtype of the inputs (``fastmath=False``: IEEE semantics, no
reassociation). Symbols: the glossary in :mod:`msvssm.ops`. The backend
registers as available only when numba imports.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .registry import ScanBackend, register_backend
from .scan_common import run_scan_core
from .threads import launch

try:
    import numba
    from numba import njit, prange

    _IMPORT_ERROR = ""
except Exception as exc:  # pragma: no cover - depends on the environment
    numba = None
    _IMPORT_ERROR = f"numba does not import: {type(exc).__name__}: {exc}"


if numba is not None:

    @njit(parallel=True, cache=True, fastmath=False, nogil=True)
    def _forward_kernel(u, delta, A, Bt, Ct, dg, y, last, hs, save_states):  # pragma: no cover - compiled
        """u, delta (b,d,l); A (d,n); Bt, Ct (b,g,l,n); writes y (b,d,l), last (b,d,n) and,
        if ``save_states``, every state h_t into hs (b,d,l,n) for the backward."""
        nb, nd, L = u.shape
        N = A.shape[1]
        for item in prange(nb * nd):
            bi = item // nd
            di = item % nd
            gi = di // dg
            h = np.zeros(N, u.dtype)
            for t in range(L):
                dt = delta[bi, di, t]
                x = dt * u[bi, di, t]
                acc = u.dtype.type(0.0)
                for k in range(N):
                    hk = np.exp(dt * A[di, k]) * h[k] + Bt[bi, gi, t, k] * x
                    h[k] = hk
                    acc += Ct[bi, gi, t, k] * hk
                    if save_states:
                        hs[bi, di, t, k] = hk
                y[bi, di, t] = acc
            for k in range(N):
                last[bi, di, k] = h[k]

    @njit(parallel=True, cache=True, fastmath=False, nogil=True)
    def _backward_kernel(u, delta, A, Bt, Ct, hs, dy, dlast, dg, cs,
                         du, ddelta, dA_part, dB_part, dC_part):  # pragma: no cover - compiled
        """Gradients of the core. Shapes: u, delta, dy, du, ddelta (b,d,l); A (d,n);
        Bt, Ct (b,g,l,n); hs (b,d,l,n), the states the forward saved; dlast (b,d,n);
        dA_part (b,d,n); dB_part, dC_part (b,g,nch,l,n), zero-filled, nch = ceil(dg / cs)
        chunks of cs channels."""
        nb, nd, L = u.shape
        N = A.shape[1]
        ng = nd // dg
        nch = dB_part.shape[2]
        for item in prange(nb * ng * nch):
            bi = item // (ng * nch)
            rest = item % (ng * nch)
            gi = rest // nch
            ci = rest % nch
            c0 = gi * dg + ci * cs
            c1 = min(c0 + cs, (gi + 1) * dg)
            gcar = np.empty(N, u.dtype)
            dacc = np.empty(N, u.dtype)
            for di in range(c0, c1):
                # Reverse pass.
                for k in range(N):
                    gcar[k] = dlast[bi, di, k]
                    dacc[k] = u.dtype.type(0.0)
                for t in range(L - 1, -1, -1):
                    dt = delta[bi, di, t]
                    ut = u[bi, di, t]
                    dyt = dy[bi, di, t]
                    dtu = dt * ut
                    sgb = u.dtype.type(0.0)  # Σ_n g B
                    sga = u.dtype.type(0.0)  # Σ_n A g a h_{t-1}
                    for k in range(N):
                        decay = np.exp(dt * A[di, k])  # the forward's exp(Δ_t A), recomputed
                        gk = Ct[bi, gi, t, k] * dyt + gcar[k]
                        dC_part[bi, gi, ci, t, k] += dyt * hs[bi, di, t, k]
                        dB_part[bi, gi, ci, t, k] += gk * dtu
                        sgb += gk * Bt[bi, gi, t, k]
                        if t > 0:
                            w = gk * decay * hs[bi, di, t - 1, k]
                            sga += w * A[di, k]
                            dacc[k] += w * dt
                        gcar[k] = gk * decay
                    du[bi, di, t] = sgb * dt
                    ddelta[bi, di, t] = sgb * ut + sga
                for k in range(N):
                    dA_part[bi, di, k] = dacc[k]


def _np(t: Tensor, dtype: torch.dtype) -> np.ndarray:
    """A C-contiguous numpy view (or copy) of a CPU tensor, in ``dtype``."""
    return t.detach().to(dtype).contiguous().numpy()


def _channels_per_item(b: int, g: int, dg: int) -> int:
    """Channels per backward work item: enough items to keep up to 16 threads busy.

    It depends on the shapes only, never on the thread count, so the order in which
    partial gradients are summed (and so the last bits of the result) is the same on
    every machine and in every run: training is bit-for-bit reproducible.
    """
    want_chunks = max(1, math.ceil(4 * 16 / max(1, b * g)))
    return max(1, math.ceil(dg / min(dg, want_chunks)))


class _NumbaScanFn(torch.autograd.Function):
    """Core: u, delta (b,d,l), A (d,n), B, C (b,g,n,l) -> y (b,d,l), h_last (b,d,n), one dtype.

    Autocast does not touch numba's arithmetic, so no autocast guard is needed here.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        b, d, l = u.shape
        g, n = B.shape[1], B.shape[2]
        dt = u.dtype
        y = torch.empty(b, d, l, dtype=dt)
        last = torch.empty(b, d, n, dtype=dt)
        Bt = B.transpose(2, 3)  # (b, g, l, n): the n values of one step side by side
        Ct = C.transpose(2, 3)
        # The backward reads the states instead of recomputing them (b*d*l*n floats: with
        # VMamba's n = 1 as many as y).
        save_states = any(ctx.needs_input_grad)
        hs = torch.empty((b, d, l, n) if save_states else (1, 1, 1, 1), dtype=dt)
        launch(_forward_kernel, _np(u, dt), _np(delta, dt), _np(A, dt), _np(Bt, dt), _np(Ct, dt), d // g,
               y.numpy(), last.numpy(), hs.numpy(), save_states)
        ctx.save_for_backward(u, delta, A, B, C, hs)
        return y, last

    @staticmethod
    def backward(ctx, dy, dlast):
        u, delta, A, B, C, hs = ctx.saved_tensors
        b, d, l = u.shape
        g, n = B.shape[1], B.shape[2]
        dg = d // g
        dt = u.dtype
        if dy is None:
            dy = torch.zeros(b, d, l, dtype=dt)
        if dlast is None:
            dlast = torch.zeros(b, d, n, dtype=dt)
        cs = _channels_per_item(b, g, dg)
        nch = math.ceil(dg / cs)
        du = torch.empty(b, d, l, dtype=dt)
        ddelta = torch.empty(b, d, l, dtype=dt)
        dA_part = torch.empty(b, d, n, dtype=dt)
        dB_part = torch.zeros(b, g, nch, l, n, dtype=dt)
        dC_part = torch.zeros(b, g, nch, l, n, dtype=dt)
        launch(
            _backward_kernel,
            _np(u, dt), _np(delta, dt), _np(A, dt), _np(B.transpose(2, 3), dt), _np(C.transpose(2, 3), dt),
            hs.numpy(), _np(dy, dt), _np(dlast, dt), dg, cs,
            du.numpy(), ddelta.numpy(), dA_part.numpy(), dB_part.numpy(), dC_part.numpy(),
        )
        dA = dA_part.sum(0)
        dB = dB_part.sum(2).transpose(2, 3)
        dC = dC_part.sum(2).transpose(2, 3)
        return du, ddelta, dA, dB, dC


def _core(u, delta, A, B, C):
    return _NumbaScanFn.apply(u, delta, A, B, C)


def selective_scan_numba(u: Tensor, *args, **kwargs):
    """Compiled CPU scan; same arguments and results as ``selective_scan_reference``.

    CPU tensors only. The last state is differentiable too.
    """
    if u.device.type != "cpu":
        raise RuntimeError(f"the numba scan backend runs on CPU tensors only, got {u.device}")
    return run_scan_core(_core, u, *args, **kwargs)


def warmup() -> float:
    """Compile (or load from the on-disk cache) both kernels; return the seconds it took."""
    import time

    t0 = time.perf_counter()
    x = torch.randn(1, 2, 3, requires_grad=True)
    y = selective_scan_numba(x, x.detach().abs(), -torch.ones(2, 1), torch.ones(1, 1, 1, 3), torch.ones(1, 1, 1, 3))
    y.sum().backward()
    return time.perf_counter() - t0


register_backend(
    ScanBackend("numba", selective_scan_numba, ("cpu",), lambda: numba is not None, lambda: _IMPORT_ERROR)
)

"""SS2D's whole scan step on the CPU in one autograd Function: cross-scan, Δ's bias and
softplus, the selective scan of all K directions, the skip D and the way back to the grid.

:func:`msvssm.ops.cross_selective_scan` calls this when the scan backend is
``numba``; its readable reference is the composition it replaces
(:func:`msvssm.ops.cross_selective_scan_reference`: ``cross_scan`` ->
``selective_scan`` -> ``cross_unscan``), and the tests check that the two agree,
forward and gradients, in float32 and float64.

Why: the composition copies every feature map several times per block (four scan
orders, flips, transposes, the stack back onto the grid, the float casts, softplus
and its backward, and all of their gradients), and on a CPU those copies cost more
than the recurrence (``msvssm_nano``, 64x64, batch 32: 83 ms of a 175 ms training
step were SS2D's scan step, 31 ms of it the recurrence). Here:

* every exp and log (softplus, its derivative, the decays exp(Δ A)) is computed once,
  in the forward, by numpy's SIMD ufuncs (:func:`_softplus_and_decay`);
* two numba kernels run the recurrence forward and backward over a channels-last
  grid, walking each direction's order by index arithmetic (nothing is copied into
  scan order), with the channel loop innermost so that it becomes SIMD code.

Layouts (all C-contiguous, channels last; p = row * width + col is the pixel)::

    u       (b, l, channels)          the SS2D features, shared by the K directions
    dts     (b, l, K, channels)       Δ before its bias and softplus, per direction
    A       (K, n, channels)
    Bs, Cs  (b, l, K, n)              one B_t, C_t per direction (VMamba: n = 1)
    D, delta_bias (K, channels)
    y       (b, l, K, channels)       direction k's output at pixel p
    saved for the backward: Δ and sigmoid(Δ_raw) (b, l, K, channels); the decays
    exp(Δ_t A) and states h_t (b, l, K, n, channels)

Step t of direction k visits pixel ``_pixel(k, t)`` (the orders of
:mod:`msvssm.ops.cross_scan`). Work items are (batch, direction) pairs, each one
sequential recurrence over its channels, so the result does not depend on the
number of threads: partial gradients (du per direction, dA and dD per batch item,
dB and dC per channel) are summed in torch afterwards, in a fixed order.

Softplus is torch's: Δ = log1p(exp(Δ_raw)), or Δ_raw above 20; its derivative
is sigmoid(Δ_raw), 1 above 20.

Threads: the library's CPU thread count (:mod:`.threads`) sizes both the numba
kernels' share of numba's pool and the numpy pool of :func:`_softplus_and_decay`;
the Function may be called from several Python threads at once (the kernels are
launched through :func:`.threads.launch`, the pool is grown under a lock).
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from .scan_common import compute_dtype
from .scan_numba import numba
from .threads import cpu_thread_count, launch

if numba is not None:
    from numba import njit, prange

    @njit(inline="always", cache=True)
    def _pixel(k, t, height, width):  # pragma: no cover - compiled
        """The pixel (row-major index) that step t of direction k reads."""
        L = height * width
        if k >= 2:  # directions 2 and 3 run 0 and 1 backwards
            t = L - 1 - t
        if k % 2 == 0:  # row-major
            return t
        return (t % height) * width + t // height  # column-major: t = col * height + row

    # Both kernels keep the channel loop innermost: it has no dependence from one channel to
    # the next, so LLVM turns it into SIMD instructions. Sums over channels (dB_t, dC_t) would
    # break that; the backward writes each channel's share and torch sums them afterwards.

    @njit(parallel=True, cache=True, fastmath=False, nogil=True)
    def _forward_kernel(u, delta, decays, Bs, Cs, D, height, width, y, hs):  # pragma: no cover - compiled
        """The recurrence h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, y_t = D u_t + <C_t, h_t> of every
        (batch, direction), with Δ (b,l,K,c) and exp(Δ A) (b,l,K,n,c) given. Writes y (b,l,K,c)
        and, when hs has l rows, every state h_t (b,l,K,n,c) for the backward."""
        nb, L, nc = u.shape
        K = delta.shape[2]
        N = decays.shape[3]
        save = hs.shape[1] == L
        for item in prange(nb * K):
            bi = item // K
            k = item % K
            h = np.zeros((N, nc), u.dtype)
            x = np.empty(nc, u.dtype)  # Δ_t u_t
            acc = np.empty(nc, u.dtype)  # y_t
            for t in range(L):
                p = _pixel(k, t, height, width)
                for c in range(nc):
                    x[c] = delta[bi, p, k, c] * u[bi, p, c]
                    acc[c] = D[k, c] * u[bi, p, c]
                for s in range(N):
                    b_ts = Bs[bi, p, k, s]
                    c_ts = Cs[bi, p, k, s]
                    for c in range(nc):
                        hk = decays[bi, p, k, s, c] * h[s, c] + b_ts * x[c]
                        h[s, c] = hk
                        acc[c] += c_ts * hk
                        if save:
                            hs[bi, p, k, s, c] = hk
                for c in range(nc):
                    y[bi, p, k, c] = acc[c]

    @njit(parallel=True, cache=True, fastmath=False, nogil=True)
    def _backward_kernel(u, A, Bs, Cs, D, delta, sig, decays, hs, dy, height, width,
                         du_part, ddts, dA_part, dB_part, dC_part, dD_part):  # pragma: no cover - compiled
        """Reverse recurrence g_t = C_t dy_t + exp(Δ_{t+1} A) g_{t+1} per (batch, direction).

        A (K,n,c); decays, hs (b,l,K,n,c); sig (b,l,K,c): sigmoid(Δ_raw), the derivative of
        softplus. Writes du_part (b,l,K,c): direction k's share of du; ddts (b,l,K,c):
        dLoss/dΔ_raw; dB_part, dC_part (b,l,K,n,c): each channel's share of dB_t, dC_t (summed
        over channels outside); and adds into dA_part (b,K,n,c) and dD_part (b,K,c), zero-filled,
        one row per batch item.
        """
        nb, L, nc = u.shape
        K = delta.shape[2]
        N = A.shape[1]
        zero = u.dtype.type(0.0)
        for item in prange(nb * K):
            bi = item // K
            k = item % K
            g = np.zeros((N, nc), u.dtype)  # dLoss/dh_t from step t+1 on, times its decay
            sgb = np.empty(nc, u.dtype)  # Σ_n g B
            sga = np.empty(nc, u.dtype)  # Σ_n A g exp(Δ A) h_{t-1}
            dtu = np.empty(nc, u.dtype)  # Δ_t u_t
            for t in range(L - 1, -1, -1):
                p = _pixel(k, t, height, width)
                prev = _pixel(k, t - 1, height, width) if t > 0 else p  # unused at t = 0
                for c in range(nc):
                    sgb[c] = zero
                    sga[c] = zero
                    dtu[c] = delta[bi, p, k, c] * u[bi, p, c]
                for s in range(N):
                    b_ts = Bs[bi, p, k, s]
                    c_ts = Cs[bi, p, k, s]
                    for c in range(nc):
                        dyt = dy[bi, p, k, c]
                        gk = c_ts * dyt + g[s, c]
                        dC_part[bi, p, k, s, c] = dyt * hs[bi, p, k, s, c]
                        dB_part[bi, p, k, s, c] = gk * dtu[c]
                        sgb[c] += gk * b_ts
                        g[s, c] = gk * decays[bi, p, k, s, c]  # carried to step t-1
                    if t > 0:  # the decay's gradient needs h_{t-1}; h_{-1} = 0
                        for c in range(nc):
                            w = g[s, c] * hs[bi, prev, k, s, c]  # g_t exp(Δ_t A) h_{t-1}
                            sga[c] += w * A[k, s, c]
                            dA_part[bi, k, s, c] += w * delta[bi, p, k, c]
                for c in range(nc):
                    dyt = dy[bi, p, k, c]
                    ut = u[bi, p, c]
                    du_part[bi, p, k, c] = sgb[c] * delta[bi, p, k, c] + D[k, c] * dyt
                    ddts[bi, p, k, c] = (sgb[c] * ut + sga[c]) * sig[bi, p, k, c]
                    dD_part[bi, k, c] += dyt * ut


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _softplus_and_decay_into(dts, delta_bias, A, delta, sig, decays) -> None:
    """:func:`_softplus_and_decay` on one slice of the batch, written into delta, sig and decays."""
    raw = np.add(dts, delta_bias)  # Δ_raw  (b, l, K, c)
    with np.errstate(over="ignore", invalid="ignore"):  # exp overflows only above 20, fixed below
        e = np.exp(raw, out=sig)
        np.log1p(e, out=delta)  # softplus
        one_plus_e = np.add(e, 1, out=decays.reshape(-1)[: e.size].reshape(e.shape))  # decays as scratch
        np.divide(e, one_plus_e, out=sig)  # sigmoid = e / (1 + e)
    if raw.size and raw.max() > 20:  # rare (Δ > 20): only then the two masked passes
        large = raw > 20
        np.copyto(delta, raw, where=large)
        np.copyto(sig, 1, where=large)
    np.multiply(delta[:, :, :, None, :], A, out=decays)
    np.exp(decays, out=decays)  # exp(Δ A)  (b, l, K, n, c)


_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _run_in_pool(workers: int, calls: list[tuple]) -> None:
    """Run ``fn(*args)`` for each ``(fn, *args)`` of ``calls`` in the module's numpy thread pool; wait for all.

    The pool has at least ``workers`` threads: a smaller one is replaced by a bigger one. Getting
    the pool and submitting happen under a lock, so two threads calling at once share one pool
    and nobody submits to a pool after it was replaced and shut down (work already submitted to
    it still runs to the end).
    """
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < workers:
            old = _POOL
            _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="msvssm-softplus"), workers
            if old is not None:
                old.shutdown(wait=False)
        jobs = [_POOL.submit(*call) for call in calls]
    for job in jobs:
        job.result()


def _softplus_and_decay(dts: np.ndarray, delta_bias: np.ndarray, A: np.ndarray):
    """Δ = softplus(Δ_raw), sigmoid(Δ_raw) (its derivative) and exp(Δ A), with Δ_raw = dts + delta_bias.

    dts (b,l,K,c), delta_bias (K,c), A (K,n,c) -> (b,l,K,c), (b,l,K,c), (b,l,K,n,c). These are
    the only exp/log of the scan. numpy's ufuncs compute them with SIMD instructions, 5x faster
    than numba's scalar calls, and release the GIL, so slices of the batch run in parallel
    threads (the CPU thread count of :mod:`.threads`; elementwise, so the result does not
    depend on it). Softplus is torch's: log1p(exp(x)), and x above 20 (where the sigmoid is 1).
    """
    b, l, K, c = dts.shape
    delta, sig = np.empty(dts.shape, dts.dtype), np.empty(dts.shape, dts.dtype)  # C order, whatever dts's strides
    decays = np.empty((b, l, K, A.shape[1], c), dts.dtype)
    workers = max(1, min(b, cpu_thread_count()))
    if workers == 1:
        _softplus_and_decay_into(dts, delta_bias, A, delta, sig, decays)
        return delta, sig, decays
    bounds = np.linspace(0, b, workers + 1).astype(int)
    _run_in_pool(workers, [(_softplus_and_decay_into, dts[i:j], delta_bias, A, delta[i:j], sig[i:j], decays[i:j])
                           for i, j in zip(bounds[:-1], bounds[1:])])
    return delta, sig, decays


class CrossSelectiveScanNumba(torch.autograd.Function):
    """(u (b,h,w,c), dts (b,h,w,K,c), A (K,n,c), Bs, Cs (b,h,w,K,n), D, delta_bias (K,c)) -> y (b,h,w,K,c).

    One dtype for all inputs (float32 or float64), CPU tensors.
    """

    @staticmethod
    def forward(ctx, u, dts, A, Bs, Cs, D, delta_bias):
        b, height, width, c = u.shape
        K, n, l = dts.shape[3], A.shape[1], height * width
        dtype = u.dtype
        save = any(ctx.needs_input_grad)
        # numpy reads dts in whatever strides it has (the dt_proj einsum leaves it direction-major):
        # the first pass of _softplus_and_decay writes contiguous arrays anyway.
        delta, sig, decays = _softplus_and_decay(dts.detach().reshape(b, l, K, c).numpy(), _np(delta_bias), _np(A))
        y = torch.empty(b, height, width, K, c, dtype=dtype)
        hs = torch.empty((b, l, K, n, c) if save else (0, 0, 0, 0, 0), dtype=dtype)  # states for the backward
        launch(_forward_kernel, _np(u.reshape(b, l, c)), delta, decays, _np(Bs.reshape(b, l, K, n)),
               _np(Cs.reshape(b, l, K, n)), _np(D), height, width, y.view(b, l, K, c).numpy(), hs.numpy())
        if save:
            ctx.save_for_backward(u, A, Bs, Cs, D, torch.from_numpy(delta), torch.from_numpy(sig),
                                  torch.from_numpy(decays), hs)
        return y

    @staticmethod
    def backward(ctx, dy):
        u, A, Bs, Cs, D, delta, sig, decays, hs = ctx.saved_tensors
        b, height, width, c = u.shape
        K, n, l = A.shape[0], A.shape[1], height * width
        dtype = u.dtype
        du_part = torch.empty(b, height, width, K, c, dtype=dtype)
        ddts = torch.empty(b, height, width, K, c, dtype=dtype)
        dA_part = torch.zeros(b, K, n, c, dtype=dtype)
        dB_part = torch.empty(b, height, width, K, n, c, dtype=dtype)
        dC_part = torch.empty(b, height, width, K, n, c, dtype=dtype)
        dD_part = torch.zeros(b, K, c, dtype=dtype)
        launch(
            _backward_kernel,
            _np(u.reshape(b, l, c)), _np(A), _np(Bs.reshape(b, l, K, n)), _np(Cs.reshape(b, l, K, n)), _np(D),
            delta.numpy(), sig.numpy(), decays.numpy(), hs.numpy(), _np(dy.reshape(b, l, K, c)), height, width,
            du_part.view(b, l, K, c).numpy(), ddts.view(b, l, K, c).numpy(), dA_part.numpy(),
            dB_part.view(b, l, K, n, c).numpy(), dC_part.view(b, l, K, n, c).numpy(), dD_part.numpy(),
        )
        du = du_part.sum(dim=3)  # (b, h, w, c): the K directions read the same u
        dBs, dCs = dB_part.sum(dim=-1), dC_part.sum(dim=-1)  # (b, h, w, K, n)
        return du, ddts, dA_part.sum(0), dBs, dCs, dD_part.sum(0), ddts.sum(dim=(0, 1, 2))


def cross_selective_scan_numba(u: Tensor, dts: Tensor, A: Tensor, Bs: Tensor, Cs: Tensor, D: Tensor,
                               delta_bias: Tensor) -> Tensor:
    """The fused CPU kernel in the layouts of :func:`msvssm.ops.cross_selective_scan` (see there)."""
    if numba is None:
        raise RuntimeError("the numba scan backend is not available: numba does not import")
    if u.device.type != "cpu":
        raise RuntimeError(f"the numba scan backend runs on CPU tensors only, got {u.device}")
    b, c, height, width = u.shape
    K = dts.shape[1]
    n = A.shape[1]
    dtype = compute_dtype(u, dts, A, Bs, Cs)
    y = CrossSelectiveScanNumba.apply(
        u.permute(0, 2, 3, 1).to(dtype),  # (b, h, w, c): free when u is channels-last in memory
        dts.permute(0, 3, 4, 1, 2).to(dtype),  # (b, h, w, K, c)
        A.reshape(K, c, n).transpose(1, 2).to(dtype),  # (K, n, c)
        Bs.permute(0, 3, 4, 1, 2).to(dtype),  # (b, h, w, K, n)
        Cs.permute(0, 3, 4, 1, 2).to(dtype),  # (b, h, w, K, n)
        D.reshape(K, c).to(dtype),  # (K, c)
        delta_bias.reshape(K, c).to(dtype),  # (K, c)
    )  # (b, h, w, K, c)
    return y.permute(0, 3, 4, 1, 2)  # (b, K, c, h, w): a view, channels-last in memory

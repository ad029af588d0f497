"""The ``chunked`` selective-scan backend: vectorised pure PyTorch, any device.

The recurrence ``h_t = a_t * h_{t-1} + b_t`` (a = decay = exp(Δ A), b = drive =
Δ B u) is a scan over pairs (a_t, b_t) with the associative combine

    (a1, b1) then (a2, b2)  ->  (a1 * a2, a2 * b1 + b2).

Time is split into chunks of ``chunk`` steps (the tail is padded with Δ = 0,
i.e. a = 1, b = 0, which changes nothing before it). Inside every chunk a
Hillis-Steele log-step scan runs on all chunks at once; then a short sequential
loop carries the state across chunks. Only products of decays in (0, 1] are
ever formed, so nothing overflows; underflow to 0 is the correct limit. (Forms
with ``exp(-cumsum)`` or divisions overflow at realistic Δ: not used here.)

Backward is written by hand. With g_t = dLoss/dh_t (through all later steps)::

    g_t = C_t dy_t + a_{t+1} g_{t+1}          (g_{l-1} also gets dLoss/dh_last)

which is the same scan run backwards in time. From g and the saved states::

    du_t     = Δ_t Σ_n g_t B_t
    dΔ_t     = u_t Σ_n g_t B_t + Σ_n A g_t a_t h_{t-1}
    dA       = Σ_{b,t} Δ_t g_t a_t h_{t-1}
    dB_t     = Σ_{channels of the group} g_t Δ_t u_t
    dC_t     = Σ_{channels of the group} dy_t h_t

``delta_bias``, softplus, ``D`` and ``z`` stay in autograd around the core
(:func:`~msvssm.ops.scan_common.run_scan_core`). Symbols: the glossary in
:mod:`msvssm.ops`. The core runs with autocast disabled, in the dtype it is
given (float32 or float64).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import ScanBackend, register_backend
from .scan_common import autocast_off, run_scan_core

DEFAULT_CHUNK = 32


def _pad_time(x: Tensor, length: int) -> Tensor:
    """Zero-pad the last (time) dimension to ``length``."""
    extra = length - x.shape[-1]
    return F.pad(x, (0, extra)) if extra else x


def scan_pairs_(a: Tensor, b: Tensor, chunk: int, reverse: bool = False) -> Tensor:
    """Solve ``h_t = a_t h_{t-1} + b_t`` (h_{-1} = 0) along the last dim, in place.

    ``reverse=True`` runs from the end: ``h_t = a_t h_{t+1} + b_t``. The length
    of the last dim must be a multiple of ``chunk``. Both ``a`` and ``b`` are
    overwritten (``a`` with running products of decays); ``b`` holds the states
    on return and is returned.
    """
    l = a.shape[-1]
    assert l % chunk == 0, (l, chunk)
    nc = l // chunk
    a = a.view(*a.shape[:-1], nc, chunk)
    hb = b.view(*b.shape[:-1], nc, chunk)
    # 1) Hillis-Steele inside every chunk: after the step with shift s, position t
    #    holds the combination of the (up to) 2s pairs ending (starting) at t.
    s = 1
    while s < chunk:
        if not reverse:
            new_b = torch.addcmul(hb[..., s:], a[..., s:], hb[..., :-s])
            new_a = a[..., s:] * a[..., :-s]
            hb[..., s:] = new_b
            a[..., s:] = new_a
        else:
            new_b = torch.addcmul(hb[..., :-s], a[..., :-s], hb[..., s:])
            new_a = a[..., :-s] * a[..., s:]
            hb[..., :-s] = new_b
            a[..., :-s] = new_a
        del new_a, new_b
        s *= 2
    if nc == 1:
        return b
    # 2) Carry the state across chunks (short sequential loop), then add it in.
    edge = 0 if reverse else chunk - 1
    a_edge = a[..., edge].unbind(-1)
    b_edge = hb[..., edge].unbind(-1)
    carries = [None] * nc
    h = torch.zeros_like(b_edge[0])
    order = range(nc - 1, -1, -1) if reverse else range(nc)
    for c in order:
        carries[c] = h
        h = torch.addcmul(b_edge[c], a_edge[c], h)
    carry = torch.stack(carries, dim=-1)  # (..., nc): state entering each chunk
    hb.addcmul_(a, carry.unsqueeze(-1))
    return b


def _padded_length(l: int, chunk: int) -> tuple[int, int]:
    """(padded length, chunk size actually used): never a chunk longer than the sequence."""
    chunk = max(1, min(int(chunk), l))
    return chunk * math.ceil(l / chunk), chunk


class _ChunkedScanFn(torch.autograd.Function):
    """Core: u, delta (b,d,l), A (d,n), B, C (b,g,n,l) -> y (b,d,l), h_last (b,d,n), one dtype."""

    @staticmethod
    @autocast_off
    def forward(ctx, u, delta, A, B, C, chunk):
        b, d, l = u.shape
        g, n = B.shape[1], B.shape[2]
        dg = d // g
        lp, chunk = _padded_length(l, chunk)
        delta_p = _pad_time(delta, lp)  # Δ = 0 on the pad: decay 1, drive 0
        u_p = _pad_time(u, lp)
        B_p = _pad_time(B, lp)
        a = torch.exp(delta_p[:, :, None, :] * A[None, :, :, None])  # (b, d, n, lp)
        du_p = (delta_p * u_p).view(b, g, dg, 1, lp)
        h = (du_p * B_p[:, :, None]).view(b, d, n, lp)  # drive Δ B u
        scan_pairs_(a, h, chunk)
        del a
        h5 = h.view(b, g, dg, n, lp)
        y = torch.einsum("bgcnl,bgnl->bgcl", h5[..., :l], C).reshape(b, d, l)
        last = h[..., l - 1].clone()
        ctx.save_for_backward(u, delta, A, B, C, h)
        ctx.chunk = chunk
        return y, last

    @staticmethod
    @autocast_off
    def backward(ctx, dy, dlast):
        u, delta, A, B, C, h = ctx.saved_tensors
        chunk = ctx.chunk
        b, d, l = u.shape
        g, n = B.shape[1], B.shape[2]
        dg = d // g
        lp = h.shape[-1]
        dy = dy.to(u.dtype)
        # Reverse scan for g: a'_t = a_{t+1} (1 past the end), b'_t = C_t dy_t (+ dlast at l-1).
        delta_next = _pad_time(delta[..., 1:], lp)
        dec_next = torch.exp(delta_next[:, :, None, :] * A[None, :, :, None])  # (b, d, n, lp): a_{t+1}
        dy_p = _pad_time(dy, lp).view(b, g, dg, 1, lp)
        gs = (dy_p * _pad_time(C, lp)[:, :, None]).view(b, d, n, lp)
        if dlast is not None:
            gs[..., l - 1] += dlast.to(u.dtype)
        scan_pairs_(dec_next.clone(), gs, chunk, reverse=True)
        gs = gs[..., :l]
        h = h[..., :l]
        g5 = gs.view(b, g, dg, n, l)
        gB = torch.einsum("bgcnl,bgnl->bgcl", g5, B).reshape(b, d, l)  # Σ_n g B
        du = delta * gB
        ddelta = u * gB
        # w_t = g_t a_t h_{t-1} for t >= 1 (h_{-1} = 0); a_t = dec_next[t-1].
        w = gs[..., 1:] * h[..., :-1]
        w.mul_(dec_next[..., : l - 1])
        del dec_next
        ddelta[..., 1:] += torch.einsum("bdnl,dn->bdl", w, A)
        dA = torch.einsum("bdnl,bdl->dn", w, delta[..., 1:])
        del w
        dB = torch.einsum("bgcnl,bgcl->bgnl", g5, (delta * u).view(b, g, dg, l))
        dC = torch.einsum("bgcnl,bgcl->bgnl", h.view(b, g, dg, n, l), dy.view(b, g, dg, l))
        return du, ddelta, dA, dB, dC, None


def _core(chunk: int):
    def core(u, delta, A, B, C):
        return _ChunkedScanFn.apply(u.contiguous(), delta.contiguous(), A.contiguous(),
                                    B.contiguous(), C.contiguous(), chunk)
    return core


def selective_scan_chunked(*args, chunk: int = DEFAULT_CHUNK, **kwargs):
    """Chunked log-step scan; same arguments and results as ``selective_scan_reference``.

    ``chunk`` is the length of the pieces scanned in parallel. The last state is
    differentiable too (its gradient enters the reverse scan).
    """
    return run_scan_core(_core(chunk), *args, **kwargs)


register_backend(
    ScanBackend("chunked", selective_scan_chunked, ("cpu", "cuda", "mps"), lambda: True, lambda: "")
)

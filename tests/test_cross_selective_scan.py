"""SS2D's scan step: the fused numba Function against the readable composition.

``cross_selective_scan`` with the numba backend runs one Function (numpy for the
exp/log, numba for the recurrences) instead of cross_scan -> selective_scan ->
cross_unscan. Both must give the same outputs and the same gradient for each of
the seven inputs: in float64 to rounding, in float32 within float32 tolerances,
and also through the whole SS2D module.
"""
from __future__ import annotations

import pytest
import torch

from msvssm.models.ss2d import SS2D
from msvssm.ops import (
    available_scan_backends,
    cross_scan,
    cross_scan_per_direction,
    cross_selective_scan,
    cross_selective_scan_reference,
    cross_unscan,
)

pytestmark = pytest.mark.skipif("numba" not in available_scan_backends("cpu"), reason="numba is not installed")

NAMES = ("u", "dts", "A", "Bs", "Cs", "D", "delta_bias")


def make_inputs(b, c, h, w, n, *, dtype=torch.float64, channels_last=True, seed=0, large_bias=False):
    """Random inputs in the shapes of ``cross_selective_scan``; every leaf requires grad."""
    gen = torch.Generator().manual_seed(seed)
    K = 4
    if channels_last:  # as SS2D passes u: (b, c, h, w) viewing channels-last memory
        u = torch.randn(b, h, w, c, generator=gen, dtype=dtype).permute(0, 3, 1, 2)
    else:
        u = torch.randn(b, c, h, w, generator=gen, dtype=dtype)
    bias = torch.randn(K * c, generator=gen, dtype=dtype) - 2.0
    if large_bias:  # Δ_raw > 20 in some channels: softplus is the identity there, its slope 1
        bias[::3] = 25.0
    x = [
        u,
        torch.randn(b, K, c, h, w, generator=gen, dtype=dtype),
        -(0.1 + torch.rand(K * c, n, generator=gen, dtype=dtype)),
        torch.randn(b, K, n, h, w, generator=gen, dtype=dtype),
        torch.randn(b, K, n, h, w, generator=gen, dtype=dtype),
        torch.randn(K * c, generator=gen, dtype=dtype),
        bias,
    ]
    return [t.detach().requires_grad_() for t in x]


def value_and_grads(fn, x, grad_out=None):
    y = fn(*x)
    if grad_out is None:
        grad_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    return y, torch.autograd.grad(y, x, grad_out), grad_out


def fused(*x):
    return cross_selective_scan(*x, backend="numba")


def composed(*x):
    return cross_selective_scan_reference(*x, backend="reference")


@pytest.mark.parametrize(
    "b,c,h,w,n",
    [(2, 3, 5, 7, 1), (1, 4, 4, 4, 1), (2, 2, 3, 2, 3), (1, 3, 1, 6, 2), (3, 5, 6, 1, 1), (1, 1, 1, 1, 1)],
)
@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_equals_composition_in_float64(b, c, h, w, n, channels_last):
    x = make_inputs(b, c, h, w, n, channels_last=channels_last, large_bias=True)
    y, grads, g = value_and_grads(fused, x)
    y_ref, grads_ref, _ = value_and_grads(composed, x, g)
    assert y.shape == (b, 4, c, h, w) and y.dtype == torch.float64
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for name, got, want in zip(NAMES, grads, grads_ref):
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=lambda m, name=name: f"d{name}: {m}")


def test_fused_equals_composition_in_float32_and_returns_float32():
    x = make_inputs(4, 16, 8, 6, 1, dtype=torch.float32)
    y, grads, g = value_and_grads(fused, x)
    y_ref, grads_ref, _ = value_and_grads(composed, x, g)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    for name, got, want in zip(NAMES, grads, grads_ref):
        rel = (got - want).norm() / want.norm()
        assert rel < 1e-5, (name, rel.item())


def test_fused_passes_gradcheck():
    x = make_inputs(1, 2, 3, 2, 2, large_bias=True)
    assert torch.autograd.gradcheck(fused, x, eps=1e-6, atol=1e-6)


def test_without_grad_the_same_output_is_computed():
    x = make_inputs(2, 3, 4, 5, 1)
    with torch.no_grad():
        y_eval = fused(*x)
    torch.testing.assert_close(y_eval, fused(*x).detach(), rtol=0, atol=0)


def test_fused_false_runs_the_composition_with_the_numba_backend():
    x = make_inputs(2, 3, 4, 4, 1, dtype=torch.float32)
    y_comp = cross_selective_scan(*x, backend="numba", fused=False)
    torch.testing.assert_close(y_comp, cross_selective_scan_reference(*x, backend="numba"), rtol=0, atol=0)
    torch.testing.assert_close(y_comp, fused(*x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "index,shape,name",
    [(1, (2, 4, 3, 4, 5), "dts"), (2, (11, 1), "A"), (3, (2, 4, 1, 5, 4), "Bs"), (6, (11,), "delta_bias")],
)
def test_wrong_shapes_name_the_argument(index, shape, name):
    x = make_inputs(2, 3, 4, 4, 1)
    x[index] = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=name):
        fused(*x)


def test_scan_per_direction_is_the_adjoint_of_unscan_and_matches_cross_scan():
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 4, 3, 5, 6, generator=gen, dtype=torch.float64)
    seqs = torch.randn(2, 4, 3, 30, generator=gen, dtype=torch.float64)
    lhs = (cross_scan_per_direction(maps) * seqs).sum()
    rhs = (maps * cross_unscan(seqs, 5, 6)).sum()
    torch.testing.assert_close(lhs, rhs)
    same = maps[:, :1].expand(2, 4, 3, 5, 6)  # one map for every direction: plain cross-scan
    torch.testing.assert_close(cross_scan_per_direction(same), cross_scan(maps[:, 0]))


def test_ss2d_fused_and_composed_agree_with_gradients():
    torch.manual_seed(0)
    fused_ss2d = SS2D(12, d_state=2, path_se=True, se_reduction=4, layer_scale=True, scan_backend="numba").double()
    composed_ss2d = SS2D(12, d_state=2, path_se=True, se_reduction=4, layer_scale=True, scan_backend="numba",
                         fused_scan=False).double()
    composed_ss2d.load_state_dict(fused_ss2d.state_dict())
    x = torch.randn(2, 5, 7, 12, dtype=torch.float64)
    out_f, out_c = fused_ss2d(x), composed_ss2d(x)
    torch.testing.assert_close(out_f, out_c, rtol=1e-10, atol=1e-12)
    out_f.square().sum().backward()
    out_c.square().sum().backward()
    params_c = dict(composed_ss2d.named_parameters())
    for name, p in fused_ss2d.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        torch.testing.assert_close(p.grad, params_c[name].grad, rtol=1e-8, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")

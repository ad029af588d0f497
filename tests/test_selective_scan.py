"""Every selective-scan backend against the readable reference loop.

Forward outputs, the last state and the gradients of every input must agree
with ``selective_scan_reference`` (float32 tolerances), for odd lengths, state
sizes 1 and 16, 1/2/4 groups, with and without each optional term, at extreme
step sizes, and for half-precision inputs. Also: the dispatcher's backend
selection (argument, environment variable, "auto" and its log line, errors).
"""
from __future__ import annotations

import logging
import math
import subprocess
import sys

import pytest
import torch

from msvssm.ops import registry
from msvssm.ops.registry import ENV_VAR, available_scan_backends, resolve_backend
from msvssm.ops.scan import selective_scan
from msvssm.ops.scan_reference import selective_scan_reference

CPU_FAST = [name for name in available_scan_backends("cpu") if name != "reference"]
ALL_NAMES = ("chunked", "numba", "cuda")

FWD_RTOL = FWD_ATOL = 1e-4
GRAD_REL = 2e-4  # ||grad - grad_ref|| <= GRAD_REL * ||grad_ref|| (+ a tiny floor)


def make_inputs(b, d, l, n, g, *, seed=0, delta_scale=0.5, a_range=(0.1, 2.0), dtype=torch.float32,
                device="cpu"):
    """Random scan inputs; A in -[a_range]; all leaves require grad."""
    gen = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=gen)

    lo, hi = a_range
    x = dict(
        u=r(b, d, l),
        delta=r(b, d, l) * delta_scale,
        A=-(lo + (hi - lo) * torch.rand(d, n, generator=gen)),
        B=r(b, g, n, l),
        C=r(b, g, n, l),
        D=r(d),
        z=r(b, d, l),
        delta_bias=r(d) * 0.5,
    )
    return {k: v.to(device=device, dtype=dtype).requires_grad_() for k, v in x.items()}


def run(fn, x, *, use_D=True, use_z=True, softplus=True, last=True, use_bias=True):
    return fn(
        x["u"], x["delta"], x["A"], x["B"], x["C"],
        x["D"] if use_D else None,
        x["z"] if use_z else None,
        x["delta_bias"] if use_bias else None,
        softplus,
        last,
    )


def loop_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False):
    """S6 straight from the recurrence, one channel at a time; no library code (the test's own truth).

    B and C: grouped (b, g, n, l), variable (b, n, l) or fixed (d, n), as in mamba-ssm's selective_scan_ref.
    """
    b, d, l = u.shape

    def at(X, c, t):  # B_t or C_t of channel c for every batch element: (b, n)
        return X[c].expand(b, -1) if X.dim() == 2 else X[:, :, t] if X.dim() == 3 else X[:, c // (d // X.shape[1]), :, t]

    ys, last = [], []
    for c in range(d):
        h, yc = torch.zeros(b, A.shape[1], dtype=u.dtype), []
        for t in range(l):
            dt = delta[:, c, t] + (0 if delta_bias is None else delta_bias[c])
            dt = torch.log1p(torch.exp(dt)) if delta_softplus else dt
            h = torch.exp(dt[:, None] * A[c]) * h + dt[:, None] * at(B, c, t) * u[:, c, t, None]
            y = (at(C, c, t) * h).sum(-1) + (0 if D is None else D[c] * u[:, c, t])
            yc.append(y if z is None else y * z[:, c, t] * torch.sigmoid(z[:, c, t]))
        ys.append(torch.stack(yc, -1))
        last.append(h)
    y = torch.stack(ys, 1)
    return (y, torch.stack(last, 1)) if return_last_state else y


def loss_and_grads(out, x, seed=1):
    """A random linear functional of y (and the last state) and its gradients."""
    gen = torch.Generator().manual_seed(seed)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum((o.float() * torch.randn(o.shape, generator=gen).to(o.device)).sum() for o in outs)
    names = list(x)
    grads = torch.autograd.grad(loss, [x[k] for k in names], allow_unused=True)
    return dict(zip(names, grads))


def backend_fn(name):
    return lambda *a: selective_scan(*a, backend=name)


def assert_grads_close(got, want, rel=GRAD_REL):
    for k, w in want.items():
        g = got[k]
        if w is None:
            assert g is None or g.abs().max() == 0, k
            continue
        assert g is not None, f"no gradient for {k}"
        assert g.dtype == w.dtype and g.shape == w.shape, k
        assert torch.isfinite(g).all(), f"non-finite gradient for {k}"
        err = (g.float() - w.float()).norm().item()
        scale = w.float().norm().item()
        assert err <= rel * scale + 1e-6, f"grad of {k}: |diff| {err:.3e} vs |ref| {scale:.3e}"


def compare(name, x, **opts):
    want = run(selective_scan_reference, x, **opts)
    got = run(backend_fn(name), x, **opts)
    if opts.get("last", True):
        assert isinstance(got, tuple) and len(got) == 2
        assert got[1].dtype == torch.float32
        torch.testing.assert_close(got[1], want[1], rtol=FWD_RTOL, atol=FWD_ATOL)
        y, y_ref = got[0], want[0]
    else:
        assert isinstance(got, torch.Tensor)
        y, y_ref = got, want
    assert y.dtype == y_ref.dtype and y.shape == y_ref.shape
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, rtol=FWD_RTOL, atol=FWD_ATOL)
    assert_grads_close(loss_and_grads(got, x), loss_and_grads(want, x))


SHAPES = [  # (b, d, l, n, g)
    (2, 4, 1, 1, 1),
    (1, 8, 7, 16, 2),
    (2, 8, 130, 16, 4),
    (2, 4, 130, 1, 1),
    (1, 8, 65, 4, 4),
]


@pytest.mark.parametrize("name", CPU_FAST)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}d{}l{}n{}g{}".format(*s))
def test_matches_reference_full(name, shape):
    compare(name, make_inputs(*shape))


OPTION_SETS = [
    dict(use_D=False, use_z=False, softplus=False, last=False, use_bias=False),
    dict(use_D=True, use_z=False, softplus=True, last=False, use_bias=True),
    dict(use_D=False, use_z=True, softplus=False, last=True, use_bias=True),
    dict(use_D=True, use_z=True, softplus=True, last=True, use_bias=False),
]


@pytest.mark.parametrize("name", CPU_FAST)
@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: "-".join(k for k, v in o.items() if v) or "bare")
def test_matches_reference_options(name, opts):
    x = make_inputs(2, 8, 37, 4, 2, seed=3)
    if not opts["softplus"]:
        with torch.no_grad():  # without softplus the step must be positive: use |delta|
            x["delta"].abs_()
    compare(name, x, **opts)


@pytest.mark.parametrize("name", CPU_FAST)
@pytest.mark.parametrize(
    "case",
    [
        dict(delta_scale=0.0, bias=50.0, a_range=(50.0, 500.0)),   # Δ ~ 50, A very negative: decays underflow to 0
        dict(delta_scale=20.0, bias=0.0, a_range=(0.1, 100.0)),    # Δ from ~0 to ~50
        dict(delta_scale=0.0, bias=-20.0, a_range=(0.01, 1.0)),   # tiny Δ (softplus(-20) ~ 2e-9): decays ~ 1
    ],
    ids=["huge", "wide", "tiny"],
)
def test_extreme_delta(name, case):
    x = make_inputs(2, 8, 130, 16, 4, seed=5, delta_scale=case["delta_scale"], a_range=case["a_range"])
    with torch.no_grad():
        x["delta_bias"].fill_(case["bias"])
    want = run(selective_scan_reference, x)
    got = run(backend_fn(name), x)
    for o in got:
        assert torch.isfinite(o).all()
    torch.testing.assert_close(got[0], want[0], rtol=FWD_RTOL, atol=FWD_ATOL)
    torch.testing.assert_close(got[1], want[1], rtol=FWD_RTOL, atol=FWD_ATOL)
    g_got, g_want = loss_and_grads(got, x), loss_and_grads(want, x)
    for k, g in g_got.items():
        assert torch.isfinite(g).all(), k
    assert_grads_close(g_got, g_want, rel=1e-3)


@pytest.mark.parametrize("name", ["reference"] + CPU_FAST)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_computed_in_fp32(name, dtype):
    x = make_inputs(2, 4, 20, 4, 2, seed=7, dtype=dtype)
    got = run(backend_fn(name), x)
    assert got[0].dtype == dtype and got[1].dtype == torch.float32
    x64 = {k: v.detach().double() for k, v in x.items()}  # the same values, upcast
    want = [o.float() for o in run(loop_scan, x64)]
    # Computed in fp32: the only error left is the final rounding of y to the half dtype.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(got[0].float(), want[0], rtol=eps, atol=1e-3)
    torch.testing.assert_close(got[1], want[1], rtol=FWD_RTOL, atol=FWD_ATOL)
    g = loss_and_grads(got, x)
    for k, v in g.items():
        assert v.dtype == dtype and torch.isfinite(v.float()).all(), k


@pytest.mark.parametrize("name", CPU_FAST)
def test_non_contiguous_inputs(name):
    x = make_inputs(2, 8, 33, 4, 2, seed=9)
    # Views with odd strides: transposed copies viewed back.
    y = {k: v.detach().clone() for k, v in x.items()}
    y["u"] = x["u"].detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    y["B"] = x["B"].detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
    y = {k: (v if v.requires_grad else v.requires_grad_()) for k, v in y.items()}
    assert not y["u"].is_contiguous() and not y["B"].is_contiguous()
    compare(name, y)


def test_reference_single_step_closed_form():
    """L = 1: y = Σ_n C Δ B u + D u, by hand (guards the reference itself)."""
    x = make_inputs(2, 4, 1, 3, 2, seed=11)
    with torch.no_grad():
        delta = torch.nn.functional.softplus(x["delta"] + x["delta_bias"][None, :, None])
        Bx = x["B"].repeat_interleave(2, dim=1)
        Cx = x["C"].repeat_interleave(2, dim=1)
        h = delta[:, :, None, :] * Bx * x["u"][:, :, None, :]
        y = (h * Cx).sum(2) + x["D"][None, :, None] * x["u"]
        y = y * torch.nn.functional.silu(x["z"])
        got, last = run(selective_scan_reference, x)
    torch.testing.assert_close(got, y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last, h[..., 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CPU_FAST)
def test_comparison_catches_missing_terms(name):
    """The checks above can fail: dropping D, or perturbing A, is detected."""
    x = make_inputs(2, 8, 20, 4, 2, seed=13)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(
            run(backend_fn(name), x, use_D=False)[0], run(selective_scan_reference, x)[0],
            rtol=FWD_RTOL, atol=FWD_ATOL,
        )
    want = loss_and_grads(run(selective_scan_reference, x), x)
    got = loss_and_grads(run(backend_fn(name), x), x)
    got["A"] = got["A"] * (1 + 1e-3)
    with pytest.raises(AssertionError):
        assert_grads_close(got, want)


def test_chunked_any_chunk_size():
    from msvssm.ops.scan_chunked import selective_scan_chunked

    x = make_inputs(1, 4, 130, 4, 2, seed=17)
    want = run(selective_scan_reference, x)
    g_want = loss_and_grads(want, x)
    for chunk in (1, 3, 16, 64, 1000):
        got = run(lambda *a: selective_scan_chunked(*a, chunk=chunk), x)
        torch.testing.assert_close(got[0], want[0], rtol=FWD_RTOL, atol=FWD_ATOL)
        assert_grads_close(loss_and_grads(got, x), g_want)


def test_numba_available_or_says_why():
    be = registry.get_backend("numba")
    try:
        import numba  # noqa: F401
    except Exception:
        assert not be.is_available() and be.why_unavailable()
    else:
        assert be.is_available() and be.why_unavailable() == ""
        assert "numba" in available_scan_backends("cpu")


# --- dispatcher -------------------------------------------------------------------------------


def test_all_backends_registered():
    for name in ALL_NAMES + ("reference",):
        assert registry.get_backend(name).name == name
    assert set(registry.backend_names()) >= set(ALL_NAMES) | {"reference"}
    assert "reference" in available_scan_backends("cpu")
    assert "chunked" in available_scan_backends("cpu")


def test_unknown_backend_raises(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    x = make_inputs(1, 2, 3, 1, 1)
    with pytest.raises(ValueError, match="unknown selective-scan backend 'nope'"):
        run(lambda *a: selective_scan(*a, backend="nope"), x)
    monkeypatch.setenv(ENV_VAR, "nope")
    with pytest.raises(ValueError, match=ENV_VAR):
        run(selective_scan, x)


def test_env_var_selects_and_argument_wins(monkeypatch):
    calls = []
    original = registry.get_backend("reference")

    def spy(*args):
        calls.append("reference")
        return original.fn(*args)

    x = make_inputs(1, 2, 3, 1, 1)
    with registry.temporary_backend(original._replace(fn=spy), replace=True):
        monkeypatch.setenv(ENV_VAR, "reference")
        assert resolve_backend(None, torch.device("cpu")) == "reference"
        run(selective_scan, x)
        assert calls == ["reference"]
        monkeypatch.setenv(ENV_VAR, "chunked")
        assert resolve_backend(None, torch.device("cpu")) == "chunked"
        run(selective_scan, x)
        assert calls == ["reference"]
        assert resolve_backend("reference", torch.device("cpu")) == "reference"
    assert registry.get_backend("reference") is original


def test_unavailable_backend_raises_with_reason(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    fake = registry.ScanBackend("fake", selective_scan_reference, ("cpu",), lambda: False, lambda: "fake is never here")
    x = make_inputs(1, 2, 3, 1, 1)
    with registry.temporary_backend(fake), pytest.raises(RuntimeError, match="fake is never here"):
        run(lambda *a: selective_scan(*a, backend="fake"), x)
    assert "fake" not in registry.backend_names()
    with pytest.raises(RuntimeError):  # cuda: either not available here, or not for CPU tensors
        run(lambda *a: selective_scan(*a, backend="cuda"), x)


def test_auto_picks_first_available_and_logs(monkeypatch, caplog):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(registry, "_logged_auto", set())
    expected = next(n for n in registry.AUTO_ORDER["cpu"] if n in available_scan_backends("cpu"))
    assert expected == ("numba" if "numba" in CPU_FAST else "chunked")
    with caplog.at_level(logging.INFO, logger="msvssm"):
        assert resolve_backend("auto", torch.device("cpu")) == expected
        assert resolve_backend(None, torch.device("cpu")) == expected
    msgs = [r.getMessage() for r in caplog.records if "auto" in r.getMessage()]
    assert len(msgs) == 1 and repr(expected) in msgs[0]  # logged once


def test_bad_shapes_raise():
    x = make_inputs(1, 6, 5, 2, 4)  # d = 6 not divisible by g = 4
    with pytest.raises(ValueError, match="divisible"):
        run(lambda *a: selective_scan(*a, backend="reference"), x)


# --- CUDA (mamba-ssm) --------------------------------------------------------------------------


def _cuda_skip_reason() -> str:
    be = registry.get_backend("cuda")
    return "" if be.is_available() else f"cuda scan backend unavailable: {be.why_unavailable()}"


@pytest.mark.skipif(bool(_cuda_skip_reason()), reason=_cuda_skip_reason() or "available")
@pytest.mark.parametrize("shape", [(2, 8, 130, 16, 4), (2, 4, 7, 1, 1)], ids=str)
def test_cuda_matches_reference(shape):
    x = make_inputs(*shape, seed=19, device="cuda")
    compare_opts = dict(last=False)  # mamba-ssm's last state carries no gradient
    want = run(selective_scan_reference, x, **compare_opts)
    got = run(backend_fn("cuda"), x, **compare_opts)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    assert_grads_close(loss_and_grads(got, x), loss_and_grads(want, x), rel=1e-3)
    y, last = run(backend_fn("cuda"), x, last=True)
    torch.testing.assert_close(last, run(selective_scan_reference, x, last=True)[1], rtol=1e-3, atol=1e-3)
    xh = make_inputs(*shape, seed=19, device="cuda", dtype=torch.bfloat16)
    assert run(backend_fn("cuda"), xh, last=False).dtype == torch.bfloat16


@pytest.mark.parametrize("name", CPU_FAST)
@pytest.mark.parametrize("l", [64, 50])
def test_plain_sum_loss(name, l):
    """``y.sum().backward()`` hands the core a broadcast (stride-0) gradient."""
    x = make_inputs(2, 4, l, 3, 2, seed=23)
    g_got = torch.autograd.grad(run(backend_fn(name), x, last=False).sum(), list(x.values()))
    g_want = torch.autograd.grad(run(selective_scan_reference, x, last=False).sum(), list(x.values()))
    assert_grads_close(dict(zip(x, g_got)), dict(zip(x, g_want)))


def test_notebook_check_helpers_report_agreement_and_time(monkeypatch):
    import time

    from msvssm.ops import check
    from msvssm.ops.check import compare_to_reference, random_scan_inputs, time_backends

    inputs = random_scan_inputs(b=1, d=4, l=20, n=2, g=2)
    table = compare_to_reference(available_scan_backends("cpu"), inputs)
    assert set(table) == set(CPU_FAST)  # the reference is not compared with itself
    for name, row in table.items():
        assert set(row) == {"max |y - ref|", *(f"max |d{k} - ref|" for k in ("u", "delta", "A", "B", "C", "D", "delta_bias"))}
        assert max(row.values()) < 1e-3, (name, row)

    # a wrong backend is reported: y off by exactly 0.25, hence every gradient of sum(y**2) off too
    def scan(backend, **kwargs):
        y = selective_scan(**kwargs, backend="reference")
        return y + 0.25 if backend == "off_by_a_quarter" else y

    monkeypatch.setattr(check, "selective_scan", scan)
    (row,) = compare_to_reference(["off_by_a_quarter"], inputs).values()
    assert row["max |y - ref|"] == pytest.approx(0.25, abs=1e-6)
    assert min(v for k, v in row.items() if k != "max |y - ref|") > 1e-3, row
    monkeypatch.undo()

    # time_backends times the backend it is given: in ms, best of the repeats, the warm-up call left out
    sleeps = {"slow": [0.3, 0.15, 0.02, 0.1], "fast": [0.3, 0.0, 0.0, 0.0]}  # the warm-up first
    calls = []

    def fake_run(name, given):
        assert given is inputs
        pause = sleeps[name][sum(c == name for c in calls)]
        if pause:
            time.sleep(pause)
        calls.append(name)

    monkeypatch.setattr(check, "run_with_grads", fake_run)
    times = time_backends(["slow", "fast"], inputs, repeats=3)
    assert list(times) == ["slow", "fast"] and calls == ["slow"] * 4 + ["fast"] * 4
    assert 20 <= times["slow"] < 80, times  # the 20 ms call: not the 300 ms warm-up, not the mean (90 ms)
    assert times["fast"] < 20, times
    monkeypatch.undo()

    real = time_backends(["reference"], inputs, repeats=1)
    assert list(real) == ["reference"] and 0 < real["reference"] < 10_000


# --- B and C in every form of mamba-ssm's selective_scan_fn, against the test's own loop ----------

FORMS = ("grouped", "variable", "fixed")


def bc_in_form(form, b, d, n, l, g, gen):
    shape = {"grouped": (b, g, n, l), "variable": (b, n, l), "fixed": (d, n)}[form]
    return torch.randn(*shape, generator=gen)


@pytest.mark.parametrize("name", ["reference"] + CPU_FAST)
@pytest.mark.parametrize("l", [5, 40])  # 40 crosses chunked's 32-step chunks
@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: "-".join(k for k, v in o.items() if v) or "bare")
@pytest.mark.parametrize("c_form", FORMS)
@pytest.mark.parametrize("b_form", FORMS)
def test_bc_forms_match_loop(name, l, opts, c_form, b_form):
    b, d, n, g = 2, 4, 3, 2
    gen = torch.Generator().manual_seed(29)
    x = make_inputs(b, d, l, n, g, seed=31)
    with torch.no_grad():
        x["B"] = bc_in_form(b_form, b, d, n, l, g, gen).requires_grad_()
        x["C"] = bc_in_form(c_form, b, d, n, l, g, gen).requires_grad_()
        if not opts["softplus"]:
            x["delta"].abs_()
    got = run(backend_fn(name), x, **opts)
    x64 = {k: v.detach().double().requires_grad_() for k, v in x.items()}
    want = run(loop_scan, x64, **opts)
    outs = [got] if isinstance(got, torch.Tensor) else list(got)
    wants = [want] if isinstance(want, torch.Tensor) else list(want)
    assert len(outs) == len(wants) == (2 if opts["last"] else 1)
    for o, w in zip(outs, wants):
        torch.testing.assert_close(o.double(), w, rtol=FWD_RTOL, atol=FWD_ATOL)
    g_want = {k: (None if v is None else v.float()) for k, v in loss_and_grads(want, x64).items()}
    g_got = loss_and_grads(got, x)
    assert g_got["B"].shape == x["B"].shape and g_got["C"].shape == x["C"].shape  # (d, n) when fixed
    assert_grads_close(g_got, g_want)


def test_bad_bc_forms_raise():
    x = make_inputs(1, 4, 5, 2, 1)
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(x["u"], x["delta"], x["A"], torch.zeros(1, 2, 6), x["C"], backend="reference")
    with pytest.raises(ValueError, match="complex"):
        selective_scan(x["u"], x["delta"], x["A"], torch.zeros(4, 2, dtype=torch.cfloat), x["C"], backend="reference")


# --- autocast, float64, closed form ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["reference"] + CPU_FAST)
def test_autocast_does_not_lower_precision(name):
    """Under CPU bf16 autocast every backend still computes in float32, in forward and backward."""
    x = make_inputs(2, 8, 40, 8, 2, seed=37)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = run(backend_fn(name), x)
        g_got = loss_and_grads(got, x)
    assert got[0].dtype == torch.float32
    x64 = {k: v.detach().double().requires_grad_() for k, v in x.items()}
    want = run(loop_scan, x64)
    for o, w in zip(got, want):
        torch.testing.assert_close(o.double(), w, rtol=FWD_RTOL, atol=FWD_ATOL)
    assert_grads_close(g_got, {k: v.float() for k, v in loss_and_grads(want, x64).items()})


@pytest.mark.parametrize("name", ["reference"] + CPU_FAST)
def test_float64_stays_float64(name):
    x = make_inputs(2, 4, 9, 3, 2, seed=41, dtype=torch.float64)
    y, last = run(backend_fn(name), x)
    assert y.dtype == last.dtype == torch.float64
    want = run(loop_scan, x)
    torch.testing.assert_close(y, want[0], rtol=1e-12, atol=1e-12)  # float32 compute would miss by ~1e-7
    torch.testing.assert_close(last, want[1], rtol=1e-12, atol=1e-12)
    for k, g in loss_and_grads((y, last), x).items():
        assert g.dtype == torch.float64, k


def test_gradcheck_reference_float64():
    x = make_inputs(1, 2, 4, 2, 1, seed=43, dtype=torch.float64)
    names = list(x)

    def f(*args):
        kw = dict(zip(names, args))
        return selective_scan_reference(kw["u"], kw["delta"], kw["A"], kw["B"], kw["C"], kw["D"], kw["z"],
                                        kw["delta_bias"], True, True)

    assert torch.autograd.gradcheck(f, tuple(x[k] for k in names))


def _core_functions():
    from msvssm.ops import scan_chunked

    cores = {"chunked": lambda u, dl, A, B, C: scan_chunked._ChunkedScanFn.apply(u, dl, A, B, C, 2)}
    if "numba" in CPU_FAST:
        from msvssm.ops import scan_numba

        cores["numba"] = scan_numba._NumbaScanFn.apply
    return cores


@pytest.mark.parametrize("core", sorted(_core_functions()))
def test_gradcheck_hand_written_backward_float64(core):
    """The hand-written backward of each core (chunk 2 for chunked: padding and carries), in float64."""
    x = make_inputs(1, 4, 5, 2, 2, seed=47, dtype=torch.float64)
    with torch.no_grad():
        x["delta"].abs_()
    args = tuple(x[k] for k in ("u", "delta", "A", "B", "C"))
    assert torch.autograd.gradcheck(_core_functions()[core], args)


@pytest.mark.parametrize("name", ["reference"] + CPU_FAST)
def test_impulse_response_closed_form(name):
    """u = impulse at t = 0, constant Δ, B, C, n = 1: y_t = Δ·B·C·exp(Δ·A·t)."""
    d, l = 2, 40
    dt, A, B, C = [0.3, 0.05], [-0.5, -2.0], [1.5, -0.7], [0.8, 2.0]
    u = torch.zeros(1, d, l, dtype=torch.float64)
    u[:, :, 0] = 1.0
    delta = torch.tensor(dt, dtype=torch.float64)[None, :, None].expand(1, d, l)
    col = lambda v: torch.tensor(v, dtype=torch.float64)[:, None]  # noqa: E731  (d, 1): fixed B, C
    y = selective_scan(u, delta, col(A), col(B), col(C), backend=name)
    want = torch.tensor([[dt[c] * B[c] * C[c] * math.exp(dt[c] * A[c] * t) for t in range(l)] for c in range(d)],
                        dtype=torch.float64)
    torch.testing.assert_close(y[0], want, rtol=1e-12, atol=1e-14)


# --- registry ----------------------------------------------------------------------------------


def test_registering_a_name_twice_is_an_error():
    be = registry.get_backend("reference")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_backend(be)
    with registry.temporary_backend(be._replace(name="tmp")):
        assert "tmp" in available_scan_backends("cpu")
        with pytest.raises(ValueError, match="already registered"):
            registry.register_backend(be._replace(name="tmp"))
    assert "tmp" not in registry.backend_names()


def test_registry_imports_no_backend():
    import ast

    tree = ast.parse(open(registry.__file__, encoding="utf-8").read())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if "scan" in m], imported


def test_backends_are_imported_lazily():
    code = (
        "import sys, torch, msvssm\n"
        "fast = {'msvssm.ops.scan_chunked', 'msvssm.ops.scan_numba', 'msvssm.ops.scan_cuda'}\n"
        "x = torch.ones(1, 2, 3)\n"
        "msvssm.selective_scan(x, x, -torch.ones(2, 1), torch.ones(1, 1, 3), torch.ones(2, 1), backend='reference')\n"
        "assert not fast & set(sys.modules), fast & set(sys.modules)\n"
        "msvssm.selective_scan(x, x, -torch.ones(2, 1), torch.ones(1, 1, 3), torch.ones(2, 1), backend='chunked')\n"
        "assert fast & set(sys.modules) == {'msvssm.ops.scan_chunked'}, fast & set(sys.modules)\n"
        "msvssm.available_scan_backends()\n"
        "assert fast <= set(sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]

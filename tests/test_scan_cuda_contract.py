"""The ``cuda`` scan backend against mamba-ssm's input contract, on a CPU without mamba-ssm.

``msvssm.ops.scan_cuda_contract.ContractScan`` stands in for mamba-ssm's kernel: it
refuses every input the kernel refuses (one real call per rule here) and computes the
rest with the reference. Through ``contract_cuda_backend`` every registered model with
a selective scan runs forward and backward on the ``cuda`` backend's real wrapper, in
float32 and under bf16 autocast, and must match the ``reference`` backend. Also: the
kernel probe behind ``scan_cuda.kernel_status`` (with a fake GPU) and the warning
``auto`` logs when a GPU falls back to ``chunked``.
"""
from __future__ import annotations

import importlib.util
import logging

import pytest
import torch

import msvssm
from msvssm.models import SS2D, build_model
from msvssm.ops import registry, scan_cuda
from msvssm.ops.registry import ENV_VAR, resolve_backend
from msvssm.ops.scan import selective_scan
from msvssm.ops.scan_cuda_contract import RULES, ContractError, ContractScan, contract_cuda_backend
from msvssm.ops.scan_reference import selective_scan_reference

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make(b=2, d=4, l=16, n=4, g=2, seed=0, grad=False):
    """Scan inputs in the form the kernel takes: float32, B/C grouped (b, g, n, l)."""
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen) * scale

    x = dict(u=r(b, d, l), delta=r(b, d, l, scale=0.5), A=-(0.1 + torch.rand(d, n, generator=gen)),
             B=r(b, g, n, l), C=r(b, g, n, l), D=r(d), z=r(b, d, l), delta_bias=r(d, scale=0.5))
    return {k: v.requires_grad_(grad) for k, v in x.items()}


def call(fn, x, softplus=True, last=False):
    return fn(*(x[k] for k in NAMES), softplus, last)


def _misaligned_rows(x):
    big = torch.randn(*x["u"].shape[:-1], x["u"].shape[-1] + 1)
    return {**x, "u": big[..., 1:]}  # unit last stride, rows 4 bytes past a 16-byte boundary


def _bf16(x, *names):
    return {**x, **{k: x[k].bfloat16() for k in names}}


# rule, case id, how to break the inputs (from make(**kwargs)), make kwargs, expected words
WRONG = [
    ("float64", "u-delta", lambda x: {**x, "u": x["u"].double(), "delta": x["delta"].double()}, {}, "u, delta"),
    ("float64", "D-only", lambda x: {**x, "D": x["D"].double()}, {}, "float64 tensors: D"),
    ("complex", "A", lambda x: {**x, "A": x["A"].to(torch.complex64)}, {}, "complex tensors: A"),
    ("input_dtype", "int-u", lambda x: {**x, "u": x["u"].int(), "delta": x["delta"].int()}, {}, "u is torch.int32"),
    ("weight_dtype", "bf16-A", lambda x: {**x, "A": x["A"].bfloat16()}, {}, "A is torch.bfloat16"),
    ("delta_dtype", "bf16-delta", lambda x: _bf16(x, "delta"), {}, "delta is torch.bfloat16 but u is torch.float32"),
    ("B_dtype", "variable", lambda x: _bf16(x, "B"), {}, "input-dependent"),
    ("B_dtype", "fixed-in-bf16", lambda x: {**_bf16(x, "u", "delta", "C", "z"), "B": torch.randn(4, 4).bfloat16()},
     {}, "fixed (dim 2): A's dtype"),
    ("C_dtype", "variable", lambda x: _bf16(x, "C"), {}, "C is torch.bfloat16"),
    ("D_dtype", "bf16", lambda x: _bf16(x, "D"), {}, "D is torch.bfloat16"),
    ("delta_bias_dtype", "bf16", lambda x: _bf16(x, "delta_bias"), {}, "delta_bias is torch.bfloat16"),
    ("z_dtype", "bf16", lambda x: _bf16(x, "z"), {}, "z is torch.bfloat16"),
    ("same_device", "D-on-meta", lambda x: {**x, "D": torch.empty(4, device="meta")}, {}, "D is on meta"),
    ("stride", "strided-delta_bias", lambda x: {**x, "delta_bias": torch.randn(8)[::2]}, {},
     "delta_bias.stride(-1) = 2"),
    ("dstate", "257", lambda x: x, dict(n=257, d=2, l=4, g=1), "n=257 > 256"),
    ("shape", "u-4dim", lambda x: {**x, "u": x["u"][None]}, {}, "u must be (b, d, l)"),
    ("shape", "delta", lambda x: {**x, "delta": x["delta"][:, :, :-1]}, {}, "delta must be"),
    ("shape", "A", lambda x: {**x, "A": x["A"][:-1]}, {}, "A must be (d, n)"),
    ("shape", "D", lambda x: {**x, "D": x["D"][:-1]}, {}, "D must be (4,)"),
    ("shape", "delta_bias", lambda x: {**x, "delta_bias": x["delta_bias"][None]}, {}, "delta_bias must be (4,)"),
    ("shape", "z", lambda x: {**x, "z": x["z"][:1]}, {}, "z must be (2, 4, 16)"),
    ("B_shape", "5dim", lambda x: {**x, "B": x["B"][:, :, None]}, {}, "after the wrapper's 3-dim unsqueeze"),
    ("B_shape", "3dim-wrong-l", lambda x: {**x, "B": x["B"][:, 0, :, :-1]}, {}, "got (2, 1, 4, 15)"),
    ("B_shape", "fixed-wrong", lambda x: {**x, "B": torch.randn(4, 3)}, {}, "fixed B must be (d, n)"),
    ("C_shape", "wrong-n", lambda x: {**x, "C": x["C"][:, :, :-1]}, {}, "input-dependent C"),
    ("C_groups", "2-vs-4", lambda x: {**x, "C": torch.randn(2, 4, 4, 16)}, {}, "C has 4 groups"),
    ("C_groups", "B-fixed", lambda x: {**x, "B": torch.randn(4, 4)}, {}, "B is fixed, so 1"),
    ("groups", "6-by-4", lambda x: x, dict(d=6, g=4), "d=6 channels are not divisible by the 4 groups"),
    ("empty", "b0", lambda x: x, dict(b=0), "every size must be >= 1"),
    ("alignment", "view-mid-row", _misaligned_rows, dict(l=128), "u's rows do not all start 16-byte aligned"),
]


@pytest.mark.parametrize("rule, _id, breaker, kwargs, words", WRONG, ids=[f"{w[0]}-{w[1]}" for w in WRONG])
def test_stand_in_refuses_what_the_kernel_refuses(rule, _id, breaker, kwargs, words):
    kernel = ContractScan(("cpu", "meta"))
    x = breaker(make(**kwargs))
    with pytest.raises(ContractError) as err:
        call(kernel, x)
    assert err.value.rule == rule
    assert words in str(err.value)
    assert RULES[rule] in str(err.value)  # and says where the rule comes from
    assert kernel.rejected == [rule] and kernel.accepted == 0


def test_stand_in_refuses_autocast_inside_the_call():
    kernel = ContractScan()
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(ContractError, match="autocast is enabled"):
        call(kernel, make())


def test_stand_in_refuses_tensors_off_its_devices():
    with pytest.raises(ContractError, match=r"\[device\]: u is on cpu; the kernel takes cuda tensors"):
        call(ContractScan(("cuda",)), make())


def _valid_cases():
    x = make(grad=True)
    yield "grouped", x
    yield "variable-3dim", {**x, "B": x["B"][:, 0].detach().requires_grad_(), "C": x["C"][:, 0].detach()}
    yield "fixed-B-variable-C", {**x, "B": torch.randn(4, 4), "C": x["C"][:, :1].detach()}
    yield "no-optionals", {**x, "D": None, "z": None, "delta_bias": None}
    yield "bf16-inputs", {**x, **{k: x[k].detach().bfloat16().requires_grad_() for k in ("u", "delta", "B", "C", "z")}}
    t = make(l=128, grad=True)
    yield "l128-transposed-u", {**t, "u": t["u"].detach().transpose(1, 2).contiguous().transpose(1, 2)}


@pytest.mark.parametrize("case", [c for c, _ in _valid_cases()])
def test_stand_in_accepts_the_contract_and_returns_what_the_kernel_returns(case):
    x = dict(_valid_cases())[case]
    kernel = ContractScan()
    y, last = call(kernel, x, last=True)
    y_ref, last_ref = call(selective_scan_reference, x, last=True)
    assert kernel.accepted == 1 and not kernel.rejected
    assert y.dtype == x["u"].dtype and last.dtype == torch.float32  # out: empty_like(delta); x in A's dtype
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(last, last_ref)
    leaves = [x[k] for k in NAMES if x[k] is not None and x[k].requires_grad]
    grads = torch.autograd.grad((y.float() ** 2).sum() + last.sum(), leaves)  # the last state adds nothing
    grads_ref = torch.autograd.grad((y_ref.float() ** 2).sum(), leaves)
    assert kernel.backward_calls == 1
    for g, g_ref, leaf in zip(grads, grads_ref, leaves):
        assert g.dtype == leaf.dtype and g.shape == leaf.shape
        torch.testing.assert_close(g, g_ref)


# --- the backend's wrapper through the stand-in --------------------------------------------------


@pytest.mark.parametrize("case", ["strided-delta_bias", "misaligned-u-l128", "fixed-B-grouped-C", "bf16",
                                  "variable-B-grouped-C", "float64-D"])
def test_cuda_wrapper_hands_the_kernel_only_valid_inputs(case):
    x = make(l=128 if "l128" in case else 16)
    if case == "strided-delta_bias":
        x["delta_bias"] = torch.randn(8)[::2]
    elif case == "misaligned-u-l128":
        x = _misaligned_rows(x)
    elif case == "fixed-B-grouped-C":
        x["B"] = torch.randn(4, 4)
    elif case == "variable-B-grouped-C":
        x["B"] = x["B"][:, 0]
    elif case == "bf16":
        x = _bf16(x, "u", "delta", "B", "C", "z", "D")
    elif case == "float64-D":  # computed in float32 by every backend (only u, delta, A, B, C choose float64)
        x["D"] = x["D"].double()
    with contract_cuda_backend() as kernel:
        y = call(lambda *a: selective_scan(*a, backend="cuda"), x)
    assert kernel.accepted == 1, kernel.rejected
    assert y.dtype == x["u"].dtype
    torch.testing.assert_close(y, call(selective_scan_reference, x), rtol=1e-4, atol=1e-5)
    assert all(dtype == torch.float32 for dtype, _ in filter(None, kernel.seen[0].values()))


def test_cuda_wrapper_refuses_what_the_kernel_cannot_do_before_calling_it():
    with contract_cuda_backend() as kernel:
        with pytest.raises(RuntimeError, match="no float64 kernel"):
            call(lambda *a: selective_scan(*a, backend="cuda"), {k: v.double() for k, v in make().items()})
        with pytest.raises(RuntimeError, match="n <= 256; got n=257.*chunked"):
            call(lambda *a: selective_scan(*a, backend="cuda"), make(n=257, d=2, l=4, g=1))
    assert kernel.calls == 0


def test_contract_backend_restores_everything():
    before = registry.get_backend("cuda")
    fn, probes = scan_cuda._mamba_scan_fn, dict(scan_cuda._PROBES)
    with contract_cuda_backend():
        assert registry.get_backend("cuda").devices == ("cpu",)
        assert isinstance(scan_cuda._mamba_scan_fn, ContractScan)
    assert registry.get_backend("cuda") is before
    assert scan_cuda._mamba_scan_fn is fn and scan_cuda._PROBES == probes


# --- every model, on the cuda backend's wrapper ----------------------------------------------------

def _model(name):
    """The model on the ``reference`` backend, or None when it has no selective scan."""
    torch.manual_seed(0)
    try:
        model = build_model(name, num_classes=4, drop_path_rate=0.0, scan_backend="reference")
    except TypeError as err:  # the baselines take no scan_backend
        if "scan_backend" not in str(err):
            raise
        return None
    return model if any(isinstance(m, SS2D) for m in model.modules()) else None


def _set_backend(model, name):
    for m in model.modules():
        if isinstance(m, SS2D):
            m.scan_backend = name


def _forward_backward(model, x, backend, amp):
    model.zero_grad(set_to_none=True)
    _set_backend(model, backend)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    out.float().square().sum().backward()
    return out.detach().float()


@pytest.mark.parametrize("name", msvssm.list_models())
def test_every_model_runs_on_the_cuda_wrapper_like_the_reference(name):
    """Forward and parameter gradients on 32 px images, batch 2: float32 for every model, and bf16 autocast for the
    nano and tiny sizes (the wrapper's upcast is the same code at every size; bf16 is emulated on most CPUs, and the
    small and base models under it took 5 of CI's minutes)."""
    model = _model(name)
    if model is None:
        pytest.skip(f"{name} has no selective scan")
    n_scans = sum(isinstance(m, SS2D) for m in model.modules())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    modes = ((False, 1e-4), (True, 2e-2)) if name.endswith(("_nano", "_tiny")) else ((False, 1e-4),)
    for amp, tol in modes:
        out_ref = _forward_backward(model, x, "reference", amp)
        grads_ref = {k: p.grad for k, p in model.named_parameters()}
        with contract_cuda_backend() as kernel:
            out = _forward_backward(model, x, "cuda", amp)
        assert kernel.accepted == n_scans and kernel.backward_calls == n_scans and not kernel.rejected
        assert all(seen["u"][0] == torch.float32 for seen in kernel.seen)  # the wrapper's float32 upcast
        torch.testing.assert_close(out, out_ref, rtol=tol, atol=tol / 10)
        for k, p in model.named_parameters():
            assert (p.grad is None) == (grads_ref[k] is None), k
            if p.grad is not None:
                err = (p.grad.float() - grads_ref[k].float()).norm() / (grads_ref[k].float().norm() + 1e-12)
                assert err < tol, (name, "amp" if amp else "float32", k, err.item())
        del grads_ref


# --- availability: the kernel probe and kernel_status ----------------------------------------------


def test_kernel_status_here_says_unavailable_with_a_reason():
    status = scan_cuda.kernel_status()
    expected_keys = {"importable", "import_error", "version", "dist_version", "extension", "cuda_available", "device",
                     "device_name", "capability", "call_ok", "call_error", "max_abs_err", "available",
                     "why_unavailable"}
    assert expected_keys <= status.keys()
    if importlib.util.find_spec("mamba_ssm") is None:
        assert status["importable"] is False and status["version"] is None
        assert "mamba_ssm" in status["import_error"]
        assert status["call_ok"] is False and "not attempted" in status["call_error"]
        assert status["available"] is False and "README" in status["why_unavailable"]
        assert not registry.get_backend("cuda").is_available()
        assert status["why_unavailable"] == registry.get_backend("cuda").why_unavailable()
    elif not torch.cuda.is_available():
        assert status["call_ok"] is False and status["why_unavailable"].startswith("no CUDA device")
    else:
        assert status["available"] == status["call_ok"] == registry.get_backend("cuda").is_available()


@pytest.fixture
def fake_gpu(monkeypatch):
    """A "GPU" 0 whose probe inputs live on the CPU; the kernel is whatever the test sets."""
    monkeypatch.setattr(scan_cuda, "_PROBES", {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (12, 0))
    original = scan_cuda._probe_inputs
    monkeypatch.setattr(scan_cuda, "_probe_inputs", lambda device: original(torch.device("cpu")))

    def set_kernel(fn):
        monkeypatch.setattr(scan_cuda, "_mamba_scan_fn", fn)

    return set_kernel


def test_probe_reports_a_kernel_that_fails_on_this_gpu(fake_gpu):
    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    fake_gpu(broken)
    status = scan_cuda.kernel_status()
    assert status["importable"] and status["cuda_available"] and not status["call_ok"] and not status["available"]
    assert "no kernel image" in status["call_error"]
    why = registry.get_backend("cuda").why_unavailable()
    assert why == status["why_unavailable"]
    assert "imports but its kernel fails on Fake GPU (capability 12.0)" in why and "rebuild mamba-ssm" in why
    assert not registry.get_backend("cuda").is_available()
    assert len(calls) == 1  # probed once, then cached

    class FakeCudaTensor:  # only .device is read before the probe's answer refuses the call
        device = torch.device("cuda", 0)

    with pytest.raises(RuntimeError, match="kernel fails on Fake GPU"):  # a direct call names it too
        scan_cuda.selective_scan_cuda(FakeCudaTensor(), None, None, None, None)
    assert len(calls) == 1


def test_probe_reports_a_kernel_with_wrong_numbers(fake_gpu):
    fake_gpu(lambda *a: selective_scan_reference(*a) * 1.5)
    status = scan_cuda.kernel_status()
    assert not status["call_ok"] and "wrong result" in status["call_error"] and status["max_abs_err"] > 1e-2


def test_probe_accepts_a_kernel_that_keeps_the_contract(fake_gpu):
    kernel = ContractScan(("cpu",))
    fake_gpu(kernel)
    status = scan_cuda.kernel_status(0)
    assert status["call_ok"] and status["available"] and status["why_unavailable"] == ""
    assert status["max_abs_err"] < 1e-5 and kernel.accepted == 1 and kernel.backward_calls == 1
    assert registry.get_backend("cuda").is_available()


def test_probe_works_from_inference_mode(fake_gpu):
    fake_gpu(ContractScan(("cpu",)))
    with torch.inference_mode():
        assert scan_cuda.kernel_status()["call_ok"]


# --- "auto" on a GPU without the kernel: a warning, once ------------------------------------------


def _unavailable(name, why):
    be = registry.get_backend(name)
    return be._replace(is_available=lambda: False, why_unavailable=lambda: why)


def test_auto_on_a_gpu_without_the_kernel_warns_once_with_the_reason(monkeypatch, caplog):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(registry, "_logged_auto", set())
    monkeypatch.setattr(registry, "_warned_fallback", set())
    with registry.temporary_backend(_unavailable("cuda", "mamba_ssm does not import: fake reason"), replace=True), \
            caplog.at_level(logging.INFO, logger="msvssm"):
        assert resolve_backend("auto", torch.device("cuda")) == "chunked"  # no GPU needed: only the type is read
        assert resolve_backend(None, torch.device("cuda", 0)) == "chunked"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    msg = warnings[0].getMessage()
    assert "'chunked'" in msg and "fake reason" in msg
    assert 'pip install -e ".[gpu]" --no-build-isolation' in msg and "README, GPU section" in msg


def test_auto_on_a_cpu_without_numba_stays_info(monkeypatch, caplog):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(registry, "_logged_auto", set())
    monkeypatch.setattr(registry, "_warned_fallback", set())
    with registry.temporary_backend(_unavailable("numba", "no numba"), replace=True), \
            caplog.at_level(logging.INFO, logger="msvssm"):
        assert resolve_backend("auto", torch.device("cpu")) == "chunked"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r for r in caplog.records if r.levelno == logging.INFO and "'chunked'" in r.getMessage()]

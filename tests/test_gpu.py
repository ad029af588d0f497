"""Tests that need a working CUDA GPU (``pytest -m gpu``; ``make gpu-check`` runs them).

Skipped where torch sees no usable GPU, so `make test` stays the same on any machine. Each
compares the GPU path with the CPU reference the rest of the suite trusts:

* the scan backends that run on CUDA tensors (mamba-ssm's kernel ``cuda`` when installed, and
  ``chunked``) against the reference, in float32 and in bfloat16, forward and gradients;
* every model family's forward and backward on CUDA (with ``auto``'s backend) against the same
  weights on the CPU with the ``reference`` scan;
* one short training run with automatic mixed precision on the GPU, and the gpu profile's dry run;
* DDP with 2 processes over NCCL where 2 GPUs exist.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_selective_scan import assert_grads_close, backend_fn, loss_and_grads, make_inputs, run  # noqa: E402
from test_train import make_image_folder, tiny_config  # noqa: E402

from msvssm.ops import selective_scan_reference  # noqa: E402
from msvssm.ops.registry import available_scan_backends, resolve_backend  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a usable CUDA GPU")]

MODELS = ("vssm_nano", "msvssm_nano", "repvit_nano", "dilateformer_nano")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("gpu") / "data", participants=4, per_class=6)


def test_auto_picks_the_cuda_kernel_when_mamba_ssm_is_installed():
    """Where the gpu extra is installed, CUDA tensors must get mamba-ssm's kernel, not the fallback."""
    try:
        import mamba_ssm  # noqa: F401
    except Exception:  # noqa: BLE001
        pytest.skip("mamba-ssm not installed (the gpu extra)")
    assert resolve_backend("auto", torch.device("cuda")) == "cuda", available_scan_backends("cuda")


@pytest.mark.parametrize("name", ["cuda", "chunked"])
@pytest.mark.parametrize("shape", [(2, 8, 64, 16, 1), (2, 8, 300, 16, 4)])  # (b, d, l, n, groups)
def test_scan_backends_on_cuda_match_the_reference(name, shape):
    if name not in available_scan_backends("cuda"):
        pytest.skip(f"{name} does not run on CUDA here")
    x_cpu = make_inputs(*shape, seed=3, dtype=torch.float64)
    want = run(selective_scan_reference, x_cpu)
    x = {k: v.detach().float().cuda().requires_grad_() for k, v in x_cpu.items()}
    got = run(backend_fn(name), x)
    for g, w in zip(got, want):  # y and the last state
        torch.testing.assert_close(g.double().cpu(), w.detach(), rtol=1e-3, atol=1e-3)
    # gradients of y only: mamba-ssm's last state carries no gradient (its backward ignores it)
    want_y = run(selective_scan_reference, x_cpu, last=False)
    want_grads = loss_and_grads(want_y, x_cpu)
    got_y = run(backend_fn(name), x, last=False)
    grads = {k: (v.double().cpu() if v is not None else None) for k, v in loss_and_grads(got_y, x).items()}
    assert_grads_close(grads, want_grads, rel=2e-3)
    # bfloat16 inputs (as under autocast): the output keeps the input dtype and stays close
    xh = {k: v.detach().to(torch.bfloat16).cuda().requires_grad_() for k, v in x_cpu.items()}
    y = run(backend_fn(name), xh, last=False)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    err = (y.double().cpu() - want[0].detach()).norm() / want[0].detach().norm()
    assert err < 5e-2, float(err)


@pytest.fixture
def no_tf32():
    """cuDNN convolutions and matmuls default to TF32 (about 1e-3 relative error): compare in true float32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("model_name", MODELS)
def test_each_model_on_cuda_matches_the_cpu_reference(model_name, no_tf32):
    from msvssm.models import build_model

    kwargs_cpu = {"scan_backend": "reference"} if "vssm" in model_name else {}
    torch.manual_seed(0)
    cpu = build_model(model_name, num_classes=4, **kwargs_cpu).eval()
    torch.manual_seed(0)
    gpu = build_model(model_name, num_classes=4).eval()  # auto: the cuda kernel when installed
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    y_cpu, y_gpu = cpu(x), gpu(x.cuda())
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=2e-3, atol=2e-3)
    y_cpu.square().sum().backward()
    y_gpu.square().sum().backward()
    for (name, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters()):
        assert p_gpu.grad is not None and torch.isfinite(p_gpu.grad).all(), name
        err = (p_gpu.grad.cpu() - p_cpu.grad).norm()
        assert err <= 1e-2 * p_cpu.grad.norm() + 1e-5, f"{name}: {float(err):.3e}"


def test_a_short_training_run_with_mixed_precision_on_the_gpu(folder, tmp_path):
    from msvssm.train import train
    from msvssm.train.run import resolve_amp

    cfg = tiny_config(folder, tmp_path / "run", model="msvssm_nano", device="cuda", amp="auto", epochs=2)
    out = train(cfg, progress=False)
    record = json.loads((out / "record.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert record["device"].startswith("cuda")
    assert resolve_amp(cfg, torch.device("cuda")) in (torch.bfloat16, torch.float16)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["n"] > 0


def test_the_gpu_profile_dry_run_on_the_gpu(folder, capsys):
    """The paper-scale configuration as it will train (batch 64, 224 px, msvssm_tiny, autocast, EMA)."""
    from msvssm.train import TrainConfig
    from msvssm.train.dry_run import dry_run, format_report

    report = dry_run(TrainConfig.from_profile("gpu", data=str(folder)))
    print(format_report(report))
    assert report["checkpoint_round_trip"] and report["peak_gpu_memory_gb"] > 0
    assert report["amp"] in ("torch.bfloat16", "torch.float16")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_ddp_over_nccl_with_two_processes(folder, tmp_path):
    from test_distributed import train_with_torchrun

    cfg = tiny_config(folder, tmp_path / "two", device="cuda", batch_size=16, epochs=2)
    record = train_with_torchrun(cfg, tmp_path / "two.json", processes=2)
    assert record["world_size"] == 2 and record["batch_per_process"] == 8

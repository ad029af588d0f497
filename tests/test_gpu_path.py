"""The GPU path, proven on the CPU: what a GPU run does differently, exercised where CI can run it.

The dry run of the paper-scale configuration; automatic mixed precision that picks fp16 where
bf16 is only emulated; augmentation on the batch's device; scoring on a chosen device. (The
collectives under NCCL's device map are in test_distributed.py, the mamba-ssm call contract in
test_scan_cuda_contract.py, the tests that need a real GPU in test_gpu.py.)
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from msvssm.cli import main as cli_main
from msvssm.train import TrainConfig, train
from msvssm.train import data as data_module
from msvssm.train.run import RunError, resolve_amp

sys.path.insert(0, str(Path(__file__).parent))
from test_train import make_image_folder, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("gpu-path") / "data", participants=4, per_class=6)


# ----------------------------------------------------------------------------- the dry run


@pytest.mark.slow
def test_dry_run_of_the_gpu_profile_with_bf16_autocast_on_the_cpu(folder, tmp_path, monkeypatch, capsys):
    """The gpu profile's configuration (msvssm_tiny, the paper's augmentation, EMA, bf16 autocast) through
    ``msvssm train --dry-run``: two steps, one validation batch and a checkpoint round trip, on the CPU. At 64 px and
    batch 8: bf16 matmuls are emulated on most CPUs, and at 224 px this test took 8 minutes of CI's 2 cores; the 224-px
    shapes of the paper-scale run are test_make_reproduce_gpu_dry_run_on_the_cpu's (float32)."""
    monkeypatch.chdir(tmp_path)
    code = cli_main(["train", "--profile", "gpu", "--data", str(folder), "--dry-run", "--no-progress",
                     "--set", "device=cpu", "--set", "batch_size=8", "--set", "amp=bf16", "--set", "image_size=64"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "dry run of msvssm_tiny at 64 px on cpu" in out
    assert "checkpoint saved and restored: exactly" in out
    assert "amp torch.bfloat16, augment paper, EMA True" in out
    assert "a full run: 300 epochs" in out
    assert list(tmp_path.iterdir()) == [], "a dry run writes no run folder"


def test_dry_run_report_and_what_it_leaves_behind(folder, tmp_path):
    from msvssm.train.dry_run import dry_run

    cfg = tiny_config(folder, tmp_path / "never", ema=True, augment="paper", epochs=7)
    report = dry_run(cfg, steps=2)
    assert report["checkpoint_round_trip"] is True
    assert len(report["step_seconds"]) == 2 and report["train_img_s"] > 0
    assert report["amp"] == "float32" and report["peak_gpu_memory_gb"] is None  # CPU
    assert report["epochs"] == 7 and report["steps_per_epoch"] == report["training_images"] // cfg.batch_size
    assert report["scan_backend"] and report["scan_backend"][0] in ("numba", "chunked", "reference")
    assert not (tmp_path / "never").exists()


def test_dry_run_without_a_gpu_says_why_and_how_to_dry_run_on_the_cpu(folder, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU")
    code = cli_main(["train", "--profile", "gpu", "--data", str(folder), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "device=cuda" in err and "--set device=cpu" in err


def test_train_without_out_is_an_error_except_for_a_dry_run(folder, capsys):
    code = cli_main(["train", "--profile", "smoke", "--data", str(folder)])
    assert code == 2 and "--out is required" in capsys.readouterr().err


# ----------------------------------------------------------------------------- precision


def test_dspp_gradients_stay_finite_under_cpu_bf16_at_stage_one_of_224(monkeypatch):
    """torch's CPU bf16 convolution returns NaN weight gradients for DSPP's dilation-3 branch on
    channels-last strides at 56x56 (msvssm_tiny, 224 px); DSPP hands it NCHW strides under CPU autocast."""
    from msvssm.models.blocks import DSPP

    torch.manual_seed(0)
    dspp = DSPP(96, 0.25, True)
    x = torch.randn(2, 56, 56, 96)  # (b, h, w, dim) as the stage gives it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = dspp(x)
    y.float().sum().backward()
    bad = [n for n, p in dspp.named_parameters() if not torch.isfinite(p.grad).all()]
    assert bad == [], bad


def test_auto_precision_is_fp16_where_bf16_is_only_emulated(monkeypatch):
    """A V100 or T4 'supports' bf16 by emulation (slower than fp16); auto must pick fp16 there and bf16
    only where the GPU computes it natively."""
    cfg = TrainConfig.from_profile("gpu")
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_amp(cfg, cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_amp(cfg, cuda) == torch.bfloat16
    assert resolve_amp(cfg.replace(amp="fp16"), cuda) == torch.float16
    assert resolve_amp(cfg, torch.device("cpu")) is None


# ----------------------------------------------------------------------------- devices


def test_augmentation_runs_on_the_batch_device(monkeypatch):
    """The uint8 batch moves to the device first; flips, the affine resampling and the colour jitter run
    there (``meta`` stands in for a GPU: a tensor built on the CPU by mistake would fail to mix with it)."""
    from msvssm.train.data import AugmentParams, BatchIterator, InMemorySplit

    seen = []
    real = data_module.augment_batch
    monkeypatch.setattr(data_module, "augment_batch", lambda x, aug: seen.append(x.device) or real(x, aug))
    split = InMemorySplit(torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 4,
                          [f"{i}.png" for i in range(8)], ["p"] * 8)
    batches = BatchIterator(split, 4, train=True, augment=AugmentParams(), device="meta")
    images, labels = next(iter(batches))
    assert seen == [torch.device("meta")]
    assert images.device.type == labels.device.type == "meta" and images.shape == (4, 3, 32, 32)


def test_evaluate_takes_a_device(folder, tmp_path, capsys):
    run = train(tiny_config(folder, tmp_path / "run", epochs=1), progress=False)
    assert cli_main(["evaluate", str(run), "--split", "val", "--device", "cpu"]) == 0
    assert "scored on cpu" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert cli_main(["evaluate", str(run), "--device", "cuda"]) == 2
        assert "--device cpu" in capsys.readouterr().err


def test_model_costs_time_on_the_given_device():
    from msvssm.costs import model_costs
    from msvssm.models import build_model

    model = build_model("vssm_nano", num_classes=4)
    costs = model_costs({"vssm": model}, 32, batch=2, repeats=1, device="cpu")
    assert costs.loc["vssm", "infer_img_s"] > 0 and next(model.parameters()).device.type == "cpu"


def test_the_gpu_profile_scores_and_times_on_the_gpu():
    from msvssm.profiles import get_profile

    assert get_profile("gpu").device == "cuda"
    assert get_profile("cpu").device == get_profile("smoke").device == "cpu"


def test_run_error_is_what_a_missing_gpu_raises():
    from msvssm.train.run import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU")
    with pytest.raises(RunError, match="--set device=cpu"):
        resolve_device(TrainConfig.from_profile("gpu"))


# ----------------------------------------------------------------------------- the GPU environment


def _make_n(*args: str) -> str:
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["make", "-n", "-C", str(repo), "--no-print-directory", *args], capture_output=True,
                          text=True, timeout=60)
    return proc.stdout


def test_make_reproduce_gpu_runs_in_the_gpu_environment_never_the_cpu_venv():
    """PROFILE=gpu builds and uses .venv-gpu (the [gpu] extra, mamba-ssm) or the GPU_PYTHON given; a dry run
    on the CPU (DEVICE=cpu) stays in .venv."""
    plan = _make_n("reproduce", "PROFILE=gpu")
    assert '-e ".[gpu]"' in plan and "--no-build-isolation" in plan and "MAMBA_KEEP_CUDA_BUILD=TRUE" in plan
    assert plan.index("torch.cuda.is_available()") < plan.index('-e ".[gpu]"'), "no compile before the GPU check"
    assert ".venv-gpu/bin/python -m msvssm.reproduce --profile gpu" in plan
    assert ".venv/bin/python -m msvssm.reproduce" not in plan
    own = _make_n("reproduce", "PROFILE=gpu", "GPU_PYTHON=/opt/conda/envs/msvssm/bin/python", "DRY_RUN=1")
    assert "/opt/conda/envs/msvssm/bin/python -m msvssm.reproduce --profile gpu" in own and "--dry-run" in own
    assert ".venv-gpu/.installed" not in own.split("msvssm.reproduce")[-1]
    cpu = _make_n("reproduce", "PROFILE=gpu", "DRY_RUN=1", "DEVICE=cpu")
    assert ".venv/bin/python -m msvssm.reproduce --profile gpu" in cpu and "--dry-run --device cpu" in cpu


def test_reproduce_refuses_the_gpu_profile_without_a_working_gpu_environment(tmp_path, caplog):
    from msvssm import reproduce

    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU")
    assert reproduce.main(["--profile", "gpu", "--data", str(tmp_path / "data")]) == 1
    assert "needs a working GPU environment" in caplog.text and "--device cpu" in caplog.text
    assert not (tmp_path / "data").exists(), "nothing is prepared for a run that cannot start"


def test_the_gpu_environment_check_names_a_missing_kernel(monkeypatch):
    """On a GPU without mamba-ssm's kernel the gpu profile refuses (weeks on the chunked fallback are no
    accident) unless the backend was chosen on purpose."""
    from msvssm import reproduce
    from msvssm.ops.registry import ScanBackend, get_backend, temporary_backend

    real = get_backend("cuda")
    broken = ScanBackend("cuda", real.fn, real.devices, lambda: False, lambda: "mamba_ssm does not import (test)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("MSVSSM_SCAN_BACKEND", raising=False)
    with temporary_backend(broken, replace=True):  # also where the gpu extra is installed and works
        problem = reproduce.gpu_environment_problem()
        assert "cuda scan backend is not usable" in problem and "MSVSSM_SCAN_BACKEND=chunked" in problem
        assert "mamba_ssm does not import (test)" in problem
        monkeypatch.setenv("MSVSSM_SCAN_BACKEND", "chunked")
        assert reproduce.gpu_environment_problem() == ""


@pytest.mark.slow
def test_make_reproduce_gpu_dry_run_on_the_cpu(tmp_path, capsys):
    """What `make reproduce PROFILE=gpu DRY_RUN=1 DEVICE=cpu` runs: smoke-scale synthetic DEAP cropped at
    224 (its 15 training crops repeated to fill the batches), then the gpu configuration's dry run."""
    from msvssm import reproduce

    code = reproduce.main(["--profile", "gpu", "--dry-run", "--device", "cpu", "--set", "batch_size=8",
                           "--data", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "dry run of msvssm_tiny at 224 px on cpu" in out and "restored: exactly" in out
    assert (tmp_path / "data" / "faces-synth-smoke-224" / "manifest.csv").exists()
    assert not (tmp_path / "data" / "runs").exists() and not (Path("build") / "notebooks" / "x").exists()

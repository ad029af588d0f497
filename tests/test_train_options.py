"""Every training option a profile can turn on, run for real on the CPU: EMA, mixup/cutmix, the fp16
loss scaler, ``eval_every``, ``track_test``; killed and resumed with the gpu profile's options;
deterministic; and a run leaves its caller's random state alone."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import msvssm.train.run as run_module
from msvssm.train import train
from msvssm.train.checkpoint import load_checkpoint

from test_train import KILL_MID_EPOCH_2, make_image_folder, tiny_config

# The gpu profile's recipe, shrunk: EMA, the paper's augmentation, drop path, and mixup/cutmix on top.
GPU_OPTIONS = dict(ema=True, ema_decay=0.9, augment="paper", drop_path=0.2, mixup=0.2, cutmix=1.0)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("opts") / "data")


def history(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "history.csv")


def assert_same_run(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(history(a).drop(columns="seconds"), history(b).drop(columns="seconds"))
    ma, mb = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
    assert ma["confusion"] == mb["confusion"] and ma["weighted_f1"] == mb["weighted_f1"]
    la, lb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    for part in ("model", "ema"):
        if la[part] is None:
            assert lb[part] is None
            continue
        for key, value in la[part].items():
            assert torch.equal(value, lb[part][key]), (part, key)


# ----------------------------------------------------------------------------- each option


def test_ema_weights_are_validated_and_saved_as_best(images, tmp_path):
    """With EMA, best.pt holds the averaged weights (what was validated), not the raw ones."""
    out = train(tiny_config(images, tmp_path / "ema", epochs=2, eval_every=2, ema=True, ema_decay=0.9),
                progress=False)
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert best["epoch"] == 2  # eval_every=2: the only validated epoch
    for key, value in best["model"].items():
        assert torch.equal(value, last["ema"][key]), key
    differs = [k for k, v in best["model"].items() if v.is_floating_point() and not torch.equal(v, last["model"][k])]
    assert differs, "the EMA weights equal the raw weights: EMA did nothing"


def test_eval_every_validates_only_the_due_epochs_and_the_last(images, tmp_path):
    out = train(tiny_config(images, tmp_path / "every", epochs=3, eval_every=2), progress=False)
    h = history(out)
    assert h["val_weighted_f1"].isna().tolist() == [True, False, False]
    best = load_checkpoint(out / "best.pt")
    validated = h.dropna(subset=["val_weighted_f1"])
    assert best["epoch"] == int(validated.loc[validated["val_weighted_f1"].idxmax(), "epoch"])


def test_track_test_scores_the_test_split_each_epoch_without_selecting_on_it(images, tmp_path):
    out = train(tiny_config(images, tmp_path / "track", epochs=3, track_test=True), progress=False)
    h = history(out)
    assert h["test_accuracy"].notna().all()
    metrics = json.loads((out / "metrics.json").read_text())
    best_epoch = metrics["best_epoch"]
    assert best_epoch == int(h.loc[h["val_weighted_f1"].idxmax(), "epoch"])  # chosen on validation
    # the test pass at the selected epoch scored the same model as the final test evaluation
    assert h.loc[h["epoch"] == best_epoch, "test_accuracy"].item() == pytest.approx(metrics["accuracy"], abs=1e-6)
    plain = train(tiny_config(images, tmp_path / "plain", epochs=3), progress=False)
    assert history(plain)["test_accuracy"].isna().all()
    pd.testing.assert_frame_equal(  # tracking the test split changes nothing else
        h.drop(columns=["seconds", "test_accuracy", "test_weighted_f1"]),
        history(plain).drop(columns=["seconds", "test_accuracy", "test_weighted_f1"]))


def test_mixup_and_cutmix_feed_soft_targets_every_step(images, tmp_path, monkeypatch):
    seen = []
    real_build = run_module.build_mixup

    def spying_build(cfg, num_classes):
        mix = real_build(cfg, num_classes)

        def spy(x, y):
            out = mix(x, y)
            seen.append((tuple(out[1].shape), bool(mix.mixup_enabled), out[1].max().item()))
            return out
        return spy

    monkeypatch.setattr(run_module, "build_mixup", spying_build)
    # no label smoothing, so an unmixed target is one-hot (max 1.0) and a mixed one is not
    out = train(tiny_config(images, tmp_path / "mix", epochs=2, mixup=0.2, cutmix=1.0, label_smoothing=0.0),
                progress=False)
    steps = int(load_checkpoint(out / "last.pt")["step"])
    assert len(seen) == steps > 0
    assert all(shape == (8, 4) for shape, _, _ in seen)  # soft targets (b, classes)
    assert sum(top < 0.999 for _, _, top in seen) >= 2  # really mixed (unmixed: every target one-hot)
    assert np.isfinite(history(out)["train_loss"]).all()


def fp16_on_cpu(monkeypatch):
    """The fp16 path (autocast float16 + GradScaler) on the CPU, which torch supports; the config refuses
    amp=fp16 on a CPU for users (it is slow there), so the test asks for it below the config."""
    monkeypatch.setattr(run_module, "resolve_amp", lambda cfg, device: torch.float16)


def test_the_fp16_loss_scaler_runs_and_is_checkpointed(images, tmp_path, monkeypatch):
    fp16_on_cpu(monkeypatch)
    out = train(tiny_config(images, tmp_path / "fp16", epochs=2), progress=False)
    last = load_checkpoint(out / "last.pt")
    assert last["scaler"] is not None and last["scaler"]["scale"] > 0
    assert np.isfinite(history(out)["train_loss"]).all()


def test_the_fp16_scaler_skips_a_step_with_inf_gradients_and_lowers_the_scale():
    from msvssm.train.loop import train_one_epoch

    model = torch.nn.Linear(4, 2)
    model.weight.register_hook(lambda g: g * float("inf"))
    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    batches = [(torch.randn(3, 4), torch.tensor([0, 1, 0]))]
    train_one_epoch(model, batches, optimizer, torch.nn.CrossEntropyLoss(), epoch=0, step=0, scaler=scaler,
                    autocast=lambda: torch.autocast("cpu", dtype=torch.float16))
    assert torch.equal(model.weight, before)  # the step was skipped
    assert scaler.get_scale() == 512.0  # and the scale halved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_on_cuda_uses_the_scaler(images, tmp_path):
    out = train(tiny_config(images, tmp_path / "cuda", epochs=1, device="cuda", amp="fp16"), progress=False)
    assert load_checkpoint(out / "last.pt")["scaler"] is not None


# ----------------------------------------------------------------------------- determinism and isolation


def test_the_gpu_profiles_options_are_deterministic(images, tmp_path):
    a = train(tiny_config(images, tmp_path / "a", epochs=2, **GPU_OPTIONS), progress=False)
    b = train(tiny_config(images, tmp_path / "b", epochs=2, **GPU_OPTIONS), progress=False)
    assert_same_run(a, b)


def test_a_run_leaves_the_callers_random_state_alone(images, tmp_path):
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    a = train(tiny_config(images, tmp_path / "a", epochs=1, mixup=0.2), progress=False)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    torch.manual_seed(7)  # another caller state gives the same run
    np.random.seed(7)
    b = train(tiny_config(images, tmp_path / "b", epochs=1, mixup=0.2), progress=False)
    assert_same_run(a, b)


# ----------------------------------------------------------------------------- killed and resumed


@pytest.mark.slow
@pytest.mark.parametrize("options", ["gpu-profile", "fp16"])
def test_killed_and_resumed_with_the_options_equals_uninterrupted(tmp_path, monkeypatch, options):
    """A real SIGKILL inside epoch 2, then --resume: the gpu profile's options (EMA, paper augmentation,
    drop path, mixup/cutmix) or the fp16 scaler end exactly where an uninterrupted run ends."""
    data = make_image_folder(tmp_path / "data", participants=4, per_class=20)
    changes = GPU_OPTIONS if options == "gpu-profile" else {}
    if options == "fp16":
        fp16_on_cpu(monkeypatch)
    reference = train(tiny_config(data, tmp_path / "whole", epochs=3, **changes), progress=False)
    cfg = tiny_config(data, tmp_path / "killed", epochs=3, **changes)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    extra = ["--fp16"] if options == "fp16" else []
    proc = subprocess.run([sys.executable, "-c", KILL_MID_EPOCH_2, "train", "--config", str(cfg_path), "--data",
                           cfg.data, "--out", cfg.out, "--no-progress", *extra], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert len(history(Path(cfg.out))) == 1
    train(cfg, resume=True, progress=False)
    assert_same_run(reference, Path(cfg.out))
    if options == "fp16":
        assert load_checkpoint(Path(cfg.out) / "last.pt")["scaler"] == load_checkpoint(reference / "last.pt")["scaler"]

"""Training, evaluation, sweeps and checkpoints on a tiny image folder (seconds per run on 2 cores)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from msvssm.train import ConfigError, RunError, TrainConfig, evaluate_run, train
from msvssm.train.checkpoint import CheckpointError, load_checkpoint

CLASSES = ("HVHA", "HVLA", "LVHA", "LVLA")


def make_image_folder(root: Path, participants: int = 4, per_class: int = 6, size: int = 40, seed: int = 0) -> Path:
    """ROOT/<class>/pXX_iYY.png: each class a different bright quadrant plus noise, so a model can learn it."""
    from msvssm.data import make_quadrant_folder

    return make_quadrant_folder(root, participants, per_class, size, seed)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("faces") / "data")


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    # device="cpu": the tests that compare runs bit for bit must not move to a GPU where one exists
    base = dict(model="vssm_nano", data=str(data), out=str(out), image_size=32, batch_size=8, epochs=2,
                warmup_epochs=0.5, lr=2e-3, drop_path=0.0, device="cpu")
    return TrainConfig.from_profile("smoke", **{**base, **changes})


# ----------------------------------------------------------------------------- configuration


def test_config_rejects_unknown_keys_wrong_types_and_bad_values():
    with pytest.raises(ConfigError, match="unknown config key"):
        TrainConfig.from_profile("cpu", learning_rate=1e-3)
    with pytest.raises(ConfigError, match="'epochs' must be int"):
        TrainConfig(epochs="10")
    with pytest.raises(ConfigError, match="split='random'"):
        TrainConfig(split="random")
    with pytest.raises(ConfigError, match="multiple of 32"):
        TrainConfig(image_size=50)
    with pytest.raises(ConfigError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.5)


def test_config_accepts_folds_of_grouped_splits_only(images):
    from msvssm.train.run import split_file_for

    with pytest.raises(ConfigError, match="folds=1"):
        TrainConfig(split="subject", folds=1)
    with pytest.raises(ConfigError, match="split='frame'"):
        TrainConfig(split="frame", folds=3)
    with pytest.raises(ConfigError, match="fold=3 must be in 0..2"):
        TrainConfig(split="trial", folds=3, fold=3)
    with pytest.raises(ConfigError, match="fold=1 must be in 0..0"):
        TrainConfig(split="trial", fold=1)
    files = [split_file_for(TrainConfig(data=str(images), split="subject", folds=2, fold=f)) for f in (0, 1)]
    assert [f.name for f in files] == ["subject_k2_fold0_seed0.csv", "subject_k2_fold1_seed0.csv"]
    tested = [set(pd.read_csv(f).query("split == 'test'")["participant"]) for f in files]
    assert not tested[0] & tested[1] and len(tested[0] | tested[1]) == 4, "each of the 4 people tested once"


def test_set_assignments_are_parsed_to_the_field_types():
    cfg = TrainConfig.from_profile("cpu").with_overrides(
        ["lr=3e-3", "ema=true", "epochs=7", 'model_kwargs={"dspp": false}', "split=subject"])
    assert (cfg.lr, cfg.ema, cfg.epochs, cfg.model_kwargs, cfg.split) == (3e-3, True, 7, {"dspp": False}, "subject")
    with pytest.raises(ConfigError, match="not a valid int"):
        cfg.with_overrides(["epochs=ten"])
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        cfg.with_overrides(["nope=1"])
    with pytest.raises(ConfigError, match="key=value"):
        cfg.with_overrides(["lr"])


def test_config_roundtrips_through_json(tmp_path):
    cfg = TrainConfig.from_profile("gpu", data="d", out="o")
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert TrainConfig.load(tmp_path / "c.json") == cfg


# ----------------------------------------------------------------------------- a whole run


@pytest.fixture(scope="module")
def finished_run(images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "a"
    return train(tiny_config(images, out, epochs=3), progress=False)


def test_run_writes_everything_it_promises(finished_run):
    for name in ("config.json", "record.json", "history.csv", "last.pt", "best.pt", "metrics.json",
                 "confusion.png", "curves.png"):
        assert (finished_run / name).exists(), name
    history = pd.read_csv(finished_run / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert history[["train_loss", "val_loss", "val_accuracy", "val_weighted_f1"]].notna().all().all()
    record = json.loads((finished_run / "record.json").read_text())
    for key in ("config", "seed", "versions", "git_commit", "scan_backend", "device", "manifest_sha256", "synthetic"):
        assert key in record, key
    assert record["synthetic"] is None  # an ImageFolder: the run does not claim to know its source


def test_metrics_are_the_papers_and_match_the_confusion_counts(finished_run):
    from msvssm.evaluation import weighted_f1_by_hand

    m = json.loads((finished_run / "metrics.json").read_text())
    assert m["split"] == "test" and m["selected_on"] == "val weighted F1"
    counts = np.array(m["confusion"])
    assert counts.sum() == m["n"]
    assert m["accuracy"] == pytest.approx(np.trace(counts) / counts.sum())
    assert m["weighted_f1"] == pytest.approx(weighted_f1_by_hand(counts))
    rows = np.array(m["confusion_normalized"])
    present = counts.sum(1) > 0
    np.testing.assert_allclose(rows[present].sum(1), 1.0)


def test_it_learns_the_tiny_task(images, tmp_path):
    """Quadrant brightness is easy: a few epochs must beat chance (25 %) clearly on the held-out test side."""
    out = train(tiny_config(images, tmp_path / "learn", epochs=6, augment="none"), progress=False)
    m = json.loads((out / "metrics.json").read_text())
    assert m["accuracy"] >= 0.6, m["accuracy"]


def test_same_config_and_seed_give_identical_metrics(images, tmp_path, finished_run):
    again = train(tiny_config(images, tmp_path / "again", epochs=3), progress=False)
    a = json.loads((finished_run / "metrics.json").read_text())
    b = json.loads((again / "metrics.json").read_text())
    assert a["confusion"] == b["confusion"] and a["weighted_f1"] == b["weighted_f1"]
    ha, hb = pd.read_csv(finished_run / "history.csv"), pd.read_csv(again / "history.csv")
    pd.testing.assert_frame_equal(ha.drop(columns="seconds"), hb.drop(columns="seconds"))


def test_a_runs_thread_setting_reaches_torch_and_numba_and_does_not_outlive_it(images, tmp_path, monkeypatch):
    import numba

    import msvssm.train.run as run_module
    from msvssm.ops.threads import cpu_thread_count

    before = torch.get_num_threads(), numba.get_num_threads(), cpu_thread_count()
    wanted = 1 if before[0] != 1 else 2
    seen = []
    real_epoch = run_module.train_one_epoch

    def spying_epoch(*args, **kwargs):
        seen.append((torch.get_num_threads(), cpu_thread_count()))
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_one_epoch", spying_epoch)
    out = train(tiny_config(images, tmp_path / "threads", epochs=1, threads=wanted), progress=False)
    assert seen == [(wanted, wanted)]
    assert json.loads((out / "record.json").read_text())["threads"]["numba"] == wanted
    assert (torch.get_num_threads(), numba.get_num_threads(), cpu_thread_count()) == before


def test_another_seed_gives_other_weights(images, tmp_path, finished_run):
    other = train(tiny_config(images, tmp_path / "seed1", epochs=3, seed=1), progress=False)
    a = load_checkpoint(finished_run / "last.pt")["model"]
    b = load_checkpoint(other / "last.pt")["model"]
    assert not torch.equal(a["head.weight"], b["head.weight"])


# The child process trains through the real CLI; a wrapper around the run's epoch loop SIGKILLs
# the process itself after the second batch of epoch 2, so the kill lands mid-epoch on any machine
# speed (waiting a measured time instead was flaky on a loaded CI runner).
# With --fp16 the child trains with float16 autocast and the loss scaler on the CPU (see test_train_options).
KILL_MID_EPOCH_2 = """
import os, signal, sys
import torch
import msvssm.train.run as run
from msvssm.cli import main

if "--fp16" in sys.argv:
    sys.argv.remove("--fp16")
    run.resolve_amp = lambda cfg, device: torch.float16
real_train_one_epoch = run.train_one_epoch

def killing_batches(batches):
    for i, batch in enumerate(batches):
        if i == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        yield batch

def train_one_epoch(model, batches, *args, epoch, **kwargs):
    if epoch == 1:  # zero-based: the second epoch
        batches = killing_batches(batches)
    return real_train_one_epoch(model, batches, *args, epoch=epoch, **kwargs)

run.train_one_epoch = train_one_epoch
sys.exit(main(sys.argv[1:]))
"""


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tmp_path):
    """SIGKILL inside epoch 2 (a real kill of a real process), then --resume: exactly the uninterrupted metrics."""
    data = make_image_folder(tmp_path / "data", participants=4, per_class=20)  # 320 images: ~1 s epochs
    reference = train(tiny_config(data, tmp_path / "whole", epochs=3), progress=False)
    cfg = tiny_config(data, tmp_path / "killed", epochs=3)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    history = Path(cfg.out) / "history.csv"
    proc = subprocess.run([sys.executable, "-c", KILL_MID_EPOCH_2, "train", "--config", str(cfg_path), "--data",
                           cfg.data, "--out", cfg.out, "--no-progress"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert len(pd.read_csv(history)) == 1 and not (Path(cfg.out) / "metrics.json").exists()
    with pytest.raises(RunError, match="--resume"):
        train(cfg, progress=False)
    train(cfg, resume=True, progress=False)
    a = json.loads((reference / "metrics.json").read_text())
    b = json.loads((Path(cfg.out) / "metrics.json").read_text())
    assert a["confusion"] == b["confusion"] and a["weighted_f1"] == b["weighted_f1"]
    for key, value in load_checkpoint(reference / "last.pt")["model"].items():
        assert torch.equal(value, load_checkpoint(Path(cfg.out) / "last.pt")["model"][key]), key


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(images, tmp_path, monkeypatch):
    import msvssm.train.run as run_module

    calls = {"n": 0}

    class NaNAfterFirstEpoch(torch.nn.CrossEntropyLoss):
        def forward(self, logits, target):
            calls["n"] += 1
            loss = super().forward(logits, target)
            return loss * float("nan") if calls["n"] > steps_per_epoch else loss

    monkeypatch.setattr(run_module.nn, "CrossEntropyLoss", NaNAfterFirstEpoch)
    cfg = tiny_config(images, tmp_path / "nan", epochs=3, batch_size=16)
    split = pd.read_csv(run_module.split_file_for(cfg))
    steps_per_epoch = (split["split"] == "train").sum() // 16
    with pytest.raises(FloatingPointError, match=rf"epoch 2, step {steps_per_epoch + 1}:"):
        train(cfg, progress=False)
    state = load_checkpoint(Path(cfg.out) / "last.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_nan_gradient_with_a_finite_loss_stops_before_the_step():
    from msvssm.train.loop import NonFiniteLossError, train_one_epoch

    model = torch.nn.Linear(4, 2)
    model.weight.register_hook(lambda g: g * float("nan"))
    before = model.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.randn(3, 4), torch.tensor([0, 1, 0]))]
    with pytest.raises(NonFiniteLossError, match="gradient norm is nan at epoch 1, step 1"):
        train_one_epoch(model, batches, optimizer, torch.nn.CrossEntropyLoss(), epoch=0, step=0, clip_grad=5.0)
    assert torch.equal(model.weight, before)


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    from msvssm.cli import main

    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "msvssm train: error: data folder" in err and "Traceback" not in err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "epochs=x"]) == 2
    assert "not a valid int" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows what happens without a usable GPU")
def test_the_gpu_profile_refuses_to_start_without_a_usable_gpu(images, tmp_path):
    cfg = TrainConfig.from_profile("gpu", data=str(images), out=str(tmp_path / "gpu"))
    assert cfg.device == "cuda"
    with pytest.raises(RunError, match=r"device=cuda asked for .*(CPU-only build|sees no usable GPU).*--set device=cpu"):
        train(cfg, progress=False)
    assert not (tmp_path / "gpu" / "last.pt").exists()


def test_clear_errors_before_training(images, tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        train(tiny_config(tmp_path / "nowhere", tmp_path / "o1"), progress=False)
    with pytest.raises(ConfigError, match="fails on a 3x32x32 image"):
        train(tiny_config(images, tmp_path / "o2", model="vssm_nano", model_kwargs={"in_chans": 1}), progress=False)
    with pytest.raises(ConfigError, match="do not fit model"):
        train(tiny_config(images, tmp_path / "o3", model_kwargs={"no_such_flag": True}), progress=False)


def test_a_class_absent_from_training_is_an_error(tmp_path):
    data = make_image_folder(tmp_path / "data", participants=4, per_class=3)
    split = pd.read_csv(data / "manifest.csv", dtype=str)
    split["split"] = np.where(np.arange(len(split)) % 5 == 0, "val", "train")
    split.loc[split["label"] == "LVLA", "split"] = "test"
    (data / "splits").mkdir()
    split[["path", "participant", "trial", "label", "split"]].to_csv(data / "splits" / "frame_seed0.csv", index=False)
    with pytest.raises(RunError, match=r"\['LVLA'\] have no training image"):
        train(tiny_config(data, tmp_path / "o"), progress=False)


def test_an_empty_split_side_is_an_error(tmp_path):
    data = make_image_folder(tmp_path / "data", participants=2, per_class=2)
    split = pd.read_csv(data / "manifest.csv", dtype=str)
    split["split"] = "train"
    (data / "splits").mkdir()
    split[["path", "participant", "trial", "label", "split"]].to_csv(data / "splits" / "frame_seed0.csv", index=False)
    with pytest.raises(RunError, match="split 'val' not in"):
        train(tiny_config(data, tmp_path / "o"), progress=False)


def test_a_run_folder_of_another_config_is_refused(finished_run, images):
    cfg = TrainConfig.load(finished_run / "config.json").replace(lr=0.5)
    with pytest.raises(RunError, match="another configuration"):
        train(cfg, resume=True, progress=False)


# ----------------------------------------------------------------------------- checkpoints and evaluation


def test_checkpoints_load_weights_only_and_refuse_other_models(finished_run):
    from msvssm.train.checkpoint import check_compatible, load_weights
    from msvssm.models import build_model

    state = torch.load(finished_run / "best.pt", weights_only=True)
    assert state["model_name"] == "vssm_nano" and state["class_names"] == list(CLASSES)
    with pytest.raises(CheckpointError, match="of model 'vssm_nano', not 'msvssm_nano'"):
        check_compatible(state, "msvssm_nano", 4, finished_run / "best.pt")
    with pytest.raises(CheckpointError, match="4 classes"):
        check_compatible(state, "vssm_nano", 7, finished_run / "best.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(build_model("msvssm_nano", num_classes=4), state["model"], "best.pt")
    (finished_run.parent / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(finished_run.parent / "junk.pt")


def test_evaluate_cli_scores_any_split(finished_run, capsys):
    from msvssm.cli import main

    assert main(["evaluate", str(finished_run), "--split", "val"]) == 0
    m = json.loads((finished_run / "metrics_val.json").read_text())
    assert {"accuracy", "weighted_f1", "per_class", "confusion_normalized"} <= set(m) and m["split"] == "val"
    assert (finished_run / "confusion_val.png").exists()
    assert "weighted F1" in capsys.readouterr().out


# ----------------------------------------------------------------------------- sweeps


def test_sweep_trains_each_run_once_and_tabulates_mean_and_std(images, tmp_path, monkeypatch):
    import msvssm.train.sweep as sweep_module
    from msvssm.train.sweep import Sweep

    trained = []
    real_train = sweep_module.train
    monkeypatch.setattr(sweep_module, "train", lambda cfg, **kw: trained.append(cfg.out) or real_train(cfg, **kw))
    base = tiny_config(images, tmp_path, epochs=1)
    sweep = Sweep(tmp_path / "runs", base).add("VSSM", model="vssm_nano").add("lr", lr=1e-3)
    per_run = sweep.run(seeds=[0, 1], progress=False)
    assert len(trained) == 4 and len(per_run) == 4
    table = sweep.write_tables(tmp_path / "table", seeds=[0, 1])
    row = table.set_index("name").loc["VSSM"]
    accs = per_run[per_run["name"] == "VSSM"]["accuracy"]
    assert row["seeds"] == 2
    assert row["accuracy_mean"] == pytest.approx(accs.mean()) and row["accuracy_std"] == pytest.approx(accs.std(ddof=1))
    assert "±" in (tmp_path / "table.md").read_text()
    # A second sweep over the same grid (say, the next notebook) trains nothing.
    Sweep(tmp_path / "runs", base).add("again", model="vssm_nano").run(seeds=[0, 1], progress=False)
    assert len(trained) == 4


# ----------------------------------------------------------------------------- the data path


def test_augmentation_is_per_sample_and_keyed_by_sample_not_batch():
    from msvssm.train.data import AugmentParams, augment_batch, draw_augmentations

    gen = torch.Generator().manual_seed(0)
    aug = draw_augmentations(16, AugmentParams(), gen)
    assert aug["angle"].unique().numel() == 16 and aug["angle"].abs().max() <= np.deg2rad(10) + 1e-6
    x = torch.rand(16, 3, 32, 32)
    whole = augment_batch(x, aug)
    half = augment_batch(x[8:], {k: v[8:] for k, v in aug.items()})
    torch.testing.assert_close(whole[8:], half)  # a sample's augmentation does not depend on its batch


def test_augmentation_matches_torchvision_for_each_part():
    """Flip, rotation and colour factors agree with torchvision's functional ops on one image."""
    import torchvision.transforms.v2.functional as TF

    from msvssm.train.data import augment_batch

    x = torch.rand(1, 3, 32, 32)
    none = {"flip": torch.tensor([False]), "angle": torch.zeros(1), "shift": torch.zeros(1, 2),
            "brightness": torch.ones(1), "contrast": torch.ones(1), "saturation": torch.ones(1)}
    torch.testing.assert_close(augment_batch(x, none), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(augment_batch(x, {**none, "flip": torch.tensor([True])}), TF.horizontal_flip(x))
    for name, fn in (("brightness", TF.adjust_brightness), ("contrast", TF.adjust_contrast),
                     ("saturation", TF.adjust_saturation)):
        torch.testing.assert_close(augment_batch(x, {**none, name: torch.tensor([1.3])}), fn(x, 1.3),
                                   atol=1e-4, rtol=0)
    rotated = augment_batch(x, {**none, "angle": torch.tensor([np.pi / 2])})
    reference = TF.rotate(x, 90.0)  # counter-clockwise, as ours; compare the interior (borders differ by resampling)
    torch.testing.assert_close(rotated[..., 2:-2, 2:-2], reference[..., 2:-2, 2:-2], atol=1e-4, rtol=0)


def test_in_memory_data_equals_decoding_each_image(images):
    from msvssm.data import FaceImageDataset, eval_transforms, make_splits
    from msvssm.train.data import BatchIterator, load_split

    split = make_splits(images, "frame")[0]
    ds = FaceImageDataset(images, split, "test")
    mem = load_split(ds, 32)
    x, y = next(iter(BatchIterator(mem, 4, train=False)))
    ref = torch.stack([eval_transforms(32)(ds.load_image(i)) for i in range(4)])
    assert torch.equal(y, torch.tensor(ds.targets[:4]))
    torch.testing.assert_close(x, ref, atol=0.05, rtol=0)  # PIL vs torchvision resize of 40 -> 32


def test_split_predictions_agree_with_the_saved_metrics(finished_run):
    from msvssm.train import split_predictions

    rows = split_predictions(finished_run)
    m = json.loads((finished_run / "metrics.json").read_text())
    assert len(rows) == m["n"]
    assert rows["correct"].mean() == pytest.approx(m["accuracy"])
    probs = rows.filter(like="p_").to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert {"participant", "path", "label", "pred"} <= set(rows.columns)

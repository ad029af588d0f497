"""Split protocols (msvssm.data.splits) and the torch dataset (msvssm.data.dataset)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from msvssm.cli import main as cli_main
from msvssm.data.dataset import (
    FaceImageDataset,
    ImageReadError,
    build_imagefolder_manifest,
    eval_transforms,
    train_transforms,
)
from msvssm.data.deap import CLASS_NAMES
from msvssm.data.manifest import MANIFEST_COLUMNS, STATUSES, read_manifest
from msvssm.data.splits import SplitError, leakage, make_splits, read_split


@pytest.fixture()
def fake_data(tmp_path) -> Path:
    """A manifest (no images) of 10 participants x 8 trials x 5 frames, plus a few non-ok rows."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(1, 11):
        for t in range(1, 9):
            label = CLASS_NAMES[rng.integers(0, 4)]
            for k in range(5):
                row = {c: "" for c in MANIFEST_COLUMNS}
                row.update(participant=str(p), trial=str(t), time_s=str(3 + k), label=label, status="ok",
                           path=f"images/{label}/s{p:02d}_trial{t:02d}_t{3 + k:03d}.png")
                rows.append(row)
            rows.append({**row, "status": "no_face", "path": "", "time_s": "9"})
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path


def _sides(df: pd.DataFrame, key) -> pd.Series:
    return df.groupby(key)["split"].nunique()


def test_frame_split_stratified_and_warns(fake_data, caplog):
    with caplog.at_level(logging.WARNING, logger="msvssm"):
        (path,) = make_splits(fake_data, "frame", seed=0)
    assert "leak" in caplog.text.lower()
    assert path == fake_data / "splits" / "frame_seed0.csv"
    df = read_split(path)
    assert len(df) == 400 and (df["path"] != "").all()  # only ok rows
    frac = df["split"].value_counts(normalize=True)
    assert abs(frac["train"] - 0.7) < 0.02 and abs(frac["val"] - 0.1) < 0.02 and abs(frac["test"] - 0.2) < 0.02
    overall = df["label"].value_counts(normalize=True)
    test = df[df["split"] == "test"]["label"].value_counts(normalize=True)
    assert (abs(overall - test) < 0.03).all()
    assert (_sides(df, ["participant", "trial"]) > 1).any()  # the leak the docstring warns about


def test_trial_split_keeps_trials_whole(fake_data):
    (path,) = make_splits(fake_data, "trial", seed=1)
    df = read_split(path)
    assert (_sides(df, ["participant", "trial"]) == 1).all()
    assert set(df["split"]) == {"train", "val", "test"}


def test_subject_split_disjoint_participants(fake_data):
    (path,) = make_splits(fake_data, "subject", seed=0)
    df = read_split(path)
    assert (_sides(df, "participant") == 1).all()
    n = df.groupby("split")["participant"].nunique()
    assert n["test"] == 2 and n["val"] >= 1 and n.sum() == 10


def test_leakage_measures_what_each_protocol_shares(fake_data):
    reports = {p: leakage(read_split(make_splits(fake_data, p, seed=0)[0])) for p in ("frame", "trial", "subject")}
    trial_key, person_key = "test frames whose trial is in train", "test frames whose participant is in train"
    assert reports["frame"][trial_key] > 0.9  # nearly every test frame's video was seen in training
    assert reports["trial"][trial_key] == 0.0 and reports["trial"][person_key] > 0.5
    assert reports["subject"][trial_key] == 0.0 and reports["subject"][person_key] == 0.0
    hand_made = pd.DataFrame({"participant": [1, 1, 2, 2], "trial": [1, 2, 1, 1], "split": ["train", "test", "test", "train"]})
    assert leakage(hand_made) == {trial_key: 0.5, person_key: 1.0}


def _participant(df: pd.DataFrame) -> pd.Series:
    return df["participant"]


def _video(df: pd.DataFrame) -> pd.Series:
    return df["participant"] + "/" + df["trial"]


@pytest.mark.parametrize("protocol, folds, group, too_many", [("subject", 5, _participant, 11),
                                                               ("trial", 3, _video, 10_000)])
def test_grouped_folds_keep_groups_together_and_test_each_group_once(fake_data, protocol, folds, group, too_many):
    """Subject folds keep a participant, trial folds a video, on one side; over the K files each group is tested
    exactly once; every file has train and val sides; K above the number of groups and folds of the frame split
    are refused."""
    paths = make_splits(fake_data, protocol, seed=0, folds=folds)
    assert [p.name for p in paths] == [f"{protocol}_k{folds}_fold{f}_seed0.csv" for f in range(folds)]
    tested = []
    for p in paths:
        df = read_split(p)
        groups = group(df)
        assert (df.assign(g=groups).groupby("g")["split"].nunique() == 1).all()  # a group on one side only
        assert (df["split"] == "val").any() and (df["split"] == "train").any()
        tested += list(groups[df["split"] == "test"].unique())
    assert sorted(tested) == sorted(group(read_split(paths[0])).unique())  # each group tested exactly once
    if protocol == "subject":
        assert sorted(tested, key=int) == [str(i) for i in range(1, 11)]
    with pytest.raises(SplitError, match="participants" if protocol == "subject" else "number of videos"):
        make_splits(fake_data, protocol, folds=too_many)
    with pytest.raises(SplitError):
        make_splits(fake_data, "frame", folds=3)


def test_splits_deterministic(fake_data):
    (a,) = make_splits(fake_data, "trial", seed=3)
    first = a.read_bytes()
    (a,) = make_splits(fake_data, "trial", seed=3)
    assert a.read_bytes() == first
    (b,) = make_splits(fake_data, "trial", seed=4)
    assert b.read_bytes() != first


def test_cli_split(fake_data, capsys):
    assert cli_main(["split", "--data", str(fake_data), "--protocol", "subject", "--folds", "3", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "subject_k3_fold2_seed2.csv" in out and "test" in out
    assert cli_main(["split", "--data", str(fake_data), "--protocol", "frame"]) == 0
    assert "leak" in capsys.readouterr().err.lower()
    assert cli_main(["split", "--data", str(fake_data / "nowhere"), "--protocol", "frame"]) == 2


# ----------------------------------------------------------------------------- dataset


def test_dataset_over_preprocessed(preprocessed):
    (path,) = make_splits(preprocessed, "frame", seed=0, ratios=(0.6, 0.2, 0.2))
    split = read_split(path)
    manifest = pd.read_csv(preprocessed / "manifest.csv", dtype=str, keep_default_na=False)
    ok = manifest[manifest["status"] == "ok"]
    total = 0
    for side in ("train", "val", "test"):
        ds = FaceImageDataset(preprocessed, path, side, eval_transforms(32))
        assert len(ds) == int((split["split"] == side).sum())
        total += len(ds)
        assert ds.classes == list(CLASS_NAMES)
        assert sum(ds.class_counts()) == len(ds)
        x, y = ds[0]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
        label = ok.set_index("path").loc[ds.frame["path"][0], "label"]
        assert y == CLASS_NAMES.index(label)
    assert total == len(ok)

    full = FaceImageDataset(preprocessed)
    assert len(full) == len(ok)
    image, _ = full[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (64, 64)
    # normalised: roughly zero-mean, not in [0, 1]
    x, _ = FaceImageDataset(preprocessed, transform=eval_transforms(48))[0]
    assert x.shape == (3, 48, 48) and x.min() < 0


def test_train_transforms_augment(preprocessed):
    torch.manual_seed(0)
    ds = FaceImageDataset(preprocessed, transform=train_transforms(40))
    a, ya = ds[0]
    b, yb = ds[0]
    assert a.shape == b.shape == (3, 40, 40) and a.dtype == torch.float32
    assert ya == yb and not torch.equal(a, b)
    names = [type(t).__name__ for t in train_transforms(40).transforms]
    for name in ("RandomHorizontalFlip", "RandomAffine", "ColorJitter", "Resize", "Normalize", "ToDtype"):
        assert name in names
    assert not {"RandomHorizontalFlip", "RandomAffine", "ColorJitter"} & {
        type(t).__name__ for t in eval_transforms(40).transforms
    }
    affine = next(t for t in train_transforms(40).transforms if type(t).__name__ == "RandomAffine")
    assert list(affine.degrees) == [-10.0, 10.0]


def test_split_for_other_data_rejected(preprocessed, fake_data):
    (path,) = make_splits(fake_data, "frame", seed=0)
    with pytest.raises(ValueError, match="other data"):
        FaceImageDataset(preprocessed, path, "train")


def _imagefolder(root: Path) -> Path:
    for cls, mode in (("angry", "L"), ("happy", "RGBA"), ("sad", "RGB")):
        (root / cls).mkdir(parents=True)
        for subject in ("S01", "S02", "S03"):
            for k in range(2):
                img = Image.new(mode, (20, 24), color=(100 + 10 * k) if mode == "L" else (100, 50 * k, 20, 255)[: len(mode)])
                img.save(root / cls / f"{subject}_{k}.png")
    (root / "sad" / "notes.txt").write_text("not an image")
    return root


def test_imagefolder_manifest_splits_and_modes(tmp_path, caplog):
    root = _imagefolder(tmp_path / "fer")
    df = build_imagefolder_manifest(root)
    assert len(df) == 18 and sorted(set(df["label"])) == ["angry", "happy", "sad"]
    with pytest.raises(SplitError, match="participant"):
        make_splits(root, "subject")
    (path,) = make_splits(root, "frame", ratios=(0.5, 0.25, 0.25))
    with caplog.at_level(logging.INFO, logger="msvssm"):
        ds = FaceImageDataset(root, path, "train", eval_transforms(16))
        xs = [ds[i][0] for i in range(len(ds))]
    assert ds.classes == ["angry", "happy", "sad"]
    assert all(x.shape == (3, 16, 16) for x in xs)
    assert caplog.text.count("to RGB") == 1  # logged once

    build_imagefolder_manifest(root, group_pattern=r"^(S\d+)_")
    (path,) = make_splits(root, "subject", ratios=(1, 1, 1))
    sp = read_split(path)
    assert (sp.groupby("participant")["split"].nunique() == 1).all()


def test_imagefolder_auto_manifest_via_cli(tmp_path):
    root = _imagefolder(tmp_path / "raf")
    assert cli_main(["split", "--data", str(root), "--protocol", "frame"]) == 0
    assert (root / "manifest.csv").exists() and (root / "splits" / "frame_seed0.csv").exists()


def test_unreadable_image_names_file(tmp_path):
    root = _imagefolder(tmp_path / "fer")
    build_imagefolder_manifest(root)
    bad = root / "angry" / "S01_0.png"
    bad.write_bytes(b"not a png")
    ds = FaceImageDataset(root)
    i = [str(p) for p, _ in ds.samples].index(str(bad))
    with pytest.raises(ImageReadError, match="S01_0.png"):
        ds[i]


# ----------------------------------------------------------------------------- manifest module


def test_manifest_module_is_the_only_shared_dependency():
    """splits and dataset read the manifest through msvssm.data.manifest, not through each other."""
    import ast

    import msvssm.data
    from msvssm.data import manifest

    lib = Path(manifest.__file__).parent
    imports = {}
    for name in ("splits", "manifest"):
        tree = ast.parse((lib / f"{name}.py").read_text())
        imports[name] = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}
    assert "dataset" not in imports["splits"] and "manifest" in imports["splits"]
    assert not {"dataset", "splits", "preprocess"} & imports["manifest"]
    # the documented names still resolve, lazily, to the manifest module
    assert msvssm.data.read_manifest is read_manifest
    assert msvssm.data.MANIFEST_COLUMNS is MANIFEST_COLUMNS
    assert msvssm.data.STATUSES is STATUSES
    from msvssm.data.dataset import build_imagefolder_manifest as from_dataset
    from msvssm.data.preprocess import MANIFEST_COLUMNS as from_preprocess

    assert from_dataset is msvssm.data.build_imagefolder_manifest and from_preprocess is MANIFEST_COLUMNS


def test_read_manifest_rejects_unknown_status(fake_data):
    df = pd.read_csv(fake_data / "manifest.csv", dtype=str, keep_default_na=False)
    assert set(df["status"]) <= set(STATUSES)
    assert len(read_manifest(fake_data)) == 400 and len(read_manifest(fake_data, ok_only=False)) == 480
    df.loc[3, "status"] = "fine"
    df.to_csv(fake_data / "manifest.csv", index=False)
    with pytest.raises(ValueError, match="unknown status.*fine"):
        read_manifest(fake_data)

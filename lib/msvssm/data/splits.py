"""``msvssm split``: train/val/test protocols over a preprocessed manifest, saved to files.

Every model must be trained and tested on the same split, so splits are written
once to ``DATA/splits/`` and read back by :class:`msvssm.data.dataset.FaceImageDataset`.
A split file is a CSV with the columns ``path, participant, trial, label, split``
(``split`` is ``train``, ``val`` or ``test``); only manifest rows with status
``ok`` are split. A JSON file of the same name records protocol, seed, ratios and
counts.

Protocols:

``frame``
    The paper's protocol: frames stratified by label at random into train/val/test
    (70/10/20 by default). **It leaks**: the ~57 frames of one video are near
    duplicates and land on both sides, so test accuracy measures memorisation of
    trials and participants more than recognition (corrections in comparable
    studies cost 10-25 accuracy points). Kept to reproduce the paper; a warning
    is logged.
``trial``
    All frames of one trial (participant, trial) on one side; trials stratified by
    their label.
``subject``
    Participants disjoint between train, val and test (``GroupShuffleSplit``,
    ratios are fractions of participants).

Cross-validation (``folds=K``, trial and subject): K folds of videos or of participants
(``StratifiedGroupKFold``), one file per fold whose test side is that fold and whose val side
is drawn from the other groups: over the K files every video (every person) is tested once.

Files: ``frame_seed0.csv``, ``trial_seed0.csv``, ``subject_seed0.csv``,
``subject_k5_fold0_seed0.csv`` ... ``subject_k5_fold4_seed0.csv``, ``trial_k3_fold0_seed0.csv`` ...
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..utils import atomic_path, atomic_write_json, get_logger
from .manifest import build_imagefolder_manifest, read_manifest

log = get_logger("data.splits")

PROTOCOLS = ("frame", "trial", "subject")
SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.7, 0.1, 0.2)
SPLIT_COLUMNS = ("path", "participant", "trial", "label", "split")
LEAK_WARNING = (
    "protocol 'frame' (the paper's) puts frames of the same video in train and test: "
    "test accuracy is inflated by leakage; use --protocol trial or subject for an honest estimate"
)


class SplitError(ValueError):
    """A split that cannot be made from this manifest."""


# ----------------------------------------------------------------------------- helpers


def _normalise(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0 or sum(ratios) <= 0:
        raise SplitError(f"ratios must be three non-negative numbers train/val/test with train > 0, got {ratios}")
    total = float(sum(ratios))
    return tuple(float(r) / total for r in ratios)  # type: ignore[return-value]


def _stratified_cut(items: np.ndarray, labels: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``items`` into (rest, cut) with ``frac`` of them in ``cut``, stratified when possible."""
    from sklearn.model_selection import train_test_split

    if frac <= 0 or len(items) == 0:
        return items, items[:0]
    try:
        rest, cut = train_test_split(items, test_size=frac, random_state=seed, stratify=labels)
    except ValueError as exc:  # a class too small to stratify
        log.warning("cannot stratify (%s); splitting without stratification", exc)
        rest, cut = train_test_split(items, test_size=frac, random_state=seed)
    return np.sort(rest), np.sort(cut)


def _group_cut(groups: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split unique ``groups`` into (rest, cut) with GroupShuffleSplit (frac = fraction of groups)."""
    from sklearn.model_selection import GroupShuffleSplit

    uniq = np.unique(groups)
    if frac <= 0:
        return uniq, uniq[:0]
    if len(uniq) < 2:
        raise SplitError(f"need at least 2 participants to split, found {len(uniq)}")
    gss = GroupShuffleSplit(n_splits=1, test_size=frac, random_state=seed)
    rest_idx, cut_idx = next(gss.split(uniq, groups=uniq))
    return np.sort(uniq[rest_idx]), np.sort(uniq[cut_idx])


def _require_groups(df: pd.DataFrame, protocol: str) -> None:
    if "participant" not in df or (df["participant"].astype(str).str.strip() == "").any():
        raise SplitError(
            f"protocol {protocol!r} needs participant ids in the manifest (every ok row); "
            "this manifest has none (an ImageFolder dataset?): use --protocol frame, or build the "
            "manifest with a group pattern"
        )
    if protocol == "trial" and (df["trial"].astype(str).str.strip() == "").any():
        raise SplitError("protocol 'trial' needs trial ids in the manifest")


# ----------------------------------------------------------------------------- protocols


def split_frames(df: pd.DataFrame, ratios=DEFAULT_RATIOS, seed: int = 0) -> pd.Series:
    """The paper's leaky protocol: rows stratified by label. Returns the split of each row."""
    log.warning(LEAK_WARNING)
    train_r, val_r, test_r = _normalise(ratios)
    idx = np.arange(len(df))
    labels = df["label"].to_numpy()
    rest, test = _stratified_cut(idx, labels, test_r, seed)
    rest, val = _stratified_cut(rest, labels[rest], val_r / (train_r + val_r), seed + 1)
    out = np.array(["train"] * len(df), dtype=object)
    out[val] = "val"
    out[test] = "test"
    return pd.Series(out, index=df.index, name="split")


def split_trials(df: pd.DataFrame, ratios=DEFAULT_RATIOS, seed: int = 0) -> pd.Series:
    """Whole trials on one side, stratified by trial label."""
    _require_groups(df, "trial")
    train_r, val_r, test_r = _normalise(ratios)
    key = df["participant"].astype(str) + "/" + df["trial"].astype(str)
    trials = pd.DataFrame({"key": key, "label": df["label"]}).drop_duplicates("key").sort_values("key")
    keys, labels = trials["key"].to_numpy(), trials["label"].to_numpy()
    idx = np.arange(len(keys))
    rest, test = _stratified_cut(idx, labels, test_r, seed)
    rest, val = _stratified_cut(rest, labels[rest], val_r / (train_r + val_r), seed + 1)
    side = {k: "train" for k in keys}
    side.update({keys[i]: "val" for i in val})
    side.update({keys[i]: "test" for i in test})
    return pd.Series(key.map(side).to_numpy(), index=df.index, name="split")


def split_subjects(df: pd.DataFrame, ratios=DEFAULT_RATIOS, seed: int = 0) -> pd.Series:
    """Participants disjoint; ratios are fractions of participants."""
    _require_groups(df, "subject")
    train_r, val_r, test_r = _normalise(ratios)
    groups = df["participant"].astype(str).to_numpy()
    rest, test = _group_cut(groups, test_r, seed)
    rest, val = _group_cut(rest, val_r / (train_r + val_r), seed + 1) if val_r > 0 else (rest, rest[:0])
    side = {g: "train" for g in rest}
    side.update({g: "val" for g in val})
    side.update({g: "test" for g in test})
    return pd.Series([side[g] for g in groups], index=df.index, name="split")


def _video_keys(df: pd.DataFrame) -> np.ndarray:
    return (df["participant"].astype(str) + "/" + df["trial"].astype(str)).to_numpy()


def grouped_folds(df: pd.DataFrame, protocol: str, folds: int, ratios=DEFAULT_RATIOS, seed: int = 0) -> list[pd.Series]:
    """Grouped K-fold cross-validation: K splits whose test sides are disjoint and together hold every row once.

    ``protocol`` says what stays together: ``trial`` (a video: participant/trial) or ``subject`` (a
    participant). Groups are dealt into K folds stratified by label (``StratifiedGroupKFold``); in
    split f the test side is fold f, and the val side is drawn from the other groups with
    ``ratios[1] / (ratios[0] + ratios[1])`` of them (``ratios[2]`` is unused: the fold decides the test
    side), by video label for ``trial`` and by participant for ``subject``. ``folds`` = the number of
    participants under ``subject`` is leave-one-subject-out.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if protocol not in ("trial", "subject"):
        raise SplitError(f"cross-validation folds are for the trial and subject protocols, not {protocol!r}")
    _require_groups(df, protocol)
    train_r, val_r, _ = _normalise(ratios)
    groups = _video_keys(df) if protocol == "trial" else df["participant"].astype(str).to_numpy()
    unit = "videos" if protocol == "trial" else "participants"
    n_groups = len(np.unique(groups))
    if folds < 2 or folds > n_groups:
        raise SplitError(f"--folds must be between 2 and the number of {unit} ({n_groups}), got {folds}")
    labels = df["label"].to_numpy()
    group_label = pd.Series(labels, index=groups).groupby(level=0).first()  # a video's label (one per video)
    sgkf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for f, (_, test_idx) in enumerate(sgkf.split(np.zeros(len(df)), labels, groups)):
        test_groups = set(groups[test_idx])
        rest_groups = np.array(sorted(set(groups) - test_groups))
        if val_r > 0 and len(rest_groups) >= 2 and protocol == "trial":
            rest, val = _stratified_cut(rest_groups, group_label.loc[rest_groups].to_numpy(),
                                        val_r / (train_r + val_r), seed + 1 + f)
        elif val_r > 0 and len(rest_groups) >= 2:
            rest, val = _group_cut(rest_groups, val_r / (train_r + val_r), seed + 1 + f)
        else:
            rest, val = rest_groups, rest_groups[:0]
        side = {g: "train" for g in rest}
        side.update({g: "val" for g in val})
        side.update({g: "test" for g in test_groups})
        out.append(pd.Series([side[g] for g in groups], index=df.index, name="split"))
    return out


def subject_folds(df: pd.DataFrame, folds: int, ratios=DEFAULT_RATIOS, seed: int = 0) -> list[pd.Series]:
    """K folds of participants: :func:`grouped_folds` with ``protocol="subject"``."""
    return grouped_folds(df, "subject", folds, ratios, seed)


# ----------------------------------------------------------------------------- files


def split_name(protocol: str, seed: int = 0, folds: int | None = None, fold: int | None = None) -> str:
    if folds:
        return f"{protocol}_k{folds}_fold{fold}_seed{seed}"
    return f"{protocol}_seed{seed}"


def _counts(df: pd.DataFrame, split: pd.Series) -> dict[str, dict[str, int]]:
    return {s: {k: int(v) for k, v in df.loc[split == s, "label"].value_counts().sort_index().items()} for s in SPLITS}


def write_split(data_dir: str | Path, name: str, df: pd.DataFrame, split: pd.Series, info: dict) -> Path:
    data_dir = Path(data_dir)
    path = data_dir / "splits" / f"{name}.csv"
    table = pd.DataFrame(
        {
            "path": df["path"].to_numpy(),
            "participant": df["participant"].to_numpy(),
            "trial": df["trial"].to_numpy(),
            "label": df["label"].to_numpy(),
            "split": split.to_numpy(),
        }
    )
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")
    manifest = data_dir / "manifest.csv"
    record = dict(info)
    record["file"] = path.name
    record["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else None
    record["counts"] = _counts(df, split)
    record["participants"] = {
        s: sorted({str(p) for p in df.loc[split == s, "participant"] if str(p) != ""}, key=_natural) for s in SPLITS
    }
    atomic_write_json(path.with_suffix(".json"), record)
    return path


def _natural(s: str):
    return (0, int(s)) if s.isdigit() else (1, s)


def read_split(path: str | Path) -> pd.DataFrame:
    """A split file as a DataFrame (all columns as strings)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in SPLIT_COLUMNS if c not in df.columns]
    if missing:
        raise SplitError(f"split file {path} lacks column(s) {missing}")
    return df


def make_splits(
    data_dir: str | Path,
    protocol: str,
    seed: int = 0,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    folds: int | None = None,
) -> list[Path]:
    """Make and save the split(s) of ``DATA/manifest.csv``; returns the CSV paths.

    A folder of class subfolders without a manifest gets one first
    (:func:`msvssm.data.manifest.build_imagefolder_manifest`).
    """
    if protocol not in PROTOCOLS:
        raise SplitError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")
    if folds and protocol == "frame":
        raise SplitError("--folds is for --protocol trial or subject (the frame split has no groups to keep apart)")
    data_dir = Path(data_dir)
    if not (data_dir / "manifest.csv").exists():
        if not data_dir.is_dir():
            raise SplitError(f"{data_dir} is not a folder")
        log.info("%s has no manifest.csv: treating it as an ImageFolder (class subfolders)", data_dir)
        build_imagefolder_manifest(data_dir)
    df = read_manifest(data_dir, ok_only=True)
    if df.empty:
        raise SplitError(f"{data_dir / 'manifest.csv'} has no row with status ok")
    info = {"protocol": protocol, "seed": seed, "ratios": list(_normalise(ratios)), "folds": folds}
    if protocol == "frame":
        info["warning"] = LEAK_WARNING
        return [write_split(data_dir, split_name("frame", seed), df, split_frames(df, ratios, seed), info)]
    if folds:
        paths = []
        for f, split in enumerate(grouped_folds(df, protocol, folds, ratios, seed)):
            paths.append(write_split(data_dir, split_name(protocol, seed, folds, f), df, split, {**info, "fold": f}))
        return paths
    if protocol == "trial":
        return [write_split(data_dir, split_name("trial", seed), df, split_trials(df, ratios, seed), info)]
    return [write_split(data_dir, split_name("subject", seed), df, split_subjects(df, ratios, seed), info)]


def split_is_stale(path: str | Path, data_dir: str | Path) -> bool:
    """Whether a split file's record (``.json`` beside it) names another ``manifest.csv`` than the data's current one.

    A split file made by hand has no record: nothing to compare (its content still keys the runs).
    """
    record, manifest = Path(path).with_suffix(".json"), Path(data_dir) / "manifest.csv"
    if not record.exists() or not manifest.exists():
        return False
    made_from = json.loads(record.read_text(encoding="utf-8")).get("manifest_sha256")
    return made_from is not None and made_from != hashlib.sha256(manifest.read_bytes()).hexdigest()


def current_split(data_dir: str | Path, protocol: str, seed: int = 0, folds: int = 0, fold: int = 0) -> Path:
    """The split file of (protocol, seed) or of fold ``fold`` of ``folds`` (all K files are made together), made
    if missing and made again if the manifest changed since."""
    data_dir = Path(data_dir)
    path = data_dir / "splits" / f"{split_name(protocol, seed, folds or None, fold)}.csv"
    if path.exists() and split_is_stale(path, data_dir):
        log.warning("%s was made from another manifest.csv (the data changed since): making it again", path)
    elif path.exists():
        return path
    return make_splits(data_dir, protocol, seed=seed, folds=folds or None)[fold if folds else 0]


def first_seed_training_every_class(data_dir: str | Path, protocol: str, tries: int = 20, folds: int = 0) -> int:
    """The smallest split seed whose training side holds every class of the data (making those split files);
    with ``folds``, the training side of every fold.

    For data too small for grouped splits (the smoke profile's 3 participants): with few
    people, a trial or subject split can leave a class with no training image, which
    training refuses. Real-sized data passes at seed 0.
    """
    data_dir = Path(data_dir)
    classes = set(read_manifest(data_dir, ok_only=True)["label"].astype(str))
    for seed in range(tries):
        files = [current_split(data_dir, protocol, seed, folds, f) for f in range(max(folds, 1))]
        if all(set(s.loc[s["split"] == "train", "label"].astype(str)) == classes for s in map(read_split, files)):
            return seed
    where = f"{folds} folds of the {protocol} split" if folds else f"{protocol} split"
    raise SplitError(f"no {where} of {data_dir} with seed < {tries} has every class on its training side")


def leakage(split: pd.DataFrame) -> dict[str, float]:
    """How much of the test side was already seen in training, for a split table.

    Returns the share of test frames whose trial (participant, trial) also has
    frames in train, and the share whose participant does. A leak-free trial
    split has 0 for the first; a subject split has 0 for both.
    """
    train, test = split[split["split"] == "train"], split[split["split"] == "test"]
    if test.empty:
        raise SplitError("the split has no test rows")
    seen_trials = set(zip(train["participant"], train["trial"]))
    seen_people = set(train["participant"])
    return {
        "test frames whose trial is in train": float(
            np.mean([k in seen_trials for k in zip(test["participant"], test["trial"])])
        ),
        "test frames whose participant is in train": float(test["participant"].isin(seen_people).mean()),
    }


def describe_split(path: str | Path) -> str:
    df = read_split(path)
    lines = [f"{path}"]
    for s in SPLITS:
        part = df[df["split"] == s]
        counts = part["label"].value_counts().sort_index()
        n_part = part["participant"].replace("", np.nan).nunique()
        lines.append(
            f"  {s:5s} {len(part):6d} images, {n_part:3d} participants  "
            + " ".join(f"{k}={v}" for k, v in counts.items())
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def add_cli(parser: argparse.ArgumentParser) -> None:
    parser.description = "Write a train/val/test split of a preprocessed folder to DATA/splits/."
    parser.add_argument("--data", required=True, help="preprocessed folder (holds manifest.csv) or an ImageFolder")
    parser.add_argument("--protocol", choices=PROTOCOLS, required=True, help="frame (paper, leaky), trial, subject")
    parser.add_argument("--folds", type=int, default=None,
                        help="trial / subject protocol: K folds of videos / participants (cross-validation; "
                             "K = the number of participants: leave-one-subject-out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ratios", type=float, nargs=3, default=list(DEFAULT_RATIOS), metavar=("TRAIN", "VAL", "TEST")
    )

    def run(args: argparse.Namespace) -> int:
        try:
            paths = make_splits(args.data, args.protocol, args.seed, args.ratios, args.folds)
        except (SplitError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.protocol == "frame":
            print(f"WARNING: {LEAK_WARNING}", file=sys.stderr)
        for p in paths:
            print(describe_split(p))
        return 0

    parser.set_defaults(func=run)


__all__ = [
    "PROTOCOLS",
    "SplitError",
    "split_frames",
    "split_trials",
    "split_subjects",
    "subject_folds",
    "grouped_folds",
    "current_split",
    "make_splits",
    "read_split",
    "write_split",
    "split_name",
    "add_cli",
]

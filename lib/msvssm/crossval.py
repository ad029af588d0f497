"""Grouped cross-validation, read back: every video (trial split) or every person (subject split) tested once.

A grouped split with K folds (:func:`msvssm.data.splits.grouped_folds`, ``TrainConfig.folds``) trains K runs per
row; each run is scored on its own fold's test side, and the K test sides together hold every image once. So the
runs' test predictions can be **pooled**: one prediction per image of the data, each made by a model that never
saw that image's video (or person). Read that way (notebook 10)::

    predictions = fold_predictions(per_run)                        # one row per (run row, image)
    floors = floor_predictions(faces, split_files)                  # msvssm.classical: HOG and the constant guess
    cross_validated(predictions)                                    # pooled accuracy, interval over people, per fold
    against(predictions, floors, "HOG + logistic")                  # paired, person by person

Intervals resample **participants** (:func:`msvssm.stats.cluster_bootstrap`): the people are what was drawn, their
crops are not independent draws, and under the trial split a person's videos are in every fold.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from . import stats

UNIT = "participant"  # what the intervals and the paired tests resample


def fold_predictions(per_run: pd.DataFrame, device: str = "cpu") -> pd.DataFrame:
    """Test predictions of every run of a per-run table (:meth:`CoursePlan.protocol_results`), one row per (run,
    test image): the run's ``name``, ``split``, ``folds``, ``fold``, ``seed`` and ``run``, then
    :func:`msvssm.train.split_predictions`' columns (``path``, ``participant``, ``trial``, ``label``, ``pred``,
    ``correct``, ``p_<class>``)."""
    from .train import split_predictions

    frames = []
    for r in per_run.itertuples():
        rows = split_predictions(r.run, "test", device=device)
        frames.append(rows.assign(name=r.name, split=r.split, folds=r.folds, fold=r.fold, seed=r.seed, run=r.run))
    out = pd.concat(frames, ignore_index=True)
    for col in ("path", "participant", "trial", "label", "pred"):
        out[col] = out[col].astype(str)
    return out


def check_each_image_once(predictions: pd.DataFrame, by: Sequence[str] = ("split", "name", "seed")) -> None:
    """Raise if, within one (split, row, seed), an image was scored twice (two folds tested it) or the folds are
    incomplete (a fold's run is missing): pooled numbers are only what they claim when each image counts once."""
    for key, rows in predictions.groupby(list(by)):
        twice = rows["path"][rows["path"].duplicated()]
        if len(twice):
            raise ValueError(f"{key}: {len(twice)} image(s) scored by two folds, e.g. {twice.iloc[0]}")
        folds = int(rows["folds"].iloc[0])
        if folds and rows["fold"].nunique() != folds:
            raise ValueError(f"{key}: test predictions of folds {sorted(rows['fold'].unique())} of {folds}: a fold is missing")


def _weighted_f1(labels: Iterable[str], preds: Iterable[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(list(labels), list(preds), average="weighted", zero_division=0))


def cross_validated(predictions: pd.DataFrame, by: Sequence[str] = ("split", "name"), confidence: float = 0.95,
                    seed: int = 0) -> pd.DataFrame:
    """Per row of ``by``: the pooled accuracy over every fold's test side (each image once), its cluster-bootstrap
    interval over participants, the pooled weighted F1, the folds' own accuracies (mean, lowest, highest), and
    how many crops and people were tested."""
    check_each_image_once(predictions, (*by, "seed"))
    rows = []
    for key, p in predictions.groupby(list(by), sort=False):
        acc, low, high = stats.cluster_bootstrap(p["correct"], p[UNIT], confidence, seed=seed)
        per_fold = p.groupby("fold")["correct"].mean()
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "accuracy": acc,
                     "ci_low": low, "ci_high": high, "weighted_f1": _weighted_f1(p["label"], p["pred"]),
                     "folds": len(per_fold), "fold mean": per_fold.mean(), "fold min": per_fold.min(),
                     "fold max": per_fold.max(), "crops": len(p), "people": p[UNIT].nunique()})
    return pd.DataFrame(rows)


def against(predictions: pd.DataFrame, floors: pd.DataFrame, floor: str, by: Sequence[str] = ("split", "name"),
            seed: int = 0) -> pd.DataFrame:
    """Each row of ``by`` against one floor (``"HOG + logistic"`` or ``"constant guess"``,
    :func:`msvssm.classical.floor_predictions` of the same split files), image by image on the same test images,
    people as the unit (:func:`msvssm.stats.paired_cluster_difference`: network - floor, its interval over people,
    the sign test over people)."""
    mine = floors[floors["floor"] == floor]
    if mine.empty:
        raise ValueError(f"no predictions of the floor {floor!r} (floors: {sorted(floors['floor'].unique())})")
    out = []
    for key, p in predictions.groupby(list(by), sort=False):
        split = p["split"].iloc[0]
        ref = mine[mine["split_file"].str.startswith(f"{split}_")].drop_duplicates("path").set_index("path")
        missing = set(p["path"]) - set(ref.index)
        if missing:
            raise ValueError(f"{key}: {len(missing)} test image(s) the floor {floor!r} did not score "
                             f"(were the floors fitted on the same split files?), e.g. {sorted(missing)[0]}")
        test = stats.paired_cluster_difference(ref.loc[p["path"], "correct"].to_numpy(), p["correct"].to_numpy(),
                                               p[UNIT].to_numpy(), seed=seed)
        out.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "against": floor, **test})
    return pd.DataFrame(out)


def per_person(predictions: pd.DataFrame, floors: pd.DataFrame | None = None, by: str = "name") -> pd.DataFrame:
    """Accuracy per participant (rows) and per network row / floor (columns), pooled over the folds."""
    table = predictions.pivot_table(index=UNIT, columns=by, values="correct", aggfunc="mean")
    if floors is not None:
        table = table.join(floors.pivot_table(index=UNIT, columns="floor", values="correct", aggfunc="mean"))
    return table.sort_index(key=lambda idx: [int(i) if str(i).isdigit() else 0 for i in idx])


def split_files(plan, protocol: str) -> list[os.PathLike]:
    """The split file of each fold of ``protocol`` in ``plan`` (one file for the frame split)."""
    from .train.run import split_file_for

    return [split_file_for(plan.protocol_config(protocol, f)) for f in plan.fold_indices(protocol)]


__all__ = ["fold_predictions", "check_each_image_once", "cross_validated", "against", "per_person", "split_files"]

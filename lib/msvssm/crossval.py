"""Grouped cross-validation, read back: every video (trial split) or every person (subject split) tested once.

A grouped split with K folds (:func:`msvssm.data.splits.grouped_folds`, ``TrainConfig.folds``) trains K runs per
row; each run is scored on its own fold's test side, and the K test sides together hold every image once. So the
runs' test predictions can be **pooled**: one prediction per image of the data, each made by a model that never
saw that image's video (or person). Read that way (notebook 10)::

    predictions = fold_predictions(per_run)                        # one row per (run row, image)
    floors = floor_predictions(faces, split_files)                  # msvssm.classical: HOG and the constant guess
    cross_validated(predictions)                                    # pooled accuracy, interval over people, per fold
    against(predictions, floors[floors["floor"] == "HOG + logistic"], "HOG + logistic")  # paired, person by person

Intervals resample **participants** (:func:`msvssm.stats.cluster_bootstrap`): the people are what was drawn, their
crops are not independent draws, and under the trial split a person's videos are spread across the folds. They
are conditional on the trained models: one seed per fold, so the seed-to-seed spread of notebook 08 is not in them.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import pandas as pd

from . import stats

UNIT = "participant"  # what the intervals and the paired tests resample


def fold_predictions(per_run: pd.DataFrame, device: str = "cpu") -> pd.DataFrame:
    """Test predictions of every run of a per-run table (:meth:`CoursePlan.protocol_results`), one row per (run,
    test image): the run's ``name``, ``split``, ``folds``, ``fold``, ``seed``, ``run`` and ``split_file`` (the name
    of the split file it was scored on), then :func:`msvssm.train.split_predictions`' columns (``path``,
    ``participant``, ``trial``, ``label``, ``pred``, ``correct``, ``p_<class>``)."""
    from .train import split_predictions

    frames = []
    for r in per_run.itertuples():
        rows = split_predictions(r.run, "test", device=device)
        frames.append(rows.assign(name=r.name, split=r.split, folds=r.folds, fold=r.fold, seed=r.seed, run=r.run,
                                  split_file=r.split_file))
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
    """Per row of ``by`` and seed: the pooled accuracy over every fold's test side (each image once), its
    cluster-bootstrap interval over participants, the pooled weighted F1, the folds' own accuracies (mean, lowest,
    highest), and how many crops and people were tested."""
    by = (*by, "seed")
    check_each_image_once(predictions, by)
    rows = []
    for key, p in predictions.groupby(list(by), sort=False):
        acc, low, high = stats.cluster_bootstrap(p["correct"], p[UNIT], confidence, seed=seed)
        per_fold = p.groupby("fold")["correct"].mean()
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "accuracy": acc,
                     "ci_low": low, "ci_high": high, "weighted_f1": _weighted_f1(p["label"], p["pred"]),
                     "folds": len(per_fold), "fold mean": per_fold.mean(), "fold min": per_fold.min(),
                     "fold max": per_fold.max(), "crops": len(p), "people": p[UNIT].nunique()})
    return pd.DataFrame(rows)


def against(predictions: pd.DataFrame, reference: pd.DataFrame, label: str, by: Sequence[str] = ("split", "name"),
            seed: int = 0) -> pd.DataFrame:
    """Each row of ``by`` (and seed) against a reference scored on the same test images, image by image, people as
    the unit (:func:`msvssm.stats.paired_cluster_difference`: network - reference, its interval over people, the sign
    test over people).

    ``reference``: one classifier's verdicts with ``split_file``, ``path`` and ``correct`` columns: one floor of
    :func:`msvssm.classical.floor_predictions` on the same split files, or another network row of
    :func:`fold_predictions` (then matched seed by seed too). Images are matched on (split file, path), so a
    reference fitted on another fold assignment, where the image may have been a training image, never pairs."""
    if reference.empty:
        raise ValueError(f"no predictions of {label!r} to compare with")
    keys = ["split_file", "path"] + (["seed"] if "seed" in reference.columns else [])
    check_each_image_once(predictions, (*by, "seed"))
    ref = reference.drop_duplicates(keys).set_index(keys)["correct"]
    out = []
    for key, p in predictions.groupby([*by, "seed"], sort=False):
        index = pd.MultiIndex.from_frame(p[keys])
        missing = index.difference(ref.index)
        if len(missing):
            raise ValueError(f"{key}: {len(missing)} test image(s) {label!r} did not score on the same split file "
                             f"(was it fitted on the same split files?), e.g. {missing[0]}")
        test = stats.paired_cluster_difference(ref.loc[index].to_numpy(), p["correct"].to_numpy(),
                                               p[UNIT].to_numpy(), seed=seed)
        out.append({**dict(zip((*by, "seed"), key)), "against": label, **test})
    return pd.DataFrame(out)


def verdict(test: dict, alpha: float = 0.05) -> str:
    """In words, a :func:`against` row: above / below only when the interval over people excludes 0 *and* the sign
    test over people rejects "as many people better as worse" at ``alpha``; with n people the sign test cannot go
    below 2^(1-n), which the words say when that is what stops it."""
    n = int(test["b_better"] + test["a_better"])
    direction = "above" if test["ci_low"] > 0 else "below" if test["ci_high"] < 0 else None
    if direction and test["p_sign"] < alpha:
        return f"{direction} it"
    if direction:
        floor = 2.0 ** (1 - n) if n else 1.0
        why = (f"with {n} people who differ the sign test cannot go below p = {floor:.2g}" if floor >= alpha
               else "not for enough people to pass the sign test")
        return f"{direction} it on the pooled crops, but {why}"
    return "not distinguishable from it"


def split_files(plan, protocol: str) -> list[os.PathLike]:
    """The split file of each fold of ``protocol`` in ``plan`` (one file for the frame split)."""
    from .train.run import split_file_for

    return [split_file_for(plan.protocol_config(protocol, f)) for f in plan.fold_indices(protocol)]


__all__ = ["fold_predictions", "check_each_image_once", "cross_validated", "against", "verdict", "split_files"]

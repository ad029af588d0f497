"""The classical floor: HOG (or raw pixels) + logistic regression, scored like the networks.

A network that does not beat this on a split has learnt nothing a 2005 pipeline could not::

    >>> floor = ClassicalBaseline("hog").fit(train_images, train_labels, val=(val_images, val_labels))
    >>> floor.evaluate(test_images, test_labels, class_names)["accuracy"]   # classification_metrics dict

Features (grayscale, resized with OpenCV's INTER_AREA):

``hog``     ``skimage.feature.hog`` of a 64x64 crop: 8x8-pixel cells, 2x2-cell blocks,
            9 unsigned orientation bins, L2-Hys (64x64 -> 7*7*2*2*9 = 1764 values).
            (OpenCV 5 moved its HOGDescriptor out of the main package, so scikit-image.)
``pixels``  the 32x32 crop's 1024 grey values.

Classifier: features standardised on the training set, then scikit-learn's
``LogisticRegression``; its regularisation strength C is chosen on a validation set when
one is given (accuracy, C from small to large with warm starts), else ``C_default``.
``evaluate`` returns :func:`msvssm.evaluation.classification_metrics`, the same dict the
networks report.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .evaluation import classification_metrics
from .optional import require

FEATURES = ("hog", "pixels")
FEATURE_SIZE = {"hog": 64, "pixels": 32}
C_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def to_gray(images, size: int) -> np.ndarray:
    """Images -> (n, size, size) uint8 grayscale.

    ``images``: a sequence of file paths, or an array (n, H, W) / (n, H, W, 3) (BGR, as
    OpenCV reads) of uint8 or of floats in [0, 1].
    """
    cv2 = require("cv2", "analysis", "the classical baseline")

    out = np.empty((len(images), size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        if isinstance(img, (str, Path)):
            arr = cv2.imread(str(img), cv2.IMREAD_GRAYSCALE)
            if arr is None:
                raise FileNotFoundError(f"cannot read image {img}")
        else:
            arr = np.asarray(img)
            if arr.dtype != np.uint8:
                arr = np.clip(arr * 255.0 if arr.max() <= 1.0 else arr, 0, 255).astype(np.uint8)
            if arr.ndim == 3:
                arr = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
        out[i] = cv2.resize(arr, (size, size), interpolation=cv2.INTER_AREA)
    return out


def hog_features(gray: np.ndarray, cell: int = 8, block: int = 2, orientations: int = 9) -> np.ndarray:
    """HOG of each grayscale image (n, H, W) -> (n, n_features) float32 with scikit-image."""
    hog = require("skimage.feature", "analysis", "HOG features").hog

    return np.stack(
        [
            hog(g, orientations=orientations, pixels_per_cell=(cell, cell), cells_per_block=(block, block),
                block_norm="L2-Hys", feature_vector=True)
            for g in gray
        ]
    ).astype(np.float32)


def extract_features(images, kind: str = "hog") -> np.ndarray:
    """Images (paths or arrays, see :func:`to_gray`) -> (n, d) float32 features of ``kind``."""
    if kind not in FEATURES:
        raise ValueError(f"unknown feature kind {kind!r}; choose from {FEATURES}")
    gray = to_gray(images, FEATURE_SIZE[kind])
    if kind == "hog":
        return hog_features(gray)
    return gray.reshape(len(gray), -1).astype(np.float32)


class ClassicalBaseline:
    """Features + standardisation + logistic regression, with a fit / predict / evaluate interface.

    The ``*_features`` methods take precomputed features (to compute them once and reuse
    them across splits, as ``benchmarks/data_difficulty.py`` does); the others take images.
    Labels may be ints or strings; ``classes_`` holds them sorted after ``fit``.
    """

    def __init__(self, features: str = "hog", C_grid: Sequence[float] = C_GRID, C_default: float = 1e-2,
                 max_iter: int = 150):
        if features not in FEATURES:
            raise ValueError(f"unknown feature kind {features!r}; choose from {FEATURES}")
        self.features, self.C_grid, self.C_default, self.max_iter = features, tuple(C_grid), C_default, max_iter
        self.scaler = self.clf = self.C_ = self.classes_ = None

    # ------------------------------------------------------------------ on features
    def fit_features(self, X: np.ndarray, y, val: tuple[np.ndarray, Sequence] | None = None) -> "ClassicalBaseline":
        """Fit on features X (n, d) and labels y; choose C on ``val = (X_val, y_val)`` if given."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.scaler = StandardScaler().fit(X)
        Xtr = self.scaler.transform(X)
        has_val = val is not None and len(val[1]) > 0
        grid = self.C_grid if has_val else (self.C_default,)
        clf = LogisticRegression(max_iter=self.max_iter, warm_start=True)
        best = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for C in grid:  # small to large: each fit starts from the previous solution
                clf.set_params(C=C)
                clf.fit(Xtr, y)
                score = float((clf.predict(self.scaler.transform(val[0])) == np.asarray(val[1])).mean()) if has_val else 0.0
                if best is None or score > best[0]:
                    best = (score, C, (clf.coef_.copy(), clf.intercept_.copy()))
        self.C_ = best[1]
        clf.coef_, clf.intercept_ = best[2]
        self.clf = clf
        return self

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels (same kind as the training labels) for features X (n, d)."""
        if self.clf is None:
            raise RuntimeError("call fit first")
        return self.clf.predict(self.scaler.transform(X))

    def evaluate_features(self, X: np.ndarray, y, class_names: Sequence[str] | None = None) -> dict:
        return self._score(np.asarray(y), self.predict_features(X), class_names)

    # ------------------------------------------------------------------ on images
    def fit(self, images, y, val: tuple | None = None) -> "ClassicalBaseline":
        """Fit on images (paths or arrays) and labels; ``val = (images, labels)`` chooses C."""
        val_feats = None if val is None else (extract_features(val[0], self.features), val[1])
        return self.fit_features(extract_features(images, self.features), y, val_feats)

    def predict(self, images) -> np.ndarray:
        return self.predict_features(extract_features(images, self.features))

    def evaluate(self, images, y, class_names: Sequence[str] | None = None) -> dict:
        """:func:`classification_metrics` of the predictions on ``images`` against ``y``.

        ``class_names``: the label order of the report. Default: the training classes
        (as strings). With int labels, label i is ``class_names[i]``.
        """
        return self._score(np.asarray(y), self.predict(images), class_names)

    def _score(self, y: np.ndarray, pred: np.ndarray, class_names) -> dict:
        if class_names is None:
            class_names = [str(c) for c in self.classes_]
        class_names = list(class_names)
        if y.dtype.kind in "iu":
            return classification_metrics(y, pred.astype(int), class_names)
        index = {name: i for i, name in enumerate(class_names)}
        unknown = set(map(str, y)) - set(index)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} are not in class_names {class_names}")
        return classification_metrics([index[str(v)] for v in y], [index[str(v)] for v in pred], class_names)


def majority_baseline(y_train, y_test, class_names: Sequence[str] | None = None) -> dict:
    """Always the most frequent training label: the chance level of a split, as a metrics dict."""
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    values, counts = np.unique(y_train, return_counts=True)
    major = values[np.argmax(counts)]
    names = list(class_names) if class_names is not None else [str(c) for c in np.unique(np.concatenate([y_train, y_test]))]
    if y_test.dtype.kind in "iu":
        return classification_metrics(y_test, np.full(len(y_test), int(major)), names)
    index = {n: i for i, n in enumerate(names)}
    return classification_metrics([index[str(v)] for v in y_test], [index[str(major)]] * len(y_test), names)


def floor_predictions(data_dir: str | Path, split_files: Sequence[str | Path], features: str = "hog"):
    """The two floors' verdict on every test image of each split file: a DataFrame with one row per (split file,
    floor, test image): ``split_file`` (its name), ``floor`` (``"HOG + logistic"`` or ``"constant guess"``), the split
    file's columns (``path``, ``participant``, ``trial``, ``label``), ``pred`` and ``correct``.

    Per file the classifier is fitted on the ``train`` rows with C chosen on ``val``, the constant guess is the
    most frequent training label; features are extracted once per image over all the files (the folds of a
    cross-validation share their images). Deterministic: no seeds."""
    import pandas as pd

    data_dir = Path(data_dir)
    tables = {Path(f).name: pd.read_csv(f, dtype=str, keep_default_na=False) for f in split_files}
    paths = sorted({p for t in tables.values() for p in t["path"]})
    cache = dict(zip(paths, extract_features([data_dir / p for p in paths], features)))
    name = f"{features.upper() if features == 'hog' else features} + logistic"
    out = []
    for file, rows in tables.items():
        part = {s: rows[rows["split"] == s] for s in ("train", "val", "test")}
        X = {s: np.stack([cache[p] for p in t["path"]]) if len(t) else np.zeros((0, len(cache[paths[0]])), np.float32)
             for s, t in part.items()}
        y = {s: t["label"].to_numpy() for s, t in part.items()}
        clf = ClassicalBaseline(features).fit_features(X["train"], y["train"], val=(X["val"], y["val"]))
        values, counts = np.unique(y["train"], return_counts=True)
        test = part["test"][["path", "participant", "trial", "label"]]
        for floor, pred in ((name, clf.predict_features(X["test"])), ("constant guess", values[np.argmax(counts)])):
            out.append(test.assign(split_file=file, floor=floor, pred=pred))
    table = pd.concat(out, ignore_index=True)
    table["correct"] = table["label"] == table["pred"]
    return table[["split_file", "floor", "path", "participant", "trial", "label", "pred", "correct"]]


def floors_on_split(data_dir: str | Path, split_file: str | Path, class_names: Sequence[str],
                    features: str = "hog") -> dict[str, dict]:
    """The two floors every network is compared with, on one split file of a faces folder.

    Returns ``{"HOG + logistic": metrics, "constant guess": metrics}`` (metrics as
    :func:`msvssm.evaluation.classification_metrics`): :func:`floor_predictions` scored. Deterministic: one
    number per split, no seeds.
    """
    index = {n: i for i, n in enumerate(class_names)}
    table = floor_predictions(data_dir, [split_file], features)
    unknown = sorted(set(table["label"]) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not in class_names {list(class_names)}")
    return {floor: classification_metrics(rows["label"].map(index).to_numpy(), rows["pred"].map(index).to_numpy(),
                                          list(class_names))
            for floor, rows in table.groupby("floor", sort=False)}

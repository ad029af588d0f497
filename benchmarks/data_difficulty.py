"""Data difficulty: how separable are the face crops, per split protocol, for simple baselines?

    python benchmarks/data_difficulty.py [--data DIR] [--seeds 0 1 2] [--profile cpu]

Prepares the default dataset (synthetic DEAP -> face crops; resumes, so it is quick
once done), then for each protocol (frame, trial, subject) and each seed makes the
split with :func:`msvssm.data.splits.make_splits` and fits fast scikit-learn
baselines on features of the crops:

``majority``  the most frequent training label, always (chance level of the split)
``pixels``    logistic regression on standardised 32x32 grayscale pixels
``hog``       logistic regression on standardised HOG features of 64x64 grayscale
              crops (8x8-pixel cells, 2x2-cell blocks, 9 unsigned bins, L2-Hys;
              computed in numpy because the installed OpenCV has no HOGDescriptor)

The regularisation strength C of each logistic regression is chosen on the split's
``val`` side; the model is trained on ``train`` only and scored on ``test``. Test
accuracy and weighted F1 are printed as mean +- std over seeds, one row per
protocol. The features of all crops are computed once and reused by every split.

What to expect from a non-trivial generator: frame > trial > subject (the random
frame split leaks near-duplicate frames of one video into the test side) with the
subject split above majority but far from perfect, and the frame split not at ~100 %.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

PROTOCOLS = ("frame", "trial", "subject")
BASELINES = ("majority", "pixels", "hog")
C_GRID = (1e-3, 1e-2, 1e-1, 1.0)


# ----------------------------------------------------------------------------- features


def hog_features(imgs: np.ndarray, cell: int = 8, nbins: int = 9, block: int = 2) -> np.ndarray:
    """HOG of a stack of grayscale images (n, H, W), in numpy (this OpenCV build has no HOGDescriptor).

    Unsigned gradients (0-180 deg) from central differences, magnitude-weighted
    orientation histograms per ``cell`` x ``cell`` pixels with linear interpolation
    between neighbouring bins, ``block`` x ``block`` cells per block at a stride of
    one cell, L2-Hys block normalisation (clip 0.2). 64x64 -> 7*7 blocks * 4 * 9 = 1764.
    """
    x = imgs.astype(np.float32)
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    gx[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    gy[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    mag = np.hypot(gx, gy)
    ang = np.rad2deg(np.arctan2(gy, gx)) % 180.0
    width = 180.0 / nbins
    pos = ang / width - 0.5  # bin centres at (k + 0.5) * width
    lo = np.floor(pos).astype(np.int64)
    frac = (pos - lo).astype(np.float32)
    lo_bin, hi_bin = lo % nbins, (lo + 1) % nbins
    n, h, w = x.shape
    ch, cw = h // cell, w // cell
    hist = np.zeros((n, ch, cw, nbins), dtype=np.float32)
    # pixel -> cell index, then scatter-add both bin contributions
    cy = np.minimum(np.arange(h) // cell, ch - 1)
    cx = np.minimum(np.arange(w) // cell, cw - 1)
    cell_id = (cy[:, None] * cw + cx[None, :]).reshape(-1)
    flat = hist.reshape(n, ch * cw * nbins)
    rows = np.arange(n)[:, None]
    for bins, weight in ((lo_bin, 1.0 - frac), (hi_bin, frac)):
        idx = cell_id[None, :] * nbins + bins.reshape(n, -1)
        np.add.at(flat, (np.broadcast_to(rows, idx.shape), idx), (mag * weight).reshape(n, -1))
    hist = flat.reshape(n, ch, cw, nbins)
    blocks = []
    for by in range(ch - block + 1):
        for bx in range(cw - block + 1):
            v = hist[:, by : by + block, bx : bx + block, :].reshape(n, -1)
            v = v / np.sqrt((v**2).sum(1, keepdims=True) + 1e-6)
            v = np.minimum(v, 0.2)
            v = v / np.sqrt((v**2).sum(1, keepdims=True) + 1e-6)
            blocks.append(v)
    return np.concatenate(blocks, axis=1)


def load_features(faces: Path, rel_paths: list[str]) -> dict[str, np.ndarray]:
    """Grayscale crops -> {"pixels": (n, 1024) float32, "hog": (n, 1764) float32}."""
    import cv2

    n = len(rel_paths)
    pix = np.empty((n, 32 * 32), dtype=np.float32)
    g64 = np.empty((n, 64, 64), dtype=np.uint8)
    for i, rel in enumerate(rel_paths):
        img = cv2.imread(str(faces / rel), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise FileNotFoundError(f"cannot read crop {faces / rel}")
        pix[i] = cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA).reshape(-1)
        g64[i] = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)
    hogs = np.concatenate([hog_features(g64[i : i + 512]) for i in range(0, n, 512)], axis=0)
    return {"pixels": pix, "hog": hogs}


# ----------------------------------------------------------------------------- models


def _weighted_f1(y_true, y_pred) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def _accuracy(y_true, y_pred) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred))


def fit_logreg(X, y, idx_tr, idx_va, idx_te) -> tuple[np.ndarray, float]:
    """Standardise + logistic regression, C chosen on val (accuracy); returns (test predictions, C)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X[idx_tr])
    Xtr, Xte = scaler.transform(X[idx_tr]), scaler.transform(X[idx_te])
    Xva = scaler.transform(X[idx_va]) if len(idx_va) else None
    grid = C_GRID if Xva is not None else (1e-2,)
    # warm start along the C path (small to large): each fit starts from the previous solution
    clf = LogisticRegression(max_iter=150, warm_start=True)
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in grid:
            clf.set_params(C=C)
            clf.fit(Xtr, y[idx_tr])
            score = _accuracy(y[idx_va], clf.predict(Xva)) if Xva is not None else 0.0
            if best is None or score > best[0]:
                best = (score, C, clf.predict(Xte))
    return best[2], best[1]


# ----------------------------------------------------------------------------- main


def _fmt(values: list[float]) -> str:
    a = np.asarray(values, dtype=float) * 100
    return f"{a.mean():5.1f} ± {a.std():4.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "data"), help="data folder (prepared if needed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profile", default="cpu", help="run profile (dataset scale and crop size)")
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    args = parser.parse_args(argv)

    import logging

    import pandas as pd

    from msvssm.data.dataset import read_manifest
    from msvssm.data.prepare import prepare_faces
    from msvssm.data.splits import make_splits, read_split
    from msvssm.profiles import get_profile

    t0 = time.perf_counter()
    faces = Path(prepare_faces(args.data, get_profile(args.profile)))
    t_prep = time.perf_counter() - t0
    print(f"faces: {faces}  (prepare: {t_prep:.1f} s)")
    # the frame protocol logs a leakage warning on every call: we know, say it once
    logging.getLogger("msvssm.data.splits").setLevel(logging.ERROR)

    t1 = time.perf_counter()
    manifest = read_manifest(faces, ok_only=True)
    paths = manifest["path"].tolist()
    feats = load_features(faces, paths)
    row_of = {p: i for i, p in enumerate(paths)}
    t_feat = time.perf_counter() - t1
    n_part = manifest["participant"].nunique()
    n_trials = (manifest["participant"] + "/" + manifest["trial"]).nunique()
    counts = manifest["label"].value_counts().sort_index()
    print(
        f"crops: {len(paths)} from {n_trials} trials of {n_part} participants; labels "
        + ", ".join(f"{k}={v}" for k, v in counts.items())
        + f"  (features: {t_feat:.1f} s; pixels {feats['pixels'].shape[1]}-d, hog {feats['hog'].shape[1]}-d)"
    )

    results = {p: {b: {"acc": [], "f1": []} for b in BASELINES} for p in args.protocols}
    print("\nper split (test side):")
    print(f"  {'protocol':8} {'seed':>4} {'train':>6} {'val':>5} {'test':>5} {'majority(train)':>16} "
          f"{'chance acc':>10} {'max test share':>14}  {'C pixels':>8} {'C hog':>6} {'pix acc':>7} {'hog acc':>7}")
    print("  (chance acc = always the training majority; max test share = best constant guess in hindsight)")
    t2 = time.perf_counter()
    for protocol in args.protocols:
        for seed in args.seeds:
            (split_path,) = make_splits(faces, protocol, seed=seed)
            split = read_split(split_path)
            idx = np.array([row_of[p] for p in split["path"]])
            y_all = np.empty(len(paths), dtype=object)
            y_all[idx] = split["label"].to_numpy()
            side = split["split"].to_numpy()
            idx_tr, idx_va, idx_te = idx[side == "train"], idx[side == "val"], idx[side == "test"]
            y = y_all
            y_te = y[idx_te].astype(str)

            # (a) majority of the training labels
            major = pd.Series(y[idx_tr]).value_counts().idxmax()
            pred = np.full(len(idx_te), major, dtype=object).astype(str)
            results[protocol]["majority"]["acc"].append(_accuracy(y_te, pred))
            results[protocol]["majority"]["f1"].append(_weighted_f1(y_te, pred))
            max_share = pd.Series(y_te).value_counts(normalize=True).max()

            # (b), (c) logistic regression on pixels / HOG
            chosen = {}
            for name in ("pixels", "hog"):
                pred, C = fit_logreg(feats[name], y.astype(str), idx_tr, idx_va, idx_te)
                chosen[name] = C
                results[protocol][name]["acc"].append(_accuracy(y_te, pred))
                results[protocol][name]["f1"].append(_weighted_f1(y_te, pred))
            print(
                f"  {protocol:8} {seed:>4} {len(idx_tr):>6} {len(idx_va):>5} {len(idx_te):>5} {major:>16} "
                f"{results[protocol]['majority']['acc'][-1] * 100:>9.1f}% {max_share * 100:>13.1f}%  "
                f"{chosen['pixels']:>8g} {chosen['hog']:>6g} "
                f"{results[protocol]['pixels']['acc'][-1] * 100:>6.1f}% {results[protocol]['hog']['acc'][-1] * 100:>6.1f}%"
            )
    t_fit = time.perf_counter() - t2

    seeds = " ".join(str(s) for s in args.seeds)
    for metric, title in (("acc", "test accuracy (%)"), ("f1", "test weighted F1 (%)")):
        print(f"\n{title}, mean ± std over seeds {seeds}")
        header = f"| {'protocol':8} | " + " | ".join(f"{b:>13}" for b in BASELINES) + " |"
        print(header)
        print("|" + "-" * 10 + "|" + "|".join("-" * 15 for _ in BASELINES) + "|")
        for protocol in args.protocols:
            cells = " | ".join(f"{_fmt(results[protocol][b][metric]):>13}" for b in BASELINES)
            print(f"| {protocol:8} | {cells} |")

    total = time.perf_counter() - t1
    print(f"\nruntime after data preparation: {total:.1f} s (features {t_feat:.1f} s, splits + fits {t_fit:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

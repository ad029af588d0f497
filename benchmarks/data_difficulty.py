"""Data difficulty: how separable are the face crops, per split protocol, for simple baselines?

    python benchmarks/data_difficulty.py [--data DIR] [--seeds 0 1 2] [--profile cpu]

Prepares the default dataset (synthetic DEAP -> face crops; resumes, so it is quick
once done), then for each protocol (frame, trial, subject) and each seed makes the
split with :func:`msvssm.data.splits.make_splits` and fits fast scikit-learn
baselines on features of the crops:

``majority``  the most frequent training label, always (chance level of the split)
``pixels``    logistic regression on standardised 32x32 grayscale pixels
``hog``       logistic regression on standardised HOG features of 64x64 grayscale
              crops (8x8-pixel cells, 2x2-cell blocks, 9 unsigned bins, L2-Hys)

The baselines are the library's classical floor, :mod:`msvssm.classical`
(``ClassicalBaseline``, ``majority_baseline``), scored with
:func:`msvssm.evaluation.classification_metrics` like the networks.

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
from pathlib import Path

import numpy as np

PROTOCOLS = ("frame", "trial", "subject")
BASELINES = ("majority", "pixels", "hog")


# ----------------------------------------------------------------------------- features


def load_features(faces: Path, rel_paths: list[str]) -> dict[str, np.ndarray]:
    """Crops -> {"pixels": (n, 1024), "hog": (n, 1764)} float32, with :mod:`msvssm.classical`."""
    from msvssm.classical import extract_features

    files = [faces / rel for rel in rel_paths]
    return {kind: extract_features(files, kind) for kind in ("pixels", "hog")}


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

    from msvssm.classical import ClassicalBaseline, majority_baseline
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
    class_names = sorted(str(k) for k in counts.index)
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
            scores = majority_baseline(y[idx_tr].astype(str), y_te, class_names)
            results[protocol]["majority"]["acc"].append(scores["accuracy"])
            results[protocol]["majority"]["f1"].append(scores["weighted_f1"])
            max_share = pd.Series(y_te).value_counts(normalize=True).max()

            # (b), (c) logistic regression on pixels / HOG, C chosen on val
            chosen = {}
            for name in ("pixels", "hog"):
                X = feats[name]
                val = (X[idx_va], y[idx_va].astype(str)) if len(idx_va) else None
                floor = ClassicalBaseline(name).fit_features(X[idx_tr], y[idx_tr].astype(str), val)
                scores = floor.evaluate_features(X[idx_te], y_te, class_names)
                chosen[name] = floor.C_
                results[protocol][name]["acc"].append(scores["accuracy"])
                results[protocol][name]["f1"].append(scores["weighted_f1"])
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

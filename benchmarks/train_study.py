"""The training study: which recipe gives the most test accuracy per CPU minute?

    python benchmarks/train_study.py [--data DIR] [--root build/study] [--epochs 20] [--part grid|seeds|all]

``grid``  one run per setting with ``track_test=True`` (the test split is scored after every
          epoch for the curves only; model selection still uses validation): both nano models x
          augmentation {none, flip, paper} on the frame split, lr 2e-3, a 20-epoch schedule.
``floor`` HOG + logistic regression and the best constant guess on the same split files.
``seeds`` the chosen ``cpu`` profile recipe, as ``msvssm train`` runs it, over seeds 0-2 for
          both models on the frame and subject splits: wall time, test accuracy, seed-to-seed spread.

Runs are cached (``msvssm.train.sweep``): rerunning trains only what is missing. Writes
``ROOT/curves.csv``, ``ROOT/seeds.csv`` and the figure ``docs/figures/training_study.png``;
``docs/training_study.md`` reports what this printed. Every number is on the synthetic DEAP.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]

AUGMENT = {
    "none": dict(augment="none"),
    "flip": dict(augment="paper", degrees=0.0, translate=0.0, brightness=0.0, contrast=0.0, saturation=0.0),
    "paper": dict(augment="paper"),
}


def grid_rows(epochs: int) -> dict[str, dict]:
    rows = {}
    for model in ("vssm_nano", "msvssm_nano"):
        for aug in ("none", "flip", "paper"):
            rows[f"{model} frame aug={aug} lr=2e-3"] = dict(model=model, split="frame", lr=2e-3, **AUGMENT[aug])
    return {name: {**changes, "epochs": epochs, "track_test": True} for name, changes in rows.items()}


def run_grid(data: Path, root: Path, epochs: int) -> pd.DataFrame:
    from msvssm.train import TrainConfig
    from msvssm.train.sweep import Sweep

    sweep = Sweep(root / "grid", TrainConfig.from_profile("cpu", data=str(data)))
    for name, changes in grid_rows(epochs).items():
        sweep.add(name, **changes)
    sweep.run(seeds=[0], progress=False)
    curves = []
    for name, _, cfg in sweep.configs([0]):
        h = pd.read_csv(Path(cfg.out) / "history.csv")
        h["minutes"] = h["seconds"].cumsum() / 60
        h.insert(0, "name", name)
        curves.append(h)
    return pd.concat(curves, ignore_index=True)


def run_seeds(data: Path, root: Path) -> pd.DataFrame:
    from msvssm.train import TrainConfig
    from msvssm.train.sweep import Sweep, run_summary

    rows = []
    for split in ("frame", "subject"):
        sweep = Sweep(root / "seeds", TrainConfig.from_profile("cpu", data=str(data), split=split))
        for model in ("vssm_nano", "msvssm_nano"):
            sweep.add(f"{model} {split}", model=model)
        sweep.run(seeds=[0, 1, 2], progress=False)
        rows += [run_summary(cfg.out, name) for name, _, cfg in sweep.configs([0, 1, 2])]
    return pd.DataFrame(rows)


def run_floors(data: Path) -> pd.DataFrame:
    """HOG + logistic regression and the best constant guess on the study's own split files."""
    from msvssm.classical import ClassicalBaseline, extract_features, majority_baseline
    from msvssm.data import read_classes, read_manifest
    from msvssm.data.splits import make_splits, read_split, split_name

    classes = read_classes(data)
    manifest = read_manifest(data)
    features = extract_features([str(data / p) for p in manifest["path"]], "hog")
    row_of = {p: i for i, p in enumerate(manifest["path"])}
    rows = []
    for protocol in ("frame", "trial", "subject"):
        path = data / "splits" / f"{split_name(protocol, 0)}.csv"
        split = read_split(path if path.exists() else make_splits(data, protocol)[0])
        side = {k: split[split["split"] == k] for k in ("train", "val", "test")}
        X = {k: features[[row_of[p] for p in v["path"]]] for k, v in side.items()}
        y = {k: [classes.index(c) for c in v["label"]] for k, v in side.items()}
        hog = ClassicalBaseline("hog").fit_features(X["train"], y["train"], val=(X["val"], y["val"]))
        for name, m in (("HOG + logistic regression", hog.evaluate_features(X["test"], y["test"], classes)),
                        ("best constant guess", majority_baseline(y["train"], y["test"], classes))):
            rows.append({"split": protocol, "method": name, "accuracy": m["accuracy"], "weighted_f1": m["weighted_f1"]})
    return pd.DataFrame(rows)


def plot_curves(curves: pd.DataFrame, path: Path) -> None:
    from msvssm import plots

    fig, axes = plots.plt.subplots(1, 2, figsize=(12, 4.2))
    for name, h in curves.groupby("name", sort=False):
        style = "-" if name.startswith("msvssm") else "--"
        axes[0].plot(h["epoch"], h["test_accuracy"], style, marker=".", label=name)
        axes[1].plot(h["minutes"], h["test_accuracy"], style, marker=".", label=name)
    for ax, title in zip(axes, ("test accuracy per epoch", "test accuracy against training minutes (2 cores)")):
        ax.set_title(f"frame split, synthetic DEAP: {title}", fontsize=9)
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_xlabel("epoch (of a 20-epoch cosine schedule)")
    axes[1].set_xlabel("minutes of training and validation (one process)")
    plots.save_figure(fig, path.parent, path.stem, close=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "faces-synth-default-128")
    parser.add_argument("--root", type=Path, default=REPO / "build" / "study")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--part", choices=("floor", "grid", "seeds", "all"), default="all")
    args = parser.parse_args()
    if not (args.data / "manifest.csv").exists():
        sys.exit(f"no face crops in {args.data}: run `make reproduce` first, or pass --data")
    from msvssm.utils import setup_logging

    setup_logging("INFO")
    pd.set_option("display.width", 200)
    if args.part in ("floor", "all"):
        floors = run_floors(args.data)
        args.root.mkdir(parents=True, exist_ok=True)
        floors.to_csv(args.root / "floors.csv", index=False, float_format="%.4f")
        print("\nclassical floor and best constant guess on the same split files (test side):")
        print(floors.round(4).to_string(index=False))
    if args.part in ("grid", "all"):
        curves = run_grid(args.data, args.root, args.epochs)
        curves.to_csv(args.root / "curves.csv", index=False, float_format="%.4f")
        plot_curves(curves, REPO / "docs" / "figures" / "training_study.png")
        best = curves.loc[curves.groupby("name", sort=False)["test_accuracy"].idxmax()]
        print("\nbest test accuracy per setting (epoch, minutes):")
        print(best[["name", "epoch", "minutes", "test_accuracy", "train_accuracy"]].to_string(index=False))
        at = curves[curves["epoch"].isin([5, 10, 15, 20])].pivot(index="name", columns="epoch", values="test_accuracy")
        print("\ntest accuracy at epochs 5 / 10 / 15 / 20:")
        print(at.round(3).to_string())
    if args.part in ("seeds", "all"):
        seeds = run_seeds(args.data, args.root)
        seeds.to_csv(args.root / "seeds.csv", index=False, float_format="%.4f")
        table = seeds.groupby("name", sort=False).agg(
            accuracy_mean=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
            weighted_f1_mean=("weighted_f1", "mean"), weighted_f1_std=("weighted_f1", "std"),
            minutes=("train_seconds", lambda s: s.mean() / 60))
        print("\nthe cpu profile over seeds 0-2 (test split, selected on validation):")
        print(table.round(4).to_string())


if __name__ == "__main__":
    main()

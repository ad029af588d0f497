"""Figures for the notebooks. Each function returns a matplotlib Figure; ``save_figure``
writes it to ``figures/`` under a stable name (atomically, PNG).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless by default; notebooks show inline anyway

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .utils import atomic_path  # noqa: E402

CLASS_ORDER = ("HVHA", "HVLA", "LVHA", "LVLA")


def save_figure(fig: plt.Figure, figures_dir: str | os.PathLike, name: str, dpi: int = 120, close: bool = False) -> Path:
    """Write ``fig`` to ``figures_dir/name.png``; returns the path. ``close`` frees it (batch jobs)."""
    path = Path(figures_dir) / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png", metadata={"Software": None})
    if close:
        plt.close(fig)
    return path


def plot_class_balance(manifest: pd.DataFrame, title: str = "") -> plt.Figure:
    """Bar chart of face crops per class (rows with status ok)."""
    ok = manifest[manifest["status"] == "ok"]
    counts = ok["label"].value_counts().reindex(CLASS_ORDER, fill_value=0)
    fig, ax = plt.subplots(figsize=(5, 3))
    sns.barplot(x=list(counts.index), y=counts.values, ax=ax, color="tab:blue")
    for i, v in enumerate(counts.values):
        ax.text(i, v, str(int(v)), ha="center", va="bottom")
    ax.set_ylabel("face crops")
    ax.set_title(title or f"{len(ok)} face crops from {ok.groupby(['participant', 'trial']).ngroups} videos")
    return fig


def plot_face_grid(data_dir: str | os.PathLike, manifest: pd.DataFrame, per_class: int = 6, seed: int = 0) -> plt.Figure:
    """A row of random face crops per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ok = manifest[manifest["status"] == "ok"]
    fig, axes = plt.subplots(len(CLASS_ORDER), per_class, figsize=(1.6 * per_class, 1.7 * len(CLASS_ORDER)))
    for r, label in enumerate(CLASS_ORDER):
        rows = ok[ok["label"] == label]
        picks = rows.iloc[rng.permutation(len(rows))[:per_class]] if len(rows) else rows
        for c in range(per_class):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(picks):
                row = picks.iloc[c]
                ax.imshow(Image.open(Path(data_dir) / row["path"]).convert("RGB"))
                ax.set_title(f"s{int(row['participant']):02d} t{int(row['trial']):02d}", fontsize=7)
        axes[r, 0].text(-0.15, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=11)
    fig.suptitle("Face crops per class (valence/arousal quadrant)")
    return fig


def plot_detection(frame_bgr: np.ndarray, face_box: Sequence[float], crop_box: Sequence[float], title: str = "") -> plt.Figure:
    """One video frame with dlib's box (green) and the enlarged crop box (orange)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.imshow(frame_bgr[:, :, ::-1])
    for box, color, name in ((face_box, "lime", "dlib"), (crop_box, "orange", "+20% crop")):
        x0, y0, x1, y1 = box
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=color, lw=2, label=name))
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    ax.axis("off")
    return fig


def plot_split_sizes(split_tables: dict[str, pd.DataFrame]) -> plt.Figure:
    """Stacked bars: frames per part (train/val/test) for each split protocol."""
    counts = pd.DataFrame(
        {name: df["split"].value_counts().reindex(["train", "val", "test"], fill_value=0) for name, df in split_tables.items()}
    ).T
    fig, ax = plt.subplots(figsize=(5, 3))
    counts.plot.barh(stacked=True, ax=ax, color=["tab:blue", "tab:orange", "tab:green"])
    ax.set_xlabel("frames")
    ax.set_title("Split protocols")
    return fig


def plot_impulse_response(responses: dict[str, np.ndarray], title: str = "") -> plt.Figure:
    """Lines y_t of a scan fed a single impulse at t = 0, one line per setting."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for label, y in responses.items():
        ax.plot(np.arange(len(y)), y, label=label, marker=".", ms=3)
    ax.set_xlabel("time step t")
    ax.set_ylabel("output y_t")
    ax.set_title(title or "Selective scan: impulse response")
    ax.legend(fontsize=8)
    return fig


def plot_scan_orders(orders: np.ndarray, titles: Sequence[str]) -> plt.Figure:
    """orders: (K, h, w) position of each pixel in each scan sequence."""
    k, h, w = orders.shape
    fig, axes = plt.subplots(1, k, figsize=(2.6 * k, 2.6 * h / w + 0.6))
    for ax, order, title in zip(np.atleast_1d(axes), orders, titles):
        ax.imshow(order, cmap="viridis")
        for i in range(h):
            for j in range(w):
                ax.text(j, i, int(order[i, j]), ha="center", va="center", fontsize=7, color="white")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Cross-scan: the position of each pixel in the four sequences")
    return fig


def plot_ablation_cost(table: pd.DataFrame) -> plt.Figure:
    """Bars of parameters (M) and FLOPs (G) for each ablation row."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, col, label in zip(axes, ("params_M", "gflops"), ("parameters (M)", "GFLOPs (fvcore, MACs)")):
        sns.barplot(x=table[col].values, y=list(table.index), ax=ax, color="tab:purple")
        ax.set_xlabel(label)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- training results


def plot_confusion(normalized: Sequence[Sequence[float]], class_names: Sequence[str], title: str = "") -> plt.Figure:
    """The paper's Fig. 2: the confusion matrix with each row divided by its true count (rows: true class)."""
    matrix = np.asarray(normalized, dtype=float)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    sns.heatmap(matrix, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="Blues", square=True, cbar=True,
                xticklabels=list(class_names), yticklabels=list(class_names), ax=ax)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix (row-normalised)", fontsize=9)
    return fig


def plot_training_curves(history: pd.DataFrame, title: str = "") -> plt.Figure:
    """The paper's Fig. 3: loss and accuracy per epoch, training and validation side by side."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = history["epoch"]
    ax_loss.plot(epochs, history["train_loss"], marker=".", label="train (with smoothing, augmented)")
    ax_loss.plot(epochs, history["val_loss"], marker=".", label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend(fontsize=8)
    ax_acc.plot(epochs, history["train_accuracy"], marker=".", label="train (augmented)")
    ax_acc.plot(epochs, history["val_accuracy"], marker=".", label="validation")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig

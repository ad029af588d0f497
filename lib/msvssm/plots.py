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
    """Stacked bars: frames per part (train/val/test) for each split protocol, counts on the bars."""
    parts = ["train", "val", "test"]
    counts = pd.DataFrame(
        {name: df["split"].value_counts().reindex(parts, fill_value=0) for name, df in split_tables.items()}
    ).T
    fig, ax = plt.subplots(figsize=(6, 0.6 * len(counts) + 1.4))
    left = np.zeros(len(counts))
    for part, color in zip(parts, ["tab:blue", "tab:orange", "tab:green"]):
        values = counts[part].to_numpy()
        bars = ax.barh(list(counts.index), values, left=left, color=color, label=part)
        ax.bar_label(bars, labels=[str(int(v)) if v else "" for v in values], label_type="center", fontsize=8,
                     color="white")
        left += values
    ax.set_xlabel("face crops (frames)")
    ax.set_ylabel("split protocol")
    ax.invert_yaxis()
    ax.legend(title="part", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_title("Split protocols: frames per part")
    return fig


def plot_impulse_response(responses: dict[str, np.ndarray], title: str = "", raw: dict[str, np.ndarray] | None = None) -> plt.Figure:
    """Impulse responses of a scan fed a single 1 at t = 0, one line per setting.

    ``responses`` are normalised, y_t / y_0 (the share of the impulse still remembered);
    ``raw``, if given, are the unnormalised y_t, drawn in a second panel on the left.
    """
    panels = ([("output y_t (unnormalised)", raw, "unnormalised: Δ also scales the input in")] if raw else []) + [
        ("y_t / y_0 (share remembered)", responses, "normalised: the decay alone")
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.2), squeeze=False)
    for ax, (ylabel, lines, subtitle) in zip(axes[0], panels):
        for label, y in lines.items():
            ax.plot(np.arange(len(y)), y, label=label, marker=".", ms=3)
        ax.set_xlabel("time step t (steps after the impulse)")
        ax.set_ylabel(ylabel)
        ax.set_title(subtitle, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Selective scan: impulse response")
    fig.tight_layout()
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


def plot_training_curves(history: pd.DataFrame, title: str = "", loss_floor: float | None = None) -> plt.Figure:
    """The paper's Fig. 3: loss and accuracy per epoch, training and validation side by side; ``loss_floor``: the
    lowest training loss label smoothing allows (:func:`msvssm.stats.label_smoothing_floor`), drawn dashed."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = history["epoch"]
    ax_loss.plot(epochs, history["train_loss"], marker=".", label="train (label smoothing included)")
    ax_loss.plot(epochs, history["val_loss"], marker=".", label="validation")
    if loss_floor:
        ax_loss.axhline(loss_floor, ls="--", lw=1, color="gray", label=f"training loss floor with smoothing: {loss_floor:.3f}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend(fontsize=8)
    ax_acc.plot(epochs, history["train_accuracy"], marker=".", label="train (as augmented by the recipe)")
    ax_acc.plot(epochs, history["val_accuracy"], marker=".", label="validation")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend(fontsize=8)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_lr_range(table: pd.DataFrame, recipe_lr: float, suggested: float, title: str = "") -> plt.Figure:
    """The learning-rate range test (:mod:`msvssm.lr_range`): training loss per step against the learning rate
    (log axis), raw and smoothed, with the recipe's learning rate and the steepest-fall suggestion marked."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(table["lr"], table["loss"], color="tab:blue", alpha=0.3, lw=1, label="loss per batch")
    ax.plot(table["lr"], table["smoothed"], color="tab:blue", lw=2, label="smoothed")
    ax.axvline(recipe_lr, color="tab:green", ls="--", lw=1.2, label=f"the recipe's lr {recipe_lr:g}")
    ax.axvline(suggested, color="tab:red", ls=":", lw=1.2, label=f"steepest fall {suggested:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (raised every batch)")
    ax.set_ylabel("training loss")
    low, high = table["smoothed"].min(), table["smoothed"].iloc[: max(3, len(table) // 10)].max()
    ax.set_ylim(max(0.0, low - 0.2 * (high - low)), high + 0.5 * (high - low))
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_reliability(table: pd.DataFrame, ece: float, title: str = "") -> plt.Figure:
    """A reliability diagram from :func:`msvssm.stats.calibration_table`: accuracy against mean confidence per bin
    (bars at the bins, the diagonal = perfect calibration), with each bin's share of the images beside it."""
    fig, (ax, ax_n) = plt.subplots(1, 2, figsize=(8.5, 3.4), gridspec_kw={"width_ratios": [3, 2]})
    centres = (table["low"] + table["high"]) / 2
    width = float((table["high"] - table["low"]).iloc[0]) if len(table) else 0.1
    ax.bar(centres, table["accuracy"], width=width * 0.9, color="tab:blue", alpha=0.7, label="accuracy in the bin")
    ax.scatter(centres, table["confidence"], color="k", s=14, zorder=3, label="mean confidence in the bin")
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (largest softmax probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability: ECE {ece:.3f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax_n.bar(centres, table["count"] / table["count"].sum(), width=width * 0.9, color="tab:gray")
    ax_n.set_xlim(0, 1)
    ax_n.set_xlabel("confidence")
    ax_n.set_ylabel("share of test images")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- concept notebooks 00-06


def model_overview_rows(model, image_size: int) -> dict[str, list[tuple[str, str]]]:
    """Boxes (title, detail) for three rows of the paper's Fig. 1, read from a built ``MSVSSM``'s module tree.

    Rows: the whole network (stem, each stage with its DSPP and block count, head), one VSS
    block, and the (SE-)SS2D inside it, each box with its output shape (height x width x channels).
    """
    import math

    import torch.nn as nn

    side = math.ceil(math.ceil(image_size / 2) / 2)
    net = [("input", f"{image_size}x{image_size}x{model.in_chans}"), ("stem", f"2 convs s2\n{side}x{side}x{model.dims[0]}")]
    for i, stage in enumerate(model.stages):
        if i > 0:
            side = math.ceil(side / 2)
        parts = ([] if isinstance(stage.dspp, nn.Identity) else ["DSPP"]) + [f"{len(stage.blocks)} x VSS block"]
        prefix = "" if i == 0 else "down s2 ->\n"
        net.append((f"stage {i + 1}", prefix + " +\n".join(parts) + f"\n{side}x{side}x{model.dims[i]}"))
    net.append(("head", f"LN, GAP, linear\n{model.num_classes} classes"))

    block = model.stages[0].blocks[0]
    ss2d = block.op
    d, c = ss2d.d_inner, ss2d.dim
    vss = [("LayerNorm", f"{c}"), (type(ss2d).__name__ + (" + SE" if not isinstance(ss2d.path_se, nn.Identity) else ""), f"{c} -> {c}"),
           ("+ residual", "x + branch")]
    if block.mlp is not None:
        vss += [("LayerNorm", f"{c}"), ("MLP", f"{c} -> {block.mlp.fc1.out_features} -> {c}"), ("+ residual", "x + branch")]

    inner: list[tuple[str, str]] = []
    for name, module in ss2d.named_children():
        if isinstance(module, nn.Identity):
            continue
        label = {"in_proj": f"{c} -> {d}", "conv2d": "depthwise 3x3", "act": "SiLU", "path_se": "SE per path",
                 "out_norm": f"LayerNorm {d}", "layer_scale": f"Λ init {getattr(module, 'init_value', '')}",
                 "out_proj": f"{d} -> {c}"}.get(name, type(module).__name__)
        inner.append((name, label))
        if name == "act":
            inner.append(("cross-scan", f"4 paths, L = h·w"))
            inner.append(("S6 x 4", f"d_state {ss2d.d_state}"))
            inner.append(("unscan", "4 maps on the grid"))
    at = [n for n, _ in inner].index("out_norm")
    inner.insert(at, ("merge", "sum of 4 paths"))
    return {f"{type(model).__name__}": net, "VSS block (stage 1)": vss, "SS2D inside it": inner}


def plot_block_diagram(rows: dict[str, list[tuple[str, str]]], title: str = "") -> plt.Figure:
    """One row of boxes joined by arrows per entry of ``rows`` (title -> [(box title, detail), ...])."""
    width = max(len(r) for r in rows.values())
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.55 * width + 0.5, 1.45 * len(rows)), squeeze=False)
    palette = {"DSPP": "#f4a261", "SE": "#e76f51", "Λ": "#2a9d8f", "S6": "#457b9d", "stage": "#a8dadc"}
    for ax, (row_title, boxes) in zip(axes[:, 0], rows.items()):
        ax.set_xlim(-0.1, width)
        ax.set_ylim(0, 1)
        ax.axis("off")
        ax.set_title(row_title, loc="left", fontsize=10, fontweight="bold")
        for i, (name, detail) in enumerate(boxes):
            text = f"{name}\n{detail}"
            color = next((col for key, col in palette.items() if key in text), "#e9ecef")
            ax.add_patch(plt.Rectangle((i + 0.05, 0.08), 0.8, 0.84, facecolor=color, edgecolor="black", lw=0.8))
            ax.text(i + 0.45, 0.5, text, ha="center", va="center", fontsize=7)
            if i + 1 < len(boxes):
                ax.annotate("", xy=(i + 1.05, 0.5), xytext=(i + 0.85, 0.5), arrowprops=dict(arrowstyle="->", lw=1))
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_protocol_scores(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Grouped bars of test ``accuracy`` and ``weighted_f1`` (index: split protocols), values on the bars;
    a dashed tick per protocol at ``majority`` (always the most frequent training class), if present."""
    metrics = [m for m in ("accuracy", "weighted_f1") if m in table]
    x = np.arange(len(table))
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for j, metric in enumerate(metrics):
        bars = ax.bar(x + (j - (len(metrics) - 1) / 2) * width, 100 * table[metric], width, label=metric.replace("_", " "))
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    if "majority" in table:
        for i, v in enumerate(table["majority"]):
            ax.hlines(100 * v, i - 0.45, i + 0.45, colors="black", linestyles="--", lw=1,
                      label="majority class (accuracy)" if i == 0 else None)
    ax.set_xticks(x, list(table.index))
    ax.set_xlabel("split protocol")
    ax.set_ylabel("test score (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or "The same classifier under three split protocols", fontsize=10)
    return fig


def plot_participant_split_map(split_tables: dict[str, pd.DataFrame]) -> plt.Figure:
    """Participants (columns) x protocols (rows): where each participant's frames go.

    Colour: the share of the participant's frames in the test part; the text says the
    side when all frames are on one side, else "mix".
    """
    people = sorted({str(p) for df in split_tables.values() for p in df["participant"]}, key=lambda s: (len(s), s))
    share = np.zeros((len(split_tables), len(people)))
    text = np.empty(share.shape, dtype=object)
    for r, df in enumerate(split_tables.values()):
        for c, person in enumerate(people):
            sides = df.loc[df["participant"].astype(str) == person, "split"]
            share[r, c] = (sides == "test").mean() if len(sides) else np.nan
            uniq = sides.unique()
            text[r, c] = uniq[0] if len(uniq) == 1 else "mix"
    fig, ax = plt.subplots(figsize=(0.62 * len(people) + 2.2, 0.55 * len(split_tables) + 1.4))
    im = ax.imshow(share, cmap="Greens", vmin=0, vmax=1, aspect="auto")
    for r in range(share.shape[0]):
        for c in range(share.shape[1]):
            ax.text(c, r, text[r, c], ha="center", va="center", fontsize=7,
                    color="white" if share[r, c] > 0.6 else "black")
    ax.set_xticks(range(len(people)), [f"s{int(p):02d}" if p.isdigit() else p for p in people], fontsize=8)
    ax.set_yticks(range(len(split_tables)), list(split_tables))
    ax.set_xlabel("participant")
    ax.set_ylabel("split protocol")
    fig.colorbar(im, ax=ax, label="share of frames in test")
    ax.set_title("Where each participant's frames go", fontsize=10)
    return fig


def plot_learning_curves(curves: dict[str, Sequence[float]], chance: float | None = None, title: str = "",
                         ylabel: str = "accuracy (%)") -> plt.Figure:
    """One line per model of a score (in %) against training step; ``chance`` as a dashed line; final values labelled."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for label, values in curves.items():
        values = np.asarray(values, dtype=float)
        steps = np.arange(1, len(values) + 1)
        (line,) = ax.plot(steps, values, label=label)
        ax.annotate(f"{values[-1]:.0f}", (steps[-1], values[-1]), textcoords="offset points", xytext=(4, 0),
                    fontsize=8, color=line.get_color(), va="center")
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label=f"chance ({chance:.0f})")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def plot_gradient_map(grad: np.ndarray, title: str = "", mark: tuple[int, int] | None = None) -> plt.Figure:
    """|d output / d input| per pixel (height x width), log colour scale; ``mark`` (row, col) circled."""
    from matplotlib.colors import LogNorm

    grad = np.abs(np.asarray(grad, dtype=float))
    floor = max(grad.max() * 1e-6, 1e-30)
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    im = ax.imshow(np.maximum(grad, floor), cmap="magma", norm=LogNorm(vmin=floor, vmax=max(grad.max(), floor * 10)))
    if mark is not None:
        ax.scatter([mark[1]], [mark[0]], s=80, facecolors="none", edgecolors="cyan", lw=1.5, label="output pixel")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlabel("input column (pixel)")
    ax.set_ylabel("input row (pixel)")
    fig.colorbar(im, ax=ax, label="|gradient| (log scale)")
    ax.set_title(title or "Which input pixels reach the output pixel", fontsize=9)
    return fig


def plot_path_gates(gates: np.ndarray, path_names: Sequence[str], title: str = "") -> plt.Figure:
    """Distribution of SE gates per scan path: gates (n_images, K, channels) -> one box per path, means labelled."""
    gates = np.asarray(gates, dtype=float)
    k = gates.shape[1]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    data = [gates[:, i].ravel() for i in range(k)]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, k + 1), list(path_names), fontsize=8)
    for i, values in enumerate(data):
        ax.text(i + 1, np.max(values), f"mean {values.mean():.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("scan path")
    ax.set_ylabel("SE gate (sigmoid, 0-1)")
    ax.set_title(title or "SE-SS2D gates per path", fontsize=10)
    return fig


def plot_depth_scale(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Two panels against depth: activation std and input-gradient norm, one line per ``setting`` (log y)."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for ax, column, label in zip(axes, ("activation_std", "grad_norm"),
                                 ("std of the block output", "‖d loss / d input‖")):
        for setting, part in table.groupby("setting", sort=False):
            ax.plot(part["depth"], part[column], marker="o", ms=3, label=setting)
            last = part.iloc[-1]
            ax.annotate(f"{last[column]:.3g}", (last["depth"], last[column]), textcoords="offset points",
                        xytext=(4, 0), fontsize=7, va="center")
        ax.set_yscale("log")
        ax.set_xlabel("number of VSS blocks stacked")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(title or "Signal and gradient through a deep stack", fontsize=10)
    fig.tight_layout()
    return fig


def plot_receptive_fields(maps: dict[str, np.ndarray], title: str = "") -> plt.Figure:
    """Impulse responses (|output| per pixel) of a few branches side by side, the nonzero extent in each title."""
    fig, axes = plt.subplots(1, len(maps), figsize=(2.7 * len(maps), 3.0), squeeze=False)
    for ax, (name, m) in zip(axes[0], maps.items()):
        m = np.abs(np.asarray(m, dtype=float))
        rows, cols = np.nonzero(m > m.max() * 1e-9) if m.max() > 0 else (np.array([0]), np.array([0]))
        ax.imshow(m, cmap="viridis")
        ax.set_title(f"{name}\nnonzero {np.ptp(rows) + 1} x {np.ptp(cols) + 1} px", fontsize=8)
        ax.set_xlabel("column (pixel)", fontsize=8)
        ax.set_ylabel("row (pixel)", fontsize=8)
    fig.suptitle(title or "Impulse response of each branch", fontsize=10)
    fig.tight_layout()
    return fig


def plot_dspp_coverage(table: pd.DataFrame, receptive_field: int, title: str = "") -> plt.Figure:
    """Feature-map side per stage (table: index stages, columns input sizes) against the largest branch's field."""
    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    x = np.arange(len(table))
    width = 0.8 / len(table.columns)
    for j, column in enumerate(table.columns):
        bars = ax.bar(x + (j - (len(table.columns) - 1) / 2) * width, table[column], width, label=f"{column} px input")
        ax.bar_label(bars, fontsize=7)
    ax.axhline(receptive_field, color="black", ls="--", lw=1, label=f"largest local branch: {receptive_field} px")
    ax.set_xticks(x, list(table.index))
    ax.set_yscale("log", base=2)
    ax.set_xlabel("stage")
    ax.set_ylabel("feature-map side (pixels, log2)")
    ax.legend(fontsize=7)
    ax.set_title(title or "What DSPP sees: map side against receptive field", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- results over seeds


def plot_seed_bars(per_run: pd.DataFrame, order: Sequence[str], metric: str = "accuracy",
                   paper: dict[str, float] | None = None, lines: dict[str, float] | None = None,
                   title: str = "", group: str = "name", seed: str = "seed") -> plt.Figure:
    """The mean over seeds as a bar with its 95 % t interval, each seed as a dot, the paper's value as a red
    diamond, reference levels (HOG, constant guess) as dashed lines; the mean and interval written under each bar.

    The y axis starts at 0 (bars that start elsewhere exaggerate differences); a second panel on the
    right zooms on the networks' range and links each seed's dots across the rows with a thin line: the rows
    share their seeds, so whether the lines rise together says more than whether the intervals overlap.
    """
    from .stats import mean_interval

    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(max(9.0, 2.2 * len(order) + 4.0), 3.8),
                                   gridspec_kw={"width_ratios": [3, 2]})
    shown = []
    seeds = sorted(per_run.loc[per_run[group].isin(order), seed].unique())
    offset = dict(zip(seeds, np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else [0.0]))
    for i, name in enumerate(order):
        rows = per_run.loc[per_run[group] == name]
        values = rows[metric].to_numpy(dtype=float)
        if len(values) == 0:
            continue
        shown.extend(values)
        mean, low, high = mean_interval(values)
        half = 0.0 if np.isnan(low) else mean - low
        xs = i + rows[seed].map(offset).to_numpy(dtype=float)
        ax.bar(i, mean, yerr=half, color="tab:blue", alpha=0.6, capsize=4, width=0.6)
        ax.scatter(xs, values, color="k", s=12, zorder=3)
        label = f"{mean:.3f}" + (f"\n[{low:.3f},\n {high:.3f}]" if not np.isnan(low) else "\n(1 seed)")
        ax.text(i, 0.02, label, ha="center", va="bottom", fontsize=7)
        zoom.errorbar(i, mean, yerr=half, fmt="_", markersize=18, color="tab:blue", capsize=4, lw=1.5)
        zoom.scatter(xs, values, color="k", s=12, zorder=3)
        if paper and name in paper:
            first = i == min(j for j, n in enumerate(order) if n in paper)
            ax.scatter([i], [paper[name]], marker="D", color="tab:red", s=30, zorder=4,
                       label="paper (real DEAP)" if first else None)
    for k, s_ in enumerate(seeds):  # one line per seed across the rows it has
        pts = [(i + offset[s_], float(per_run.loc[(per_run[group] == name) & (per_run[seed] == s_), metric].iloc[0]))
               for i, name in enumerate(order) if ((per_run[group] == name) & (per_run[seed] == s_)).any()]
        if len(pts) > 1:
            zoom.plot(*zip(*pts), color=f"C{k}", lw=0.8, alpha=0.7, label=f"seed {s_}")
    for k, (label, value) in enumerate((lines or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{k + 2}", label=f"{label}: {value:.3f}")
    names = [n.replace("+", "\n+") for n in order]
    for a in (ax, zoom):
        a.set_xticks(range(len(order)))
        a.set_xticklabels(names, fontsize=8)
        a.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylabel(f"test {metric.replace('_', ' ')}")
    ax.set_ylim(0, 1.05)
    if shown:
        low, high = min(shown), max(shown)
        pad = max(0.01, 0.25 * (high - low))
        zoom.set_ylim(low - pad, high + pad)
    zoom.set_title("zoom: mean with 95 % t interval; lines link each seed", fontsize=8)
    zoom.grid(axis="y", alpha=0.3)
    if zoom.get_legend_handles_labels()[0]:
        zoom.legend(fontsize=6, loc="best")
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 0.22))
    fig.tight_layout()
    return fig


def plot_learned_scales(layer_scale: pd.DataFrame, gates: pd.DataFrame, title: str = "") -> plt.Figure:
    """Left: mean |Λ| per block after training against its initial value (log scale).
    Right: the mean SE gate per block and direction (0.5 = the value at initialisation)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    if not layer_scale.empty:
        labels = [f"s{r.stage}b{r.block}" for r in layer_scale.itertuples()]
        ax.bar(labels, layer_scale["abs_mean"], color="tab:green", alpha=0.7, label="mean |Λ| after training")
        ax.scatter(labels, layer_scale["abs_max"], marker="_", s=120, color="k", label="max |Λ|")
        ax.axhline(layer_scale["init"].iloc[0], ls="--", color="tab:red", label=f"init {layer_scale['init'].iloc[0]:g}")
        ax.set_yscale("log")
        ax.set_ylim(layer_scale["init"].iloc[0] / 3, max(1.0, 3 * layer_scale["abs_max"].max()))
        ax.legend(fontsize=7, loc="upper left", ncol=3)
    ax.set_title("Layer Scale Λ per block (stage s, block b)", fontsize=9)
    ax = axes[1]
    if not gates.empty:
        pivot = gates.assign(blk=[f"s{r.stage}b{r.block}" for r in gates.itertuples()]).pivot_table(
            index="direction", columns="blk", values="gate_mean", sort=False)
        sns.heatmap(pivot, annot=True, fmt=".2f", cmap="coolwarm", center=0.5, ax=ax, cbar_kws={"label": "mean gate"},
                    annot_kws={"fontsize": 7})
        ax.set_xlabel("block")
        ax.set_ylabel("")
    ax.set_title("SE-SS2D gate per scan direction (mean over test images, channels)", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_cost(table: pd.DataFrame, x: str = "GMACs", title: str = "") -> plt.Figure:
    """Test accuracy (mean ± std over seeds) against cost; marker area grows with parameters.

    ``table``: index = model name, columns ``accuracy_mean``, ``accuracy_std``, ``params_M`` and ``x``.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (name, r) in enumerate(table.iterrows()):
        ax.errorbar(r[x], r["accuracy_mean"], yerr=r["accuracy_std"], fmt="o", color=f"C{i}", capsize=3,
                    markersize=4 + 3 * np.sqrt(r["params_M"]), label=f"{name} ({r['params_M']:.2f} M)")
    ax.set_xlabel({"GMACs": "GMACs per image (fvcore multiply-accumulates; papers call them FLOPs)", "infer_img_s": "inference images/s (CPU)"}.get(x, x))
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_participant_accuracy(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Heat map of accuracy per participant (rows) and protocol/model (columns); blank = not in that test set."""
    fig, ax = plt.subplots(figsize=(1.2 * table.shape[1] + 2.5, 0.32 * table.shape[0] + 1.6))
    sns.heatmap(table, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax, cbar_kws={"label": "test accuracy"},
                annot_kws={"fontsize": 7})
    ax.set_ylabel("participant")
    ax.set_xlabel("")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_protocols(per_run: pd.DataFrame, floors: dict[str, dict[str, float]], models: Sequence[str],
                   protocols: Sequence[str], paper: float | None = None, title: str = "",
                   pooled: pd.DataFrame | None = None) -> plt.Figure:
    """Grouped bars: test accuracy per protocol (groups) and model (bars, mean ± std, runs as dots),
    with the floors of each protocol as short horizontal marks and the paper's number on the frame split.

    ``pooled`` (:func:`msvssm.crossval.cross_validated`: split, name, accuracy, ci_low, ci_high): for those
    (split, model) the bar is the cross-validated accuracy with its 95 % interval over people, and the dots
    are the folds' own accuracies."""
    fig, ax = plt.subplots(figsize=(9.5, 3.8))
    width = 0.8 / len(models)
    cv = {} if pooled is None else {(r.split, r.name): r for r in pooled.itertuples()}
    labelled: set[str] = set()  # a model's first bar names it in the legend (the paper-augmentation row has no frame bar)
    for j, model in enumerate(models):
        for i, protocol in enumerate(protocols):
            values = per_run.loc[(per_run["name"] == model) & (per_run["split"] == protocol), "accuracy"].to_numpy(float)
            if len(values) == 0:
                continue
            x = i - 0.4 + width * (j + 0.5)
            if (protocol, model) in cv:
                r = cv[(protocol, model)]
                height, err = r.accuracy, [[r.accuracy - r.ci_low], [r.ci_high - r.accuracy]]
            else:
                height, err = values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0
            ax.bar(x, height, width * 0.9, yerr=err, capsize=3, color=f"C{j}", alpha=0.65,
                   label=None if model in labelled else model)
            labelled.add(model)
            ax.scatter(np.full(len(values), x), values, color="k", s=10, zorder=3)
            ax.text(x, 0.02, f"{height:.2f}", ha="center", va="bottom", fontsize=7)
    for k, name in enumerate(next(iter(floors.values()))):
        for i, protocol in enumerate(protocols):
            ax.hlines(floors[protocol][name], i - 0.45, i + 0.45, colors=f"C{k + len(models)}", linestyles="--",
                      label=f"{name}" if i == 0 else None)
    if paper is not None and "frame" in protocols:
        j = list(models).index("MS-VSSM") if "MS-VSSM" in models else len(models) - 1
        ax.scatter([list(protocols).index("frame") - 0.4 + width * (j + 0.5)], [paper], marker="D", color="tab:red", zorder=4,
                   label="paper MS-VSSM (real DEAP)")
    ax.set_xticks(range(len(protocols)))
    ax.set_xticklabels([f"{p} split" for p in protocols])
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig

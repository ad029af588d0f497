"""Looking inside a trained model (notebook 11): effective receptive fields, saliency, errors per person.

* **Effective receptive field** (ERF), VMamba's method (``analyze/erf.py`` of VMamba, after
  RepLKNet): feed images with ``requires_grad``, take the last stage's feature map, sum the
  ReLU of its *central* position over channels, back-propagate, keep the ReLU of the input
  gradient summed over colour channels, and average that map over images. Shown power-scaled
  (``x ** 0.25`` then divided by its maximum, VMamba's ``simpnorm``) because the raw map spans
  orders of magnitude. Measured at twice the training size (:func:`erf_input_size`), as VMamba
  measures at 1024 px a model trained at 224. :func:`erf_summary` turns a map into numbers (mass outside the central
  quarter of the image, the side of the centred square holding half the mass).
* **Saliency** with captum (``Saliency``: |d logit / d pixel|; ``IntegratedGradients``).
* **Errors per participant** against the synthetic generator's per-person expressivity
  (:func:`participant_expressivity`, recomputed from the generator's deterministic draw).
* :func:`make_sample_photo`: the repository's sample photo (``assets/sample_face.jpg``), drawn
  by the synthetic face renderer for a person who is not in any dataset the course generates.

Every map here is (height, width) in input pixels, row 0 at the top.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .optional import require

STRIDE = 32  # total downsampling of the model's last stage (stem /4, then /2 three times)
WEAK_EXPRESSIVITY = 0.45  # the generator draws weak expressers from U(0.15, 0.4), the others from U(0.55, 1.25)


# ----------------------------------------------------------------------------- effective receptive field


def feature_centre(height: int, width: int) -> tuple[int, int]:
    """(row, col) of the cell VMamba back-propagates from: ``(height // 2, width // 2)``."""
    return height // 2, width // 2


def rf_centre(index: int, n_convs: int = 5) -> int:
    """Input pixel at the centre of the receptive field of output cell ``index`` of ``n_convs`` stacked
    3x3 convolutions with stride 2 and padding 1 (the model's stem and downsamples: 5 of them).

    One such conv centres output j on input 2j (it reads 2j-1, 2j, 2j+1), so the stack centres
    cell i on pixel 2**n_convs * i: cell i of the last stage looks at pixel 32 i, not at the
    middle of "its" 32-pixel block (32 i + 15.5).
    """
    return (2 ** n_convs) * index


def erf_input_size(image_size: int, scale: int = 2, stride: int = STRIDE) -> int:
    """Input side for the ERF: the smallest multiple of ``2 * stride`` that is >= ``scale * image_size``.

    * larger than the training size (VMamba measures at 1024 px a model trained at 224), so the
      image is wider than the 63-px box the convolutions alone reach and the scan's share shows;
    * the last map's side (``size / 32``) is even, so the centre cell ``h // 2`` looks at pixel
      ``32 * (h // 2) = size / 2`` (:func:`rf_centre`): the image centre, within half a pixel.

    The models have no position embedding, so they run at any size.
    """
    step = 2 * stride
    return max(step, math.ceil(scale * image_size / step) * step)


def input_gradient_map(model: nn.Module, images: Tensor, stage: int = -1, reduce: str = "relu") -> np.ndarray:
    """VMamba's ``get_input_grad``: (b, 3, H, W) normalised images -> (H, W), summed over images and channels.

    The stage map from ``forward_intermediates`` is channels-last (b, h, w, C); its centre cell
    ``relu(.)`` summed over channels and images is back-propagated to the input. ``reduce``:
    ``"relu"`` keeps the positive part of the gradient (VMamba), ``"abs"`` its magnitude.
    """
    if reduce not in ("relu", "abs"):
        raise ValueError(f"reduce must be 'relu' or 'abs', not {reduce!r}")
    x = images.detach().clone().float().requires_grad_(True)
    feats = model.forward_intermediates(x)[stage]  # (b, h, w, C)
    r, c = feature_centre(feats.shape[1], feats.shape[2])
    central = torch.relu(feats[:, r, c, :]).sum()
    (grad,) = torch.autograd.grad(central, x)  # (b, 3, H, W)
    grad = torch.relu(grad) if reduce == "relu" else grad.abs()
    return grad.sum(dim=(0, 1)).double().cpu().numpy()  # (H, W)


def effective_receptive_field(model: nn.Module, images: Tensor, stage: int = -1, batch_size: int = 16,
                              reduce: str = "relu") -> np.ndarray:
    """The ERF: :func:`input_gradient_map` averaged over ``images`` (n, 3, H, W) -> (H, W), float64.

    The model is used as it is (call ``.eval()`` first: drop-path would make the map random).
    """
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"expected a non-empty batch of images (n, 3, H, W), got {tuple(images.shape)}")
    total = np.zeros(images.shape[-2:], dtype=np.float64)
    for start in range(0, len(images), batch_size):
        total += input_gradient_map(model, images[start:start + batch_size], stage, reduce)
    return total / len(images)


def power_scale(erf: np.ndarray, power: float = 0.25) -> np.ndarray:
    """VMamba's ``simpnorm``: ``x ** power`` divided by its maximum (0..1); shows the faint tails."""
    scaled = np.power(np.maximum(np.asarray(erf, dtype=np.float64), 0), power)
    peak = scaled.max()
    return scaled / peak if peak > 0 else scaled


def centre_square_side(erf: np.ndarray, share: float = 0.5) -> int:
    """Side (odd, pixels) of the smallest square centred on (H // 2, W // 2) holding >= ``share`` of the mass.

    Sides 1, 3, 5, ... are tried (VMamba's ``get_rectangle``, with ">=" and without its cap);
    clipped at the image border, so an ERF spread over everything gives about the image side.
    """
    erf = np.asarray(erf, dtype=np.float64)
    total = erf.sum()
    if total <= 0:
        raise ValueError("the map has no positive mass")
    height, width = erf.shape
    r, c = height // 2, width // 2
    for i in range(max(height, width)):
        inside = erf[max(0, r - i):r + i + 1, max(0, c - i):c + i + 1].sum()
        if inside >= share * total * (1 - 1e-12):
            return 2 * i + 1
    return 2 * max(height, width) - 1  # not reached: the last square covers the map


def mass_outside_centre(erf: np.ndarray, side_fraction: float = 0.5) -> float:
    """Share of the map's mass outside the central square of side ``side_fraction`` x the image side.

    With 0.5 the square is the central quarter of the image's area: a map spread evenly gives
    0.75, a map concentrated in the middle gives about 0.
    """
    erf = np.asarray(erf, dtype=np.float64)
    height, width = erf.shape
    sh, sw = max(1, round(height * side_fraction)), max(1, round(width * side_fraction))
    r0, c0 = (height - sh) // 2, (width - sw) // 2
    total = erf.sum()
    if total <= 0:
        raise ValueError("the map has no positive mass")
    return float(1 - erf[r0:r0 + sh, c0:c0 + sw].sum() / total)


def erf_summary(erf: np.ndarray) -> dict[str, float]:
    """Numbers for one ERF map: where it peaks, how far the peak and the centre of mass are from the image
    centre, the side of the centred square holding half the mass, and the mass outside the central quarter."""
    erf = np.asarray(erf, dtype=np.float64)
    height, width = erf.shape
    pr, pc = np.unravel_index(int(np.argmax(erf)), erf.shape)
    side50 = centre_square_side(erf, 0.5)
    rows, cols = np.mgrid[0:height, 0:width]
    weights = erf / erf.sum()
    com_r, com_c = float((weights * rows).sum()), float((weights * cols).sum())
    return {
        "image_side": int(height),
        "peak_row": int(pr),
        "peak_col": int(pc),
        "peak_offset_px": float(math.hypot(pr - (height - 1) / 2, pc - (width - 1) / 2)),
        "mass_centre_offset_px": float(math.hypot(com_r - (height - 1) / 2, com_c - (width - 1) / 2)),
        "side50_px": int(side50),
        "side50_fraction": float(min(side50, height) / height),
        "outside_centre_share": mass_outside_centre(erf, 0.5),
    }


# ----------------------------------------------------------------------------- saliency (captum)


def saliency_maps(model: nn.Module, images: Tensor, targets: Sequence[int] | Tensor, method: str = "saliency",
                  n_steps: int = 32) -> np.ndarray:
    """Attribution of the ``targets`` logits to the input pixels with captum: (n, 3, H, W) -> (n, H, W) >= 0.

    ``method``: ``"saliency"`` (|gradient|, max over colour channels, captum's ``Saliency``) or
    ``"integrated_gradients"`` (``IntegratedGradients`` from a black image in pixel space,
    |attribution| summed over channels). Raw magnitudes: normalise per image for display.
    """
    attr = require("captum.attr", "analysis", "attribution maps")
    IntegratedGradients, Saliency = attr.IntegratedGradients, attr.Saliency

    from .train.data import normalize

    x = images.detach().clone().float()
    target = torch.as_tensor(targets, dtype=torch.long, device=x.device)
    if method == "saliency":
        attr = Saliency(model).attribute(x.requires_grad_(True), target=target, abs=True)  # (n, 3, H, W)
        out = attr.max(dim=1).values
    elif method == "integrated_gradients":
        black = normalize(torch.zeros(1, 3, *x.shape[-2:], device=x.device)).expand_as(x)  # a black image, normalised
        attr = IntegratedGradients(model).attribute(x, baselines=black, target=target, n_steps=n_steps,
                                                    internal_batch_size=max(1, len(x)) * 8)
        out = attr.abs().sum(dim=1)
    else:
        raise ValueError(f"method must be 'saliency' or 'integrated_gradients', not {method!r}")
    return out.detach().double().cpu().numpy()


def normalise_per_image(maps: np.ndarray, quantile: float = 0.99) -> np.ndarray:
    """(n, H, W) -> each map divided by its ``quantile`` and clipped to [0, 1] (one hot pixel does not wash out the rest)."""
    maps = np.asarray(maps, dtype=np.float64)
    top = np.quantile(maps.reshape(len(maps), -1), quantile, axis=1)[:, None, None]
    return np.clip(np.divide(maps, top, out=np.zeros_like(maps), where=top > 0), 0, 1)


# ----------------------------------------------------------------------------- errors per participant


def load_test_side(cfg, size: int | None = None):
    """A ``RunData`` whose test side alone is decoded (train and val left empty), at ``size`` (default: the run's).

    ``split_predictions(run, "test", data=...)`` needs only the test side; decoding the other
    two would take most of the time on a laptop.
    """
    from .train.data import InMemorySplit, load_split
    from .train.run import RunData, open_run_data

    sides, classes, split_file = open_run_data(cfg)
    empty = InMemorySplit(torch.empty(0, 3, 1, 1, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), [], [])
    test = load_split(sides["test"], size or cfg.image_size, cfg.workers)
    return RunData(empty, empty, test, classes, split_file, Path(cfg.data))



def synthetic_root_of(faces_dir: str | os.PathLike) -> Path | None:
    """The synthetic DEAP folder a faces folder was made from (``preprocess_config.json``'s root), or None."""
    pre = Path(faces_dir) / "preprocess_config.json"
    if not pre.exists():
        return None
    root = Path(json.loads(pre.read_text(encoding="utf-8")).get("root", ""))
    return root if (root / "synth_meta.json").exists() else None


def participant_expressivity(faces_dir: str | os.PathLike) -> pd.DataFrame | None:
    """Per participant of a synthetic DEAP: ``expressivity`` (scales every expression cue) and ``weak``.

    The generator does not write these; they are recomputed from its deterministic draw
    (``msvssm.data.synth.make_participant`` with the seed and parameters in ``synth_meta.json``).
    None for data that is not a synthetic DEAP (the real DEAP has no such number).
    """
    from .data.synth import make_participant

    root = synthetic_root_of(faces_dir)
    if root is None:
        return None
    meta = json.loads((root / "synth_meta.json").read_text(encoding="utf-8"))
    params = meta["params"]
    rows = []
    for p in range(1, int(params["n_participants"]) + 1):
        person = make_participant(int(meta["seed"]), p, params)
        rows.append({"participant": p, "expressivity": person.expressivity})
    table = pd.DataFrame(rows)
    table["weak"] = table["expressivity"] < WEAK_EXPRESSIVITY
    return table



def error_rates_by_participant(predictions: pd.DataFrame, expressivity: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per participant: ``images``, ``errors``, ``error_rate`` (+ ``expressivity``, ``weak`` when given)."""
    table = (predictions.assign(error=~predictions["correct"].astype(bool))
             .groupby("participant")["error"].agg(images="size", errors="sum").reset_index())
    table["error_rate"] = table["errors"] / table["images"]
    if expressivity is not None:
        table = table.merge(expressivity.astype({"participant": table["participant"].dtype}), on="participant", how="left")
    return table


def pooled_error_rate(predictions: pd.DataFrame, participants: Sequence) -> float:
    """Error rate over all test images of ``participants`` (pooled: every image counts once)."""
    rows = predictions[predictions["participant"].isin(list(participants))]
    if rows.empty:
        return float("nan")
    return float(1 - rows["correct"].astype(bool).mean())


def map_rank_similarity(maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of two attribution maps per image, (n, h, w) x (n, h, w) -> (n,).

    The model-randomisation sanity check (Adebayo et al., 2018, "Sanity Checks for Saliency Maps"): maps of
    the trained model against maps of the same architecture with untrained weights, for the same images and
    classes. A method whose maps barely change (high correlation) shows the input and the architecture, not
    what training learned."""
    from scipy.stats import spearmanr

    a, b = np.asarray(maps_a, dtype=float), np.asarray(maps_b, dtype=float)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"expected two stacks of maps of one shape (n, h, w), got {a.shape} and {b.shape}")
    return np.array([spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)])


def expressivity_test(per_person: pd.DataFrame) -> dict[str, float]:
    """Does a person's error rate fall as their expressivity rises? Spearman's rho over the people of
    ``per_person`` (columns ``expressivity`` and ``error_rate``), its two-sided p-value, and the count."""
    from scipy.stats import spearmanr

    rows = per_person.dropna(subset=["expressivity", "error_rate"])
    if len(rows) < 3:
        return {"people": len(rows), "rho": float("nan"), "p": float("nan")}
    result = spearmanr(rows["expressivity"], rows["error_rate"])
    return {"people": len(rows), "rho": float(result.statistic), "p": float(result.pvalue)}


# ----------------------------------------------------------------------------- the sample photo


SAMPLE_SEED = 2024  # not a seed the course generates data with (0): a person no model has seen
SAMPLE_PARTICIPANT = 1


def render_sample_face(seed: int = SAMPLE_SEED, participant: int = SAMPLE_PARTICIPANT, width: int = 320,
                       height: int = 240, smile: float = 0.8, arousal: float = 0.5) -> np.ndarray:
    """A synthetic DEAP-style frame (BGR uint8, height x width): one person, frontal, smiling, no occlusion.

    Drawn by the same renderer as the synthetic DEAP (``msvssm.data.face_render``); the face
    parameters follow the generator's mapping for a happy, fairly aroused person.
    """
    cv2 = require("cv2", "analysis", "the sample face")

    from .data import face_render as fr
    from .data.synth import _background, make_participant, resolve_params

    params = resolve_params("default", width=width, height=height)
    person = make_participant(seed, participant, params)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(9, participant)))
    img = _background(rng, width, height, np.array(person.appearance.skin))
    pose = fr.Pose(cx=0.5 * width, cy=0.48 * height, w=0.23 * height)
    expression = fr.Expression(smile=smile, cheek=max(0.0, smile - 0.3), mouth_open=0.25 * arousal,
                               eye_open=1.0 + 0.2 * arousal, brow_raise=0.3 * arousal)
    fr.draw_person(img, person.appearance, pose, expression, fr.Occlusion(), light=0.2)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    noise = rng.normal(0, 2.0, img.shape)
    return np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def make_sample_photo(path: str | os.PathLike, quality: int = 85, **kwargs) -> Path:
    """Write :func:`render_sample_face` as a JPEG (about 15 KB at 320x240); returns the path."""
    cv2 = require("cv2", "analysis", "the sample face")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), render_sample_face(**kwargs), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f"OpenCV could not write {path}")
    return path


# ----------------------------------------------------------------------------- figures


def _to_rgb(images_uint8: Tensor | np.ndarray) -> np.ndarray:
    """(n, 3, H, W) uint8 -> (n, H, W, 3) for imshow."""
    arr = images_uint8.numpy() if torch.is_tensor(images_uint8) else np.asarray(images_uint8)
    return np.transpose(arr, (0, 2, 3, 1))


def plot_erf_maps(maps: dict[str, np.ndarray], title: str = "", power: float = 0.25, ncols: int | None = None):
    """One panel per ERF map, power-scaled (``x ** power`` / max), the centre marked, the numbers in each title."""
    import matplotlib.pyplot as plt

    n = len(maps)
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    im = None
    for ax, (name, erf) in zip(axes.flat, maps.items()):
        s = erf_summary(erf)
        im = ax.imshow(power_scale(erf, power), cmap="RdYlGn", vmin=0, vmax=1)
        h, w = erf.shape
        ax.scatter([(w - 1) / 2], [(h - 1) / 2], marker="+", color="k", s=40, lw=1)
        ax.set_title(f"{name}\nhalf the mass in {s['side50_px']}x{s['side50_px']} px\n"
                     f"{s['outside_centre_share']:.0%} outside the central quarter", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=f"(ERF)^{power:g} / max")
    fig.suptitle(title or "Effective receptive field of the last stage's centre", fontsize=10)
    return fig


def plot_saliency(images_uint8: Tensor | np.ndarray, maps: dict[str, np.ndarray], captions: Sequence[str],
                  title: str = "", alpha: float = 0.55):
    """Row 0: the faces; one row per attribution method, overlaid on the face (per-image normalised)."""
    import matplotlib.pyplot as plt

    faces = _to_rgb(images_uint8)
    n = len(faces)
    fig, axes = plt.subplots(1 + len(maps), n, figsize=(1.45 * n, 1.6 * (1 + len(maps))), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(faces[j])
        axes[0, j].set_title(captions[j], fontsize=6.5)
        for i, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(faces[j].mean(axis=2), cmap="gray", vmin=0, vmax=255)
            axes[i, j].imshow(normalise_per_image(m)[j], cmap="inferno", alpha=alpha, vmin=0, vmax=1)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    for i, name in enumerate(["face", *maps], start=0):
        axes[i, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title or "What the prediction depends on", fontsize=9)
    fig.tight_layout()
    return fig


def plot_error_vs_expressivity(table: pd.DataFrame, title: str = ""):
    """Test error rate per participant against the generator's expressivity (weak expressers in red).

    Without an ``expressivity`` column (the real DEAP has none): one bar per participant.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    if "expressivity" not in table or table["expressivity"].isna().all():
        ax.bar([f"s{int(p):02d}" for p in table["participant"]], table["error_rate"], color="tab:blue")
        ax.set_xlabel("participant")
        ax.tick_params(axis="x", labelsize=7, rotation=90)
    else:
        weak = table["weak"].astype(bool) if "weak" in table else pd.Series(False, index=table.index)
        for flag, colour, label in ((False, "tab:blue", "expressive"), (True, "tab:red", "weak expresser")):
            part = table[weak == flag]
            if len(part):
                ax.scatter(part["expressivity"], part["error_rate"], s=10 + 6 * np.sqrt(part["images"]), color=colour,
                           label=f"{label} (dot area ~ test images)", alpha=0.8)
        for row in table.itertuples():
            ax.annotate(f"s{int(row.participant):02d}", (row.expressivity, row.error_rate), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.axvline(WEAK_EXPRESSIVITY, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("expressivity (the generator's per-person cue scale)")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_ylabel("test error rate")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title or "Errors per participant", fontsize=9)
    fig.tight_layout()
    return fig


def plot_misclassified(faces_dir: str | os.PathLike, rows: pd.DataFrame, title: str = "", ncols: int = 6):
    """A grid of face crops with ``participant``, true ``label`` and ``pred`` (and its probability) in each title."""
    import matplotlib.pyplot as plt
    from PIL import Image

    n = max(1, len(rows))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 2.15 * nrows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows.itertuples()):
        with Image.open(Path(faces_dir) / row.path) as im:
            ax.imshow(np.asarray(im.convert("RGB")))
        p = getattr(row, f"p_{row.pred}", float("nan"))
        ax.set_title(f"s{int(row.participant):02d} true {row.label}\npred {row.pred} ({p:.2f})", fontsize=6.5)
    if rows.empty:
        axes.flat[0].text(0.5, 0.5, "no misclassified test image", ha="center", va="center", fontsize=8)
    fig.suptitle(title or "Misclassified test faces", fontsize=9)
    fig.tight_layout()
    return fig


def plot_prediction(image_path: str | os.PathLike, probabilities: dict[str, float], title: str = ""):
    """The annotated image (face box and class) beside a bar chart of the class probabilities."""
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, (a0, a1) = plt.subplots(1, 2, figsize=(7.5, 2.9), gridspec_kw={"width_ratios": [1.4, 1]})
    with Image.open(image_path) as im:
        a0.imshow(np.asarray(im.convert("RGB")))
    a0.axis("off")
    names = list(probabilities)
    values = [probabilities[k] for k in names]
    a1.barh(names, values, color=["tab:green" if v == max(values) else "tab:grey" for v in values])
    for i, v in enumerate(values):
        a1.text(v, i, f" {v:.2f}", va="center", fontsize=8)
    a1.set_xlim(0, 1.15)
    a1.invert_yaxis()
    a1.set_xlabel("probability")
    fig.suptitle(title or "msvssm predict", fontsize=9)
    fig.tight_layout()
    return fig

"""``msvssm predict``: images or videos in, faces found, class probabilities out.

    msvssm predict photo.jpg clip.avi folder/ --run runs/demo [--out predictions] [--annotate]

Every input goes through the training pipeline: dlib finds the faces (the largest one
per image or sampled frame), the paper's crop (+20 % per side, squared) is cut at the
size the training crops were stored at, resized to the run's input size and normalised
as in evaluation. Videos are sampled like the preprocessing (1 frame/s from second 3;
shorter clips from second 0). Each file that cannot be used (not an image or video,
unreadable, no face) gets one clear line and the rest are still processed; the exit
status is non-zero if any failed. Grayscale, palette and RGBA images are converted to RGB
(said in the ``note`` column).
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .utils import atomic_write_json, get_logger

log = get_logger("predict")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")


class PredictError(RuntimeError):
    """An input that cannot be classified (the message names the file and why)."""


@dataclass
class Prediction:
    file: str
    frame: int | None  # frame index for videos, None for images
    time_s: float | None
    label: str
    probabilities: dict[str, float]
    face_box: list[int]
    note: str = ""


@dataclass
class PredictReport:
    predictions: list[Prediction] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # file -> why


def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given; folders expanded to the images and videos inside (sorted, recursive)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES))
        else:
            files.append(p)
    return files


def read_image_rgb(path: Path) -> tuple[np.ndarray, str]:
    """An RGB uint8 array and a note on any conversion; a clear PredictError if it is no image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            note = "" if im.mode == "RGB" else f"converted from {im.mode} to RGB"
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy(), note
    except UnidentifiedImageError:
        raise PredictError(f"{path}: not an image this program can read") from None
    except OSError as err:
        raise PredictError(f"{path}: unreadable image ({err})") from None


class FacePredictor:
    """A run's best model plus the preprocessing that made its training crops."""

    def __init__(self, run: str | os.PathLike, device: str = "cpu") -> None:
        from .data.faces import create_detector
        from .train.run import load_run_model

        run = Path(run)
        if not (run / "best.pt").exists():
            raise PredictError(f"{run}: no best.pt checkpoint (is it a finished `msvssm train` run folder?)")
        self.model, state, self.config = load_run_model(run, device)
        self.class_names: list[str] = list(state["class_names"])
        self.image_size = int(state.get("image_size") or self.config.image_size)
        self.crop_size = self._training_crop_size(Path(self.config.data))
        self.device = device
        self.detector = create_detector()

    def _training_crop_size(self, data_dir: Path) -> int:
        pre = data_dir / "preprocess_config.json"
        if pre.exists():
            return int(json.loads(pre.read_text(encoding="utf-8"))["params"]["size"])
        return 2 * self.image_size  # the crops were made elsewhere: crop larger, then resize like training

    def crop(self, rgb: np.ndarray):
        """Largest face, the paper's crop (BGR in, as preprocessing) -> (crop RGB, face box) or None."""
        import cv2

        from .data.faces import face_crop

        crop_bgr, face_box, _, _, _ = face_crop(self.detector, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), size=self.crop_size)
        if crop_bgr is None:
            return None
        return cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB), list(face_box)

    @torch.no_grad()
    def probabilities(self, crops_rgb: list[np.ndarray]) -> np.ndarray:
        """(n, classes) softmax probabilities for face crops, resized and normalised as in training."""
        from PIL import Image

        from .train.data import normalize, to_float

        arrays = [np.asarray(Image.fromarray(c).resize((self.image_size,) * 2, Image.Resampling.BILINEAR,
                                                       reducing_gap=None)) for c in crops_rgb]
        x = to_float(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))  # (n, 3, s, s) in [0, 1]
        logits = self.model(normalize(x).to(self.device))  # (n, classes)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def _predictions(self, path: Path, frames: list[tuple[int | None, float | None, np.ndarray]], note: str):
        found = [(idx, t, self.crop(rgb)) for idx, t, rgb in frames]
        found = [(idx, t, c) for idx, t, c in found if c is not None]
        if not found:
            raise PredictError(f"{path}: no face found" + (f" in {len(frames)} sampled frames" if len(frames) > 1 else ""))
        probs = self.probabilities([c[0] for _, _, c in found])
        return [Prediction(str(path), idx, t, self.class_names[int(p.argmax())],
                           {n: round(float(v), 6) for n, v in zip(self.class_names, p)}, box, note)
                for (idx, t, (_, box)), p in zip(found, probs)]

    def predict_file(self, path: Path) -> list[Prediction]:
        if not path.exists():
            raise PredictError(f"{path}: no such file")
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return self._predictions(path, self._video_frames(path), "")
        rgb, note = read_image_rgb(path)
        return self._predictions(path, [(None, None, rgb)], note)

    def _video_frames(self, path: Path):
        import cv2

        from .data.video import VideoError, probe_video, read_frames, sample_times

        try:
            info = probe_video(path)
            times = sample_times(info.fps, info.frame_count) or sample_times(info.fps, info.frame_count, start_s=0.0)
            frames = [(idx, t, cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
                      for (t, idx), (_, f) in zip(times, read_frames(path, [i for _, i in times]))]
        except (VideoError, ValueError, OSError) as err:
            raise PredictError(f"{path}: unreadable video ({err})") from None
        if not frames:
            raise PredictError(f"{path}: no frame could be decoded")
        return frames

    def annotate(self, path: Path, preds: list[Prediction], out_dir: Path) -> Path | None:
        """The image with the face box and predicted class drawn (images only)."""
        import cv2

        if path.suffix.lower() in VIDEO_SUFFIXES:
            return None
        rgb, _ = read_image_rgb(path)
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        for p in preds:
            x0, y0, x1, y1 = p.face_box
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (0, 200, 0), 2)
            text = f"{p.label} {p.probabilities[p.label]:.2f}"
            cv2.putText(img, text, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 0), 1, cv2.LINE_AA)
        target = out_dir / f"{path.stem}_annotated.png"
        out_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), img)
        return target


def predict_paths(paths: Sequence[str | os.PathLike], run: str | os.PathLike, out: str | os.PathLike | None = None,
                  annotate: bool = False, device: str = "cpu") -> PredictReport:
    """Classify every image / video in ``paths``; failures are collected per file, never raised."""
    predictor = FacePredictor(run, device)
    report = PredictReport()
    for given in map(Path, paths):
        if given.is_dir() and not expand_inputs([given]):
            report.failures[str(given)] = f"{given}: a folder with no image or video ({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})"
    for path in expand_inputs(paths):
        try:
            preds = predictor.predict_file(path)
        except Exception as err:  # one bad file never stops the others; say which file and why
            message = str(err) if isinstance(err, PredictError) else f"{path}: {type(err).__name__}: {err}"
            report.failures[str(path)] = message
            log.error("%s", message)
            continue
        report.predictions.extend(preds)
        if annotate and out is not None:
            predictor.annotate(path, preds, Path(out))
    if out is not None:
        atomic_write_json(Path(out) / "predictions.json", {
            "run": str(run), "classes": predictor.class_names,
            "predictions": [asdict(p) for p in report.predictions], "failures": report.failures})
    return report


def format_report(report: PredictReport) -> str:
    if not report.predictions:
        return "no predictions"
    import pandas as pd

    rows = [{"file": p.file, "frame": "" if p.frame is None else p.frame, "class": p.label,
             **{k: f"{v:.3f}" for k, v in p.probabilities.items()}, "note": p.note} for p in report.predictions]
    return pd.DataFrame(rows).to_markdown(index=False)


def add_cli(parser: argparse.ArgumentParser) -> None:
    parser.description = "Classify the faces in images, videos or folders with a trained run."
    parser.add_argument("paths", nargs="+", help="images, videos or folders of them")
    parser.add_argument("--run", required=True, help="run folder (config.json + best.pt)")
    parser.add_argument("--out", help="write predictions.json (and annotated images) here")
    parser.add_argument("--annotate", action="store_true", help="draw the face box and class (needs --out)")
    parser.add_argument("--device", default="cpu")

    def run(args: argparse.Namespace) -> int:
        if args.annotate and not args.out:
            parser.error("--annotate needs --out")
        try:
            report = predict_paths(args.paths, args.run, args.out, args.annotate, args.device)
        except PredictError as err:
            print(f"error: {err}")
            return 2
        print(format_report(report))
        for f, why in report.failures.items():
            print(f"failed: {why}")
        return 1 if report.failures else 0

    parser.set_defaults(func=run)

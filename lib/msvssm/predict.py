"""``msvssm predict``: images or videos in, faces found, class probabilities out.

    msvssm predict photo.jpg clip.avi folder/ --run runs/demo [--out predictions] [--annotate]
                   [--batch-size 16] [--video-summary]

Every input goes through the training pipeline: dlib finds the faces, the paper's crop
(+20 % per side, squared) is cut at the size the training crops were stored at, resized
to the run's input size and normalised as in evaluation.

* Photos: the EXIF orientation tag (what phones write instead of rotating the pixels) is
  applied first (``PIL.ImageOps.exif_transpose``; the ``note`` column says so), then
  **every** face dlib finds is classified: one row per face, ``face`` 0 the largest (ties:
  top-most, then left-most), with its box.
* Videos: sampled like the preprocessing (1 frame/s from second 3; shorter clips from
  second 0), the largest face of each sampled frame (as in the training data). Frames
  are decoded one at a time with OpenCV and dropped once their face is cropped; crops
  are classified in fixed-size batches (``batch_size``), so the frames and crops held
  never depend on the video's length. Each video also gets a running mean of the
  per-frame probabilities (``PredictReport.videos``); ``frame_rows=False``
  (``--video-summary``) keeps only that mean, so nothing at all grows with the length.

Each file that cannot be used (not an image or video, unreadable, no face) gets one
clear line naming it and the rest are still processed; the exit status is non-zero if
any failed. Grayscale, palette and RGBA images are converted to RGB (said in ``note``).
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .utils import atomic_write_json, get_logger

log = get_logger("predict")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")
DEFAULT_BATCH_SIZE = 16

EXIF_ORIENTATION = 0x0112
# what reading the picture upright does for each EXIF Orientation value (PIL.ImageOps.exif_transpose)
_ORIENTATION_WORDS = {2: "mirrored left-right", 3: "turned 180°", 4: "mirrored top-bottom", 5: "transposed",
                      6: "turned 90° clockwise", 7: "transversed", 8: "turned 90° counter-clockwise"}


class PredictError(RuntimeError):
    """An input that cannot be classified (the message names the file and why)."""


@dataclass
class Prediction:
    file: str
    frame: int | None  # frame index for videos, None for images
    time_s: float | None
    label: str
    probabilities: dict[str, float]
    face_box: list[int]  # (x0, y0, x1, y1), half-open, in the upright image
    note: str = ""
    face: int = 0  # which face of the image: 0 the largest (video frames: only the largest is used)


@dataclass
class VideoSummary:
    """One video's running mean of the per-frame probabilities (constant memory in the length)."""

    file: str
    frames_sampled: int = 0  # sampled frames that decoded
    frames_with_face: int = 0  # of those, frames where a face was found (the mean is over these)
    label: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)

    def add(self, p: Prediction) -> None:
        n = self.frames_with_face + 1
        for name, v in p.probabilities.items():
            old = self.probabilities.get(name, 0.0)
            self.probabilities[name] = old + (v - old) / n
        self.frames_with_face = n
        self.label = max(self.probabilities, key=self.probabilities.__getitem__)


@dataclass
class PredictReport:
    predictions: list[Prediction] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # file -> why
    videos: dict[str, VideoSummary] = field(default_factory=dict)  # file -> mean over its sampled frames


def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given; folders expanded to the images and videos inside (sorted, recursive)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES))
        else:
            files.append(p)
    return files


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def read_image_rgb(path: Path) -> tuple[np.ndarray, str]:
    """The upright RGB uint8 array and a note on what was done; a clear PredictError if it is no image.

    The EXIF orientation tag is applied (a phone's portrait photo is stored sideways with
    Orientation 6 or 8); an unreadable EXIF block is ignored and said in the note.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            notes = []
            try:
                orientation = int(im.getexif().get(EXIF_ORIENTATION) or 1)
                upright = ImageOps.exif_transpose(im)
            except Exception as err:  # a malformed EXIF block: the pixels are still fine
                orientation, upright = 1, im
                notes.append(f"EXIF orientation unreadable ({type(err).__name__}), used as stored")
            if orientation in _ORIENTATION_WORDS:
                notes.append(f"EXIF orientation {orientation} applied ({_ORIENTATION_WORDS[orientation]})")
            if upright.mode != "RGB":
                notes.append(f"converted from {upright.mode} to RGB")
            return np.asarray(upright.convert("RGB"), dtype=np.uint8).copy(), "; ".join(notes)
    except UnidentifiedImageError:
        raise PredictError(f"{path}: not an image this program can read") from None
    except OSError as err:
        raise PredictError(f"{path}: unreadable image ({err})") from None


class FacePredictor:
    """A run's best model plus the preprocessing that made its training crops."""

    def __init__(self, run: str | os.PathLike, device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        from .data.faces import create_detector
        from .train.run import load_run_model

        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise PredictError(f"batch_size must be a positive integer, got {batch_size!r}")
        run = Path(run)
        if not (run / "best.pt").exists():
            raise PredictError(f"{run}: no best.pt checkpoint (is it a finished `msvssm train` run folder?)")
        self.model, state, self.config = load_run_model(run, device)
        self.class_names: list[str] = list(state["class_names"])
        self.image_size = int(state.get("image_size") or self.config.image_size)
        self.crop_size = self._training_crop_size(Path(self.config.data))
        self.device = device
        self.batch_size = batch_size
        self.detector = create_detector()

    def _training_crop_size(self, data_dir: Path) -> int:
        pre = data_dir / "preprocess_config.json"
        if pre.exists():
            return int(json.loads(pre.read_text(encoding="utf-8"))["params"]["size"])
        return 2 * self.image_size  # the crops were made elsewhere: crop larger, then resize like training

    def faces(self, rgb: np.ndarray) -> list[tuple[np.ndarray, list[int]]]:
        """Every face, largest first (ties: top-most, then left-most): ``[(crop RGB, face box), ...]``.

        The crop is the preprocessing's (``face_crop``): enlarged 20 % per side, squared,
        clamped to the frame, resized to the training crop size.
        """
        from .data.faces import box_area, clamp_box, crop_face, detect_faces, enlarge_box

        h, w = rgb.shape[:2]
        boxes = sorted(detect_faces(self.detector, rgb), key=lambda b: (-box_area(b), b[1], b[0], b[2], b[3]))
        return [(crop_face(rgb, clamp_box(enlarge_box(b), w, h), self.crop_size), list(b)) for b in boxes]

    def crop(self, rgb: np.ndarray):
        """Largest face, the paper's crop -> (crop RGB, face box) or None."""
        found = self.faces(rgb)
        return found[0] if found else None

    @torch.no_grad()
    def probabilities(self, crops_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """(n, classes) softmax probabilities for face crops, resized and normalised as in training.

        The model sees at most ``batch_size`` crops at a time.
        """
        from PIL import Image

        from .train.data import normalize, to_float

        out = []
        for start in range(0, len(crops_rgb), self.batch_size):
            arrays = [np.asarray(Image.fromarray(c).resize((self.image_size,) * 2, Image.Resampling.BILINEAR,
                                                           reducing_gap=None))
                      for c in crops_rgb[start:start + self.batch_size]]
            x = to_float(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))  # (n, 3, s, s) in [0, 1]
            logits = self.model(normalize(x).to(self.device))  # (n, classes)
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def _classify(self, path: Path, pending: list[tuple]) -> list[Prediction]:
        """``pending`` = [(frame, time_s, face, crop, box, note), ...] (at most batch_size) -> predictions."""
        probs = self.probabilities([item[3] for item in pending])
        return [Prediction(str(path), frame, t, self.class_names[int(p.argmax())],
                           {n: round(float(v), 6) for n, v in zip(self.class_names, p)}, box, note, face)
                for (frame, t, face, _, box, note), p in zip(pending, probs)]

    def iter_file(self, path: Path, summary: VideoSummary | None = None) -> Iterator[Prediction]:
        """Predictions for one file, yielded one batch at a time (a video is never held whole).

        Raises :class:`PredictError` (naming the file) when it cannot be used. For a video,
        ``summary`` (if given) counts the sampled frames and keeps the running mean.
        """
        if not path.exists():
            raise PredictError(f"{path}: no such file")
        if is_video(path):
            yield from self._iter_video(path, summary)
            return
        rgb, note = read_image_rgb(path)
        found = self.faces(rgb)
        del rgb
        if not found:
            raise PredictError(f"{path}: no face found" + (f" ({note})" if note else ""))
        for start in range(0, len(found), self.batch_size):
            yield from self._classify(path, [(None, None, start + k, crop, box, note)
                                             for k, (crop, box) in enumerate(found[start:start + self.batch_size])])

    def predict_file(self, path: Path) -> list[Prediction]:
        return list(self.iter_file(path))

    def _iter_video(self, path: Path, summary: VideoSummary | None) -> Iterator[Prediction]:
        pending: list[tuple] = []
        sampled = with_face = 0
        for idx, t, rgb in self.video_frames(path):
            sampled += 1
            if summary is not None:
                summary.frames_sampled = sampled
            found = self.faces(rgb)
            del rgb  # the frame is not needed once its face is cropped
            if not found:
                continue
            with_face += 1
            crop, box = found[0]
            pending.append((idx, t, 0, crop, box, f"largest of {len(found)} faces" if len(found) > 1 else ""))
            if len(pending) == self.batch_size:
                yield from self._emit(path, pending, summary)
                pending = []
        if pending:
            yield from self._emit(path, pending, summary)
        if sampled == 0:
            raise PredictError(f"{path}: no frame could be decoded")
        if with_face == 0:
            raise PredictError(f"{path}: no face found" + (f" in {sampled} sampled frames" if sampled > 1 else ""))

    def _emit(self, path: Path, pending: list[tuple], summary: VideoSummary | None) -> Iterator[Prediction]:
        for p in self._classify(path, pending):
            if summary is not None:
                summary.add(p)
            yield p

    def video_frames(self, path: Path) -> Iterator[tuple[int, float, np.ndarray]]:
        """``(frame index, time s, RGB frame)`` for the sampled frames, decoded one at a time."""
        import cv2

        from .data import video

        try:
            info = video.probe_video(path)
            times = video.sample_times(info.fps, info.frame_count) or \
                video.sample_times(info.fps, info.frame_count, start_s=0.0)
            time_of = {idx: t for t, idx in times}
            for idx, bgr in video.read_frames(path, list(time_of)):
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                del bgr
                yield idx, time_of[idx], rgb
                del rgb  # hold no frame while the next one decodes
        except (video.VideoError, ValueError, OSError, cv2.error) as err:
            raise PredictError(f"{path}: unreadable video ({err})") from None

    def annotate(self, path: Path, preds: list[Prediction], out_dir: Path) -> Path | None:
        """The upright image with each face's box, index and predicted class drawn (images only)."""
        import cv2

        if is_video(path):
            return None
        rgb, _ = read_image_rgb(path)
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        for p in preds:
            x0, y0, x1, y1 = p.face_box
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (0, 200, 0), 2)
            text = (f"{p.face}: " if len(preds) > 1 else "") + f"{p.label} {p.probabilities[p.label]:.2f}"
            cv2.putText(img, text, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 0), 1, cv2.LINE_AA)
        target = out_dir / f"{path.stem}_annotated.png"
        out_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), img)
        return target


def predict_paths(paths: Sequence[str | os.PathLike], run: str | os.PathLike, out: str | os.PathLike | None = None,
                  annotate: bool = False, device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE,
                  frame_rows: bool = True) -> PredictReport:
    """Classify every image / video in ``paths``; failures are collected per file, never raised.

    Photos give one prediction per face; videos one per sampled frame with a face (unless
    ``frame_rows=False``) plus a per-video mean in ``report.videos``.
    """
    predictor = FacePredictor(run, device, batch_size)
    report = PredictReport()
    for given in map(Path, paths):
        if given.is_dir() and not expand_inputs([given]):
            report.failures[str(given)] = f"{given}: a folder with no image or video ({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})"
    for path in expand_inputs(paths):
        start = len(report.predictions)
        summary = VideoSummary(str(path)) if is_video(path) else None
        try:
            for p in predictor.iter_file(path, summary):
                if summary is None or frame_rows:
                    report.predictions.append(p)
        except Exception as err:  # one bad file never stops the others; say which file and why
            del report.predictions[start:]
            message = str(err) if isinstance(err, PredictError) else f"{path}: {type(err).__name__}: {err}"
            report.failures[str(path)] = message
            log.error("%s", message)
            continue
        if summary is not None:
            summary.probabilities = {k: round(v, 6) for k, v in summary.probabilities.items()}
            report.videos[str(path)] = summary
        elif annotate and out is not None:
            predictor.annotate(path, report.predictions[start:], Path(out))
    if out is not None:
        atomic_write_json(Path(out) / "predictions.json", {
            "run": str(run), "classes": predictor.class_names,
            "predictions": [asdict(p) for p in report.predictions],
            "videos": [asdict(v) for v in report.videos.values()], "failures": report.failures})
    return report


def format_report(report: PredictReport) -> str:
    """One table row per face (photos) or sampled frame (videos); then each video's mean."""
    if not report.predictions and not report.videos:
        return "no predictions"
    import pandas as pd

    parts = []
    if report.predictions:
        rows = [{"file": p.file, "frame": "" if p.frame is None else p.frame, "face": p.face,
                 "box": ",".join(map(str, p.face_box)), "class": p.label,
                 **{k: f"{v:.3f}" for k, v in p.probabilities.items()}, "note": p.note} for p in report.predictions]
        parts.append(pd.DataFrame(rows).to_markdown(index=False))
    if report.videos:
        rows = [{"video": v.file, "frames with a face": f"{v.frames_with_face}/{v.frames_sampled}",
                 "mean class": v.label, **{k: f"{x:.3f}" for k, x in v.probabilities.items()}}
                for v in report.videos.values()]
        parts.append(pd.DataFrame(rows).to_markdown(index=False))
    return "\n\n".join(parts)


def add_cli(parser: argparse.ArgumentParser) -> None:
    parser.description = "Classify the faces in images, videos or folders with a trained run."
    parser.add_argument("paths", nargs="+", help="images, videos or folders of them")
    parser.add_argument("--run", required=True, help="run folder (config.json + best.pt)")
    parser.add_argument("--out", help="write predictions.json (and annotated images) here")
    parser.add_argument("--annotate", action="store_true", help="draw the face boxes and classes (needs --out)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"face crops per forward pass (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--video-summary", action="store_true",
                        help="videos: only the mean over the sampled frames, no row per frame")

    def run(args: argparse.Namespace) -> int:
        if args.annotate and not args.out:
            parser.error("--annotate needs --out")
        if args.batch_size < 1:
            parser.error("--batch-size must be at least 1")
        try:
            report = predict_paths(args.paths, args.run, args.out, args.annotate, args.device,
                                   batch_size=args.batch_size, frame_rows=not args.video_summary)
        except PredictError as err:
            print(f"error: {err}")
            return 2
        print(format_report(report))
        for f, why in report.failures.items():
            print(f"failed: {why}")
        return 1 if report.failures else 0

    parser.set_defaults(func=run)

"""``msvssm preprocess``: DEAP face videos -> labelled face crops (paper, section 4.1.1 steps 1-3).

For every video ``face_video/sXX/sXX_trialYY.avi`` of a DEAP root:

1. decode it with OpenCV, drop the first 3 s and sample one frame per second
   (:mod:`msvssm.data.video` defines the exact frame index for each time);
2. detect faces with dlib's frontal detector, keep the largest, enlarge the box by
   20 % on every side, make it square, clamp it to the frame, crop and resize to
   ``size`` (default 224) (:mod:`msvssm.data.faces`);
3. label the crop with the trial's quadrant (``>= 5`` is high) and write it as PNG
   in ImageFolder layout: ``OUT/images/HVHA/s01_trial01_t003.png``.

Output folder::

    OUT/preprocess_config.json   parameters (a rerun with other parameters is refused)
    OUT/images/<CLASS>/*.png     the crops
    OUT/parts/sXX_trialYY.csv    per-video manifest rows; written last, atomically,
                                 so it is the video's done-marker (resume skips it)
    OUT/manifest.csv             one row per sampled frame (and one per video that
                                 gave no frame), sorted by participant, trial, time
    OUT/summary.json             counts: videos, frames, faces, skipped and why
    OUT/classes.json             class names in label-index order

Columns and ``status`` values are defined in :mod:`.manifest`: ``ok`` (crop written), ``no_face``, ``truncated`` (the stream
ended before this sampled frame), ``too_short`` (shorter than 3 s: no frame
sampled), ``empty_video`` (0-byte file or no frame), ``unreadable_video``
(OpenCV cannot open or decode it), ``missing_video`` (a trial with a rating but no
file), ``missing_rating`` (a file without a rating row), ``error`` (an unexpected
exception; the message is in ``detail``).

Every file is written atomically, so a run killed at any moment and run again gives
exactly the files of an uninterrupted run; the output does not depend on the
number of workers.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..optional import require
from ..utils import atomic_write_bytes, atomic_write_json, atomic_write_text, get_logger, remove_atomic_leftovers
from .deap import CLASS_NAMES, DEFAULT_THRESHOLD, TRIAL_OK, DeapIndex, find_ratings_file, scan_deap
from .jobs import resolve_workers, run_jobs
from .manifest import CLASSES_FILE, MANIFEST_COLUMNS, MANIFEST_FILE, STATUS_OK, read_manifest_rows, write_manifest

log = get_logger("data.preprocess")

CONFIG_FILE = "preprocess_config.json"
SUMMARY_FILE = "summary.json"
IMAGES_DIR = "images"
PARTS_DIR = "parts"
FORMAT_VERSION = 1

class PreprocessConfigError(RuntimeError):
    """The output folder holds a run made with other parameters."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters that change the output (all recorded in ``preprocess_config.json``)."""

    start_s: float = 3.0  # discard the first 3 s
    step_s: float = 1.0  # 1 frame per second
    fps: float | None = None  # override the file's fps
    frame_count: int | None = None  # override the file's frame count
    upsample: int = 0  # dlib upsampling
    enlarge: float = 0.2  # box grows by 20 % of its size on every side
    square: bool = True  # make the enlarged box square (keeps aspect on resize)
    size: int = 224  # stored crop size (pixels, square)
    threshold: float = DEFAULT_THRESHOLD  # >= threshold is high
    image_format: str = "png"  # png (lossless, deterministic) or jpg
    png_compression: int = 3
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be 'png' or 'jpg', got {self.image_format!r}")
        if self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        if self.step_s <= 0:
            raise ValueError("step_s must be positive")


# ----------------------------------------------------------------------------- per video


def _fmt_float(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def _fmt_time(t: float) -> str:
    return f"{t:g}"


def _time_tag(t: float) -> str:
    if abs(t - round(t)) < 1e-6:
        return f"t{int(round(t)):03d}"
    ms = int(round(t * 1000))
    return f"t{ms // 1000:03d}p{ms % 1000:03d}"


def _fmt_box(box) -> str:
    return "" if box is None else " ".join(str(int(v)) for v in box)


def _video_name(participant: int, trial: int) -> str:
    return f"s{participant:02d}_trial{trial:02d}"


def _base_row(job: dict[str, Any]) -> dict[str, str]:
    row = {c: "" for c in MANIFEST_COLUMNS}
    row.update(
        participant=str(job["participant"]),
        trial=str(job["trial"]),
        experiment_id="" if job["experiment_id"] is None else str(job["experiment_id"]),
        video=job["video"],
        valence=_fmt_float(job["valence"]),
        arousal=_fmt_float(job["arousal"]),
        label=job["label"],
    )
    return row


_WORKER: dict[str, Any] = {}


def _init_worker(config: dict[str, Any]) -> None:
    cv2 = require("cv2", "faces", "msvssm preprocess")

    from .faces import create_detector

    if mp.parent_process() is not None:  # a pool worker: one thread each (the run itself keeps OpenCV's)
        cv2.setNumThreads(1)
    _WORKER["config"] = PreprocessConfig(**config)
    _WORKER["detector"] = create_detector()


def _encode(image, cfg: PreprocessConfig) -> bytes:
    cv2 = require("cv2", "faces", "msvssm preprocess")

    if cfg.image_format == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, int(cfg.png_compression)])
    else:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
    if not ok:
        raise RuntimeError("image encoding failed")
    return buf.tobytes()


def process_video(job: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """Sample, detect, crop and write one video; return ``(name, manifest rows)``.

    Runs in a worker (uses the detector made by ``_init_worker``). The part file
    ``OUT/parts/<name>.csv`` is written last, atomically.
    """
    from .video import VideoError, probe_video, sample_times

    cfg: PreprocessConfig = _WORKER["config"]
    detector = _WORKER["detector"]
    out = Path(job["out"])
    name = _video_name(job["participant"], job["trial"])
    path = Path(job["video_path"])
    rows: list[dict[str, str]] = []

    def video_row(status: str, detail: str = "") -> None:
        row = _base_row(job)
        row.update(status=status, detail=detail)
        rows.append(row)

    try:
        if not path.is_file():
            video_row("missing_video", "file disappeared")
        elif path.stat().st_size == 0:
            video_row("empty_video", "0-byte file")
        else:
            try:
                info = probe_video(path, cfg.fps, cfg.frame_count)
            except VideoError as exc:
                reason = "no usable fps" if "fps" in str(exc) else "OpenCV cannot open the file"
                info = None
                video_row("unreadable_video", reason)
            if info is not None:
                times = sample_times(info.fps, info.frame_count, cfg.start_s, cfg.step_s)
                if info.frame_count <= 0:
                    video_row("empty_video", "no frame decodes")
                elif not times:
                    video_row("too_short", f"{info.frame_count} frames at {info.fps:g} fps")
                else:
                    rows = _crop_frames(job, path, times, info, cfg, detector, out, name)
    except Exception as exc:  # a bad video must never stop the run
        log.exception("video %s failed", job["video"])
        rows = []
        video_row("error", f"{type(exc).__name__}: {exc}")

    write_manifest(out / PARTS_DIR / f"{name}.csv", rows)
    return name, rows


def _crop_frames(job, path, times, info, cfg, detector, out, name) -> list[dict[str, str]]:
    from .faces import face_crop
    from .video import read_frames

    results: dict[int, dict[str, str]] = {}
    wanted = {idx for _, idx in times}
    by_index: dict[int, list[float]] = {}
    for t, idx in times:
        by_index.setdefault(idx, []).append(t)
    decoded = 0
    for idx, frame in read_frames(path, sorted(wanted)):
        decoded += 1
        try:
            crop, face, box, n_faces, clamped = face_crop(
                detector, frame, upsample=cfg.upsample, enlarge=cfg.enlarge, square=cfg.square, size=cfg.size
            )
            frame_error = ""
        except Exception as exc:  # one bad frame costs that frame only, not the video
            log.warning("%s frame %d: %s: %s", job["video"], idx, type(exc).__name__, exc)
            crop, face, box, n_faces, clamped = None, None, None, 0, False
            frame_error = f"{type(exc).__name__}: {exc}"
        for t in by_index[idx]:
            row = _base_row(job)
            row.update(time_s=_fmt_time(t), frame_index=str(idx), n_faces=str(n_faces))
            if frame_error:
                row.update(status="error", detail=frame_error)
            elif crop is None:
                row.update(status="no_face")
            else:
                details = []
                if n_faces > 1:
                    details.append(f"faces={n_faces}")
                if clamped:
                    details.append("clamped")
                rel = f"{IMAGES_DIR}/{job['label']}/{name}_{_time_tag(t)}.{cfg.image_format}"
                atomic_write_bytes(out / rel, _encode(crop, cfg))
                row.update(face_box=_fmt_box(face), box=_fmt_box(box), status=STATUS_OK, detail=";".join(details), path=rel)
            results[int(round(t * 1e6))] = row
    if decoded == 0:
        row = _base_row(job)
        row.update(status="unreadable_video", detail="no frame decodes")
        return [row]
    rows = []
    for t, idx in times:
        key = int(round(t * 1e6))
        if key in results:
            rows.append(results[key])
        else:
            row = _base_row(job)
            row.update(
                time_s=_fmt_time(t),
                frame_index=str(idx),
                status="truncated",
                detail=f"stream ended before frame {idx} (header says {info.frame_count} frames)",
            )
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- run


def _config_record(root: Path, cfg: PreprocessConfig) -> dict[str, Any]:
    # The ratings' hash too: labels come from them, so changed ratings must not reuse old crops.
    ratings = find_ratings_file(root)
    return {
        "format_version": FORMAT_VERSION,
        "root": str(root.resolve()),
        "ratings_sha256": hashlib.sha256(ratings.read_bytes()).hexdigest(),
        "params": asdict(cfg),
    }


def _versions() -> dict[str, str]:
    cv2 = require("cv2", "faces", "msvssm preprocess")
    dlib = require("dlib", "faces", "msvssm preprocess")

    return {"opencv": cv2.__version__, "dlib": getattr(dlib, "__version__", "?")}


def _clean_output(out: Path) -> None:
    for name in (IMAGES_DIR, PARTS_DIR, "splits"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    for name in (MANIFEST_FILE, SUMMARY_FILE, CLASSES_FILE, CONFIG_FILE):
        if (out / name).exists():
            (out / name).unlink()


def _remove_temp_files(out: Path) -> int:
    """Delete leftovers of writes interrupted by a kill (``.name.XXXX.tmp*``)."""
    return remove_atomic_leftovers([out, out / PARTS_DIR, *sorted((out / IMAGES_DIR).glob("*"))])


def _prepare_output(root: Path, out: Path, cfg: PreprocessConfig, overwrite: bool) -> None:
    record = _config_record(root, cfg)
    config_path = out / CONFIG_FILE
    if config_path.exists():
        old = json.loads(config_path.read_text(encoding="utf-8"))
        old_cmp = {k: old.get(k) for k in ("format_version", "root", "ratings_sha256", "params")}
        if old_cmp != record:
            if not overwrite:
                diffs = []
                for key, value in record["params"].items():
                    if (old.get("params") or {}).get(key) != value:
                        diffs.append(f"{key}: {(old.get('params') or {}).get(key)!r} -> {value!r}")
                if old.get("root") != record["root"]:
                    diffs.append(f"root: {old.get('root')!r} -> {record['root']!r}")
                if old.get("ratings_sha256") != record["ratings_sha256"]:
                    diffs.append(f"the ratings file changed (sha256 {str(old.get('ratings_sha256'))[:12]}... -> "
                                 f"{record['ratings_sha256'][:12]}...)")
                if old.get("format_version") != FORMAT_VERSION:
                    diffs.append(f"format_version: {old.get('format_version')!r} -> {FORMAT_VERSION}")
                raise PreprocessConfigError(
                    f"{out} holds a preprocessing run with other parameters ({'; '.join(diffs)}); "
                    "use another --out or pass --overwrite to delete it"
                )
            log.warning("--overwrite: deleting the previous run in %s", out)
            _clean_output(out)
    elif overwrite and out.exists():
        _clean_output(out)
    elif out.exists() and (out / IMAGES_DIR).exists():
        raise PreprocessConfigError(f"{out} has images/ but no {CONFIG_FILE}; use another --out or --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    record["versions"] = _versions()
    if not config_path.exists():
        atomic_write_json(config_path, record)
    removed = _remove_temp_files(out)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", removed)


def _jobs(index: DeapIndex, out: Path) -> list[dict[str, Any]]:
    jobs = []
    for r in index.trials.itertuples(index=False):
        if r.status != TRIAL_OK:
            continue
        jobs.append(
            dict(
                participant=int(r.participant),
                trial=int(r.trial),
                experiment_id=None if r.experiment_id is None or r.experiment_id != r.experiment_id else int(r.experiment_id),
                valence=float(r.valence),
                arousal=float(r.arousal),
                label=r.label,
                video=r.video,
                video_path=str(index.root / r.video),
                out=str(out),
            )
        )
    return jobs


def _trial_row(r) -> dict[str, str]:
    job = dict(
        participant=int(r.participant),
        trial=int(r.trial),
        experiment_id=None if r.experiment_id is None or r.experiment_id != r.experiment_id else int(r.experiment_id),
        valence=None if r.valence is None or r.valence != r.valence else float(r.valence),
        arousal=None if r.arousal is None or r.arousal != r.arousal else float(r.arousal),
        label=r.label or "",
        video=r.video,
    )
    row = _base_row(job)
    if r.status == "missing_video":
        row.update(status="missing_video", detail="no video file for this rating")
    else:
        row.update(status="missing_rating", detail="no rating row (or blank Valence/Arousal)")
    return row


def _summarise(index: DeapIndex, rows: list[dict[str, str]]) -> dict[str, Any]:
    status_counts = Counter(r["status"] for r in rows)
    frames = [r for r in rows if r["time_s"] != ""]
    video_status: dict[str, str] = {}
    for r in rows:
        key = f"s{int(r['participant']):02d}_trial{int(r['trial']):02d}"
        if r["time_s"] == "":
            video_status[key] = r["status"]
        elif key not in video_status:
            video_status[key] = "processed"
    ok = [r for r in rows if r["status"] == STATUS_OK]
    return {
        "videos_found": int((index.trials["video"] != "").sum()),
        "videos_processed": sum(1 for v in video_status.values() if v == "processed"),
        "videos_by_status": dict(sorted(Counter(video_status.values()).items())),
        "frames_sampled": len(frames),
        "faces_found": len(ok),
        "frames_by_status": dict(sorted(Counter(r["status"] for r in frames).items())),
        "rows_by_status": dict(sorted(status_counts.items())),
        "images_per_class": {c: sum(1 for r in ok if r["label"] == c) for c in CLASS_NAMES},
        "several_faces": sum(1 for r in ok if r["detail"].startswith("faces=")),
        "clamped_boxes": sum(1 for r in ok if "clamped" in r["detail"]),
        "missing_videos": index.missing_videos,
        "missing_ratings": index.missing_ratings,
        "participants_without_videos": [f"s{p:02d}" for p in index.participants_without_videos],
        "skipped_videos": {k: v for k, v in sorted(video_status.items()) if v != "processed"},
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"videos found      {summary['videos_found']}",
        f"videos processed  {summary['videos_processed']}",
        f"frames sampled    {summary['frames_sampled']}",
        f"faces found       {summary['faces_found']}",
        "rows by status    " + ", ".join(f"{k}={v}" for k, v in summary["rows_by_status"].items()),
        "images per class  " + ", ".join(f"{k}={v}" for k, v in summary["images_per_class"].items()),
    ]
    if summary["several_faces"]:
        lines.append(f"several faces     {summary['several_faces']} frames (largest kept)")
    if summary["skipped_videos"]:
        skipped = ", ".join(f"{k} ({v})" for k, v in summary["skipped_videos"].items())
        lines.append(f"videos skipped    {skipped}")
    return "\n".join(lines)


def preprocess_deap(
    root: str | os.PathLike,
    out: str | os.PathLike,
    config: PreprocessConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run steps 1-3 of the paper's preprocessing; returns the summary (also in summary.json).

    Resumable: videos with a part file are skipped. ``workers`` defaults to all cores;
    1 runs in this process.
    """
    cfg = config or PreprocessConfig()
    root, out = Path(root), Path(out)
    index = scan_deap(root, cfg.threshold)
    _prepare_output(root, out, cfg, overwrite)
    jobs = _jobs(index, out)

    def part_exists(job: dict[str, Any]) -> bool:
        return (out / PARTS_DIR / f"{_video_name(job['participant'], job['trial'])}.csv").exists()

    frames = 0

    def count_frames(result: tuple[str, list[dict[str, str]]]) -> dict[str, int]:
        nonlocal frames
        frames += sum(1 for r in result[1] if r["time_s"])
        return {"frames": frames}

    n_todo = sum(1 for j in jobs if not part_exists(j))
    n_workers = resolve_workers(workers, n_todo)
    t0 = time.perf_counter()
    run_jobs(process_video, jobs, workers=n_workers, is_done=part_exists, initializer=_init_worker,
             initargs=(asdict(cfg),), progress=progress, desc="preprocess", unit="video", postfix=count_frames)
    elapsed = time.perf_counter() - t0

    # Assemble the manifest in a fixed order from the part files.
    rows: list[dict[str, str]] = []
    for r in index.trials.itertuples(index=False):
        if r.status == TRIAL_OK:
            rows.extend(read_manifest_rows(out / PARTS_DIR / f"{_video_name(int(r.participant), int(r.trial))}.csv"))
        else:
            rows.append(_trial_row(r))
    write_manifest(out / MANIFEST_FILE, rows)
    atomic_write_json(out / CLASSES_FILE, list(CLASS_NAMES))
    summary = _summarise(index, rows)
    atomic_write_json(out / SUMMARY_FILE, summary)
    log.info(
        "preprocessed %d video(s), %d frame(s) in %.1f s with %d worker(s)", n_todo, frames, elapsed, n_workers
    )
    return summary


# ----------------------------------------------------------------------------- CLI


def add_cli(parser: argparse.ArgumentParser) -> None:
    parser.description = "DEAP face videos -> face crops in class folders, manifest.csv, summary.json."
    d = PreprocessConfig()
    parser.add_argument("--root", required=True, help="DEAP root (holds face_video/ and metadata_csv/)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="delete a previous run made with other parameters")
    parser.add_argument("--start-s", type=float, default=d.start_s, help="seconds discarded at the start (3)")
    parser.add_argument("--step-s", type=float, default=d.step_s, help="seconds between sampled frames (1)")
    parser.add_argument("--fps", type=float, default=None, help="override the file's fps")
    parser.add_argument("--frame-count", type=int, default=None, help="override the file's frame count")
    parser.add_argument("--upsample", type=int, default=d.upsample, help="dlib upsampling (0)")
    parser.add_argument("--enlarge", type=float, default=d.enlarge, help="box enlargement per side (0.2)")
    parser.add_argument("--no-square", action="store_true", help="do not make the enlarged box square")
    parser.add_argument("--size", type=int, default=d.size, help="stored crop size in pixels (224)")
    parser.add_argument("--threshold", type=float, default=d.threshold, help=">= threshold is high (5)")
    parser.add_argument("--format", choices=("png", "jpg"), default=d.image_format, help="image format (png)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from .deap import DeapFormatError, DeapLayoutError

        try:
            cfg = PreprocessConfig(
                start_s=args.start_s,
                step_s=args.step_s,
                fps=args.fps,
                frame_count=args.frame_count,
                upsample=args.upsample,
                enlarge=args.enlarge,
                square=not args.no_square,
                size=args.size,
                threshold=args.threshold,
                image_format=args.format,
            )
            summary = preprocess_deap(
                args.root,
                args.out,
                cfg,
                workers=args.workers,
                overwrite=args.overwrite,
                progress=not args.no_progress,
            )
        except (DeapLayoutError, DeapFormatError, PreprocessConfigError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(format_summary(summary))
        print(f"manifest: {Path(args.out) / MANIFEST_FILE}")
        return 0

    parser.set_defaults(func=run)


__all__ = [
    "MANIFEST_COLUMNS",
    "PreprocessConfig",
    "PreprocessConfigError",
    "preprocess_deap",
    "process_video",
    "format_summary",
    "add_cli",
]

"""Shared test helpers: tiny hand-made DEAP folders (cartoon faces dlib detects)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from msvssm.data.deap import RATING_COLUMNS

RATING_HEADER = list(RATING_COLUMNS)


def draw_face(img: np.ndarray, cx: int, cy: int, s: int) -> None:
    """Draw a simple cartoon face (BGR) of height ~1.1*s centred at (cx, cy); dlib detects it."""
    import cv2

    def i(v: float) -> int:
        return int(round(v))

    cv2.ellipse(img, (cx, cy), (i(0.42 * s), i(0.55 * s)), 0, 0, 360, (150, 180, 225), -1)
    cv2.ellipse(img, (cx, cy - i(0.5 * s)), (i(0.45 * s), i(0.2 * s)), 0, 180, 360, (40, 40, 60), -1)
    for dx in (-1, 1):
        ex, ey = cx + dx * i(0.17 * s), cy - i(0.1 * s)
        cv2.ellipse(img, (ex, ey), (i(0.09 * s), i(0.045 * s)), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (ex, ey), i(0.035 * s), (30, 30, 30), -1)
        cv2.line(img, (ex - i(0.1 * s), ey - i(0.1 * s)), (ex + i(0.1 * s), ey - i(0.11 * s)), (40, 40, 60), max(2, i(0.03 * s)))
    cv2.line(img, (cx, cy - i(0.05 * s)), (cx - i(0.04 * s), cy + i(0.12 * s)), (110, 130, 180), max(2, i(0.02 * s)))
    cv2.ellipse(img, (cx, cy + i(0.27 * s)), (i(0.14 * s), i(0.05 * s)), 0, 0, 180, (60, 60, 160), max(2, i(0.03 * s)))


def write_video(
    path: Path,
    n_frames: int,
    fps: float,
    size: tuple[int, int] = (240, 180),
    face: bool = True,
    face_size: int = 90,
    seed: int = 0,
) -> Path:
    """An MJPG AVI of ``n_frames`` frames; the face drifts a little each frame."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    rng = np.random.default_rng(seed)
    for k in range(n_frames):
        img = np.full((h, w, 3), 80 + (seed * 17) % 60, np.uint8)
        if face:
            dx, dy = rng.integers(-4, 5, size=2)
            draw_face(img, w // 2 + int(dx), h // 2 + 5 + int(dy), face_size)
        writer.write(img)
    writer.release()
    return path


def write_ratings(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or RATING_HEADER
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow(r)
    return path


def rating(p: int, t: int, v: float, a: float, exp: int | None = None) -> dict:
    return {
        "Participant_id": p,
        "Trial": t,
        "Experiment_id": exp if exp is not None else 40 - t + 1,
        "Start_time": 1000 * t,
        "Valence": v,
        "Arousal": a,
        "Dominance": 5,
        "Liking": 5,
        "Familiarity": "",
    }


def make_deap(root: Path, with_problems: bool = True, fps: float = 5.0, seconds: float = 6.0) -> Path:
    """A small DEAP-like folder.

    Good videos: s01 trials 1-3, s02 trials 1-3 (seconds x fps frames; 3 sampled frames
    at t = 3, 4, 5). With problems: s01_trial04 corrupt bytes, s02_trial04 0-byte,
    s02_trial05 rated but no file, s02_trial06 without a rating row, s01_trial05 2.9 s
    long, s01_trial06 a video with no face.
    """
    n = int(round(seconds * fps))
    vdir = root / "face_video"
    ratings = []
    labels = {1: (7.0, 7.0), 2: (5.0, 2.0), 3: (3.0, 5.0), 4: (2.0, 4.99), 5: (6.0, 6.0), 6: (4.0, 8.0)}
    for p in (1, 2):
        for t in (1, 2, 3):
            write_video(vdir / f"s{p:02d}" / f"s{p:02d}_trial{t:02d}.avi", n, fps, seed=10 * p + t)
            ratings.append(rating(p, t, *labels[t]))
    if with_problems:
        bad = vdir / "s01" / "s01_trial04.avi"
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
        ratings.append(rating(1, 4, *labels[4]))
        (vdir / "s02" / "s02_trial04.avi").write_bytes(b"")
        ratings.append(rating(2, 4, *labels[4]))
        ratings.append(rating(2, 5, *labels[5]))  # no video
        write_video(vdir / "s02" / "s02_trial06.avi", n, fps, seed=99)  # no rating row
        write_video(vdir / "s01" / "s01_trial05.avi", int(2.9 * fps), fps, seed=5)
        ratings.append(rating(1, 5, *labels[5]))
        write_video(vdir / "s01" / "s01_trial06.avi", n, fps, face=False, seed=6)
        ratings.append(rating(1, 6, *labels[6]))
        long = write_video(vdir / "s02" / "s02_trial07.avi", int(10 * fps), fps, seed=7)
        full = long.read_bytes()
        long.write_bytes(full[: int(len(full) * 0.6)])
        ratings.append(rating(2, 7, *labels[1]))
    # a participant with ratings but no face video (like DEAP's s23-s32)
    ratings.append(rating(23, 1, 7.0, 7.0))
    write_ratings(root / "metadata_csv" / "participant_ratings.csv", ratings)
    return root


@pytest.fixture(scope="session")
def deap_root(tmp_path_factory) -> Path:
    return make_deap(tmp_path_factory.mktemp("deap"))


@pytest.fixture(scope="session")
def preprocessed(tmp_path_factory, deap_root) -> Path:
    """``deap_root`` preprocessed once (1 worker, 64 px crops)."""
    from msvssm.data.preprocess import PreprocessConfig, preprocess_deap

    out = tmp_path_factory.mktemp("prep") / "out"
    preprocess_deap(deap_root, out, PreprocessConfig(size=64), workers=1, progress=False)
    return out


def synth_available() -> bool:
    try:
        from msvssm.data import synth
    except Exception:
        return False
    return hasattr(synth, "generate_synthetic_deap")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """``generate_synthetic_deap(scale="tiny")`` once per session (skips if not available)."""
    if not synth_available():
        pytest.skip("msvssm.data.synth.generate_synthetic_deap not available yet")
    from msvssm.data.synth import generate_synthetic_deap

    root = tmp_path_factory.mktemp("synth") / "deap"
    generate_synthetic_deap(root, seed=0, scale="tiny", workers=1, progress=False)
    return root


def tree_bytes(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), for byte-for-byte comparisons."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            p = Path(dirpath) / name
            rel = p.relative_to(folder).as_posix()
            if rel in skip:
                continue
            out[rel] = p.read_bytes()
    return out



def kill_cli_when(args: list[str], ready, timeout: float = 60.0) -> int:
    """Run ``python -m msvssm.cli ARGS``, SIGKILL it as soon as ``ready()`` is true; return its exit code.

    A code of ``-SIGKILL`` means it was killed mid-run (the caller asserts that).
    """
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "msvssm.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode

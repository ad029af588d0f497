"""Video decoding and the paper's keyframe sampling (section 4.1.1, step 1).

Sampling rule (exact): with ``fps`` and ``frame_count`` read from the file (or given
as overrides), the sampled times are ``t_k = start_s + k * step_s`` for k = 0, 1, ...
(default 3, 4, 5, ... seconds) and the frame taken for ``t`` is

    index(t) = floor(t * fps + 0.5)        (round half up; 1e-6 tolerance for float noise)

kept only while ``index(t) < frame_count``. A 3.5 s clip at 29.97 fps (104 frames)
gives t = 3 -> frame 90; a 2.9 s clip gives no frame at all.

Frames are decoded sequentially (``grab`` every frame, ``retrieve`` only the wanted
ones): seeking with ``CAP_PROP_POS_FRAMES`` is inexact for some codecs.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..optional import require

cv2 = require("cv2", "faces", "video decoding")

DEFAULT_START_S = 3.0
DEFAULT_STEP_S = 1.0


class VideoError(RuntimeError):
    """A video that cannot be opened or has no usable fps/frame count."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frame_count: int
    width: int
    height: int


def frame_index(t: float, fps: float) -> int:
    """The frame shown at time ``t`` seconds: ``floor(t * fps + 0.5)``."""
    return int(math.floor(t * fps + 0.5 + 1e-6))


def sample_times(
    fps: float,
    frame_count: int,
    start_s: float = DEFAULT_START_S,
    step_s: float = DEFAULT_STEP_S,
) -> list[tuple[float, int]]:
    """``[(t, frame_index), ...]`` for t = start_s, start_s + step_s, ... while the index < frame_count."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if step_s <= 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    out = []
    k = 0
    while True:
        t = start_s + k * step_s
        idx = frame_index(t, fps)
        if idx >= frame_count:
            break
        if idx >= 0:
            out.append((round(t, 6), idx))
        k += 1
    return out


def probe_video(path: str | os.PathLike, fps: float | None = None, frame_count: int | None = None) -> VideoInfo:
    """fps, frame count and size of a video as OpenCV reports them (overrides win).

    Raises :class:`VideoError` when the file cannot be opened. A frame count that the
    container does not give (<= 0) is found by decoding the whole file once.
    """
    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"OpenCV cannot open {path}")
        file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        file_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    finally:
        cap.release()
    use_fps = float(fps) if fps is not None else file_fps
    if not (use_fps > 0 and math.isfinite(use_fps)):
        raise VideoError(f"{path} reports no usable fps ({file_fps}); pass an fps override")
    if frame_count is not None:
        count = int(frame_count)
    elif file_count > 0:
        count = file_count
    else:
        count = count_frames(path)
    return VideoInfo(fps=use_fps, frame_count=count, width=width, height=height)


def count_frames(path: str | os.PathLike) -> int:
    """Number of frames that actually decode (reads the whole file)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def read_frames(path: str | os.PathLike, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, BGR frame)`` for the wanted indices, decoding sequentially.

    Stops early (yielding fewer frames) when the stream ends or a frame fails to
    decode; the caller sees which indices are missing.
    """
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"OpenCV cannot open {path}")
    try:
        pos = 0
        for idx in wanted:
            while pos < idx:
                if not cap.grab():
                    return
                pos += 1
            ok, frame = cap.read()
            pos += 1
            if not ok or frame is None:
                return
            yield idx, frame
    finally:
        cap.release()

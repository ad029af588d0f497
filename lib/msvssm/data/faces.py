"""Face detection and cropping (section 4.1.1, step 2).

* Detector: ``dlib.get_frontal_face_detector()`` (HOG + linear SVM, model built in),
  ``upsample`` times upsampled (default 0: faces of about 80x80 px and larger).
* Several faces: the largest box is kept (ties: top-most, then left-most) and the
  number of faces is recorded.
* Boxes are half-open pixel boxes ``(x0, y0, x1, y1)``: dlib's inclusive
  ``right()``/``bottom()`` become ``x1 = right + 1``, ``y1 = bottom + 1``.
* Enlargement: each side moves out by ``enlarge`` (20 %) of the box's width
  (left/right) or height (top/bottom), as in the paper. With ``square=True``
  (default) the shorter side of the enlarged box is then grown about the centre to
  equal the longer one, so resizing the crop to ``size x size`` keeps the face's
  aspect ratio (dlib's boxes are nearly square, so this changes little). The box is
  then clamped to the frame; only a face at the border gives a non-square crop,
  which is stretched by the resize (the manifest's ``detail`` says ``clamped``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..optional import require

cv2 = require("cv2", "faces", "face detection and cropping")

Box = tuple[int, int, int, int]

DEFAULT_ENLARGE = 0.2
DEFAULT_SIZE = 224


def create_detector():
    """dlib's frontal face detector (create once per process: it takes ~0.1 s)."""
    dlib = require("dlib", "faces", "face detection")

    return dlib.get_frontal_face_detector()


def detect_faces(detector, image_rgb: np.ndarray, upsample: int = 0) -> list[Box]:
    """All face boxes in an RGB (or grey) uint8 image, as half-open ``(x0, y0, x1, y1)``."""
    image = np.ascontiguousarray(image_rgb)
    rects = detector(image, int(upsample))
    return [(int(r.left()), int(r.top()), int(r.right()) + 1, int(r.bottom()) + 1) for r in rects]


def box_area(box: Box) -> int:
    x0, y0, x1, y1 = box
    return max(0, x1 - x0) * max(0, y1 - y0)


def largest_box(boxes: Sequence[Box]) -> Box | None:
    """The biggest box (ties: smallest y0, then x0); ``None`` for no boxes."""
    if not boxes:
        return None
    return min(boxes, key=lambda b: (-box_area(b), b[1], b[0], b[2], b[3]))


def enlarge_box(box: Box, enlarge: float = DEFAULT_ENLARGE, square: bool = True) -> Box:
    """Move each side out by ``enlarge`` x the box size (and make it square); not clamped.

    Coordinates are rounded outwards (floor for x0/y0, ceil for x1/y1).
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    fx0, fy0 = x0 - enlarge * w, y0 - enlarge * h
    fx1, fy1 = x1 + enlarge * w, y1 + enlarge * h
    if square:
        ew, eh = fx1 - fx0, fy1 - fy0
        if ew < eh:
            pad = (eh - ew) / 2
            fx0, fx1 = fx0 - pad, fx1 + pad
        elif eh < ew:
            pad = (ew - eh) / 2
            fy0, fy1 = fy0 - pad, fy1 + pad
    eps = 1e-9
    return (math.floor(fx0 + eps), math.floor(fy0 + eps), math.ceil(fx1 - eps), math.ceil(fy1 - eps))


def clamp_box(box: Box, width: int, height: int) -> Box:
    """Clip a box to the frame ``[0, width) x [0, height)``."""
    x0, y0, x1, y1 = box
    return (max(0, x0), max(0, y0), min(width, x1), min(height, y1))


def crop_face(frame: np.ndarray, box: Box, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Crop ``box`` (already clamped) and resize it to ``size x size``.

    INTER_AREA when shrinking, INTER_CUBIC when enlarging; both deterministic.
    """
    x0, y0, x1, y1 = box
    crop = frame[y0:y1, x0:x1]
    if crop.size == 0:
        raise ValueError(f"empty crop for box {box} in a frame of shape {frame.shape}")
    shrinking = crop.shape[0] >= size and crop.shape[1] >= size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def face_crop(
    detector,
    frame_bgr: np.ndarray,
    *,
    upsample: int = 0,
    enlarge: float = DEFAULT_ENLARGE,
    square: bool = True,
    size: int = DEFAULT_SIZE,
) -> tuple[np.ndarray | None, Box | None, Box | None, int, bool]:
    """Detect, pick the largest face, enlarge, clamp, crop.

    Returns ``(crop_bgr or None, face_box, crop_box, n_faces, clamped)``.
    """
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB) if frame_bgr.ndim == 3 else frame_bgr
    boxes = detect_faces(detector, rgb, upsample)
    face = largest_box(boxes)
    if face is None:
        return None, None, None, 0, False
    h, w = frame_bgr.shape[:2]
    big = enlarge_box(face, enlarge, square)
    crop_box = clamp_box(big, w, h)
    return crop_face(frame_bgr, crop_box, size), face, crop_box, len(boxes), crop_box != big

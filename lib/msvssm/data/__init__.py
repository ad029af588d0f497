"""Data: DEAP's on-disk layout, the synthetic DEAP generator, preprocessing, splits, datasets.

Names are imported lazily (``msvssm.data.CLASS_NAMES`` loads only :mod:`.deap`), so
importing the package does not pull in OpenCV, dlib or torch.

* :mod:`.deap` — ``CLASS_NAMES``, ``quadrant``, ``read_ratings``, ``scan_deap``
* :mod:`.video` — ``sample_times``, ``frame_index``, ``probe_video``, ``read_frames``
* :mod:`.faces` — ``create_detector``, ``detect_faces``, ``enlarge_box``, ``clamp_box``, ``face_crop``
* :mod:`.manifest` — ``MANIFEST_COLUMNS``, ``STATUSES``, ``read_manifest``, ``read_classes``,
  ``build_imagefolder_manifest``
* :mod:`.preprocess` — ``preprocess_deap``, ``PreprocessConfig`` (CLI ``msvssm preprocess``)
* :mod:`.splits` — ``make_splits``, ``read_split`` (CLI ``msvssm split``)
* :mod:`.dataset` — ``FaceImageDataset``, ``train_transforms``, ``eval_transforms``
* :mod:`.toy` — ``make_quadrant_folder`` (a toy image folder a model learns in seconds)
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "deap": [
        "CLASS_NAMES",
        "DEFAULT_THRESHOLD",
        "RATING_COLUMNS",
        "DeapFormatError",
        "DeapLayoutError",
        "DeapIndex",
        "quadrant",
        "label_index",
        "add_labels",
        "read_ratings",
        "find_ratings_file",
        "find_videos",
        "scan_deap",
    ],
    "video": ["VideoError", "VideoInfo", "frame_index", "sample_times", "probe_video", "read_frames"],
    "faces": ["create_detector", "detect_faces", "largest_box", "enlarge_box", "clamp_box", "crop_face", "face_crop"],
    "toy": ["make_quadrant_folder"],
    "manifest": ["MANIFEST_COLUMNS", "STATUSES", "read_manifest", "read_classes", "build_imagefolder_manifest"],
    "preprocess": ["PreprocessConfig", "PreprocessConfigError", "preprocess_deap", "format_summary"],
    "splits": ["PROTOCOLS", "SplitError", "make_splits", "read_split", "leakage", "split_frames", "split_trials",
               "split_subjects", "subject_folds"],
    "dataset": ["FaceImageDataset", "ImageReadError", "train_transforms", "eval_transforms", "IMAGENET_MEAN",
                "IMAGENET_STD"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'msvssm.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_WHERE))


__all__ = sorted(_WHERE)

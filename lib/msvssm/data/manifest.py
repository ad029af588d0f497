"""The manifest: one CSV row per sampled frame (or per video that gave none), its schema and I/O.

``msvssm preprocess`` writes ``DATA/manifest.csv`` (and ``DATA/classes.json``);
:func:`build_imagefolder_manifest` writes the same kind of file for a folder of
class subfolders. :mod:`.splits` and :mod:`.dataset` read it with
:func:`read_manifest`. This module is the only place that knows the file's
columns and status values, so the readers and writers need not import each other.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from ..utils import atomic_write_json, atomic_write_text, get_logger
from .deap import class_names_for

log = get_logger("data.manifest")

MANIFEST_FILE = "manifest.csv"
CLASSES_FILE = "classes.json"

MANIFEST_COLUMNS: tuple[str, ...] = (
    "participant",
    "trial",
    "experiment_id",
    "time_s",
    "frame_index",
    "video",
    "face_box",
    "box",
    "n_faces",
    "valence",
    "arousal",
    "label",
    "status",
    "detail",
    "path",
)

STATUS_OK = "ok"  # a crop was written; the only rows that splits and datasets use
# Every value of the ``status`` column (docs/data_pipeline.md explains each).
STATUSES: tuple[str, ...] = (
    STATUS_OK,
    "no_face",
    "truncated",
    "too_short",
    "empty_video",
    "unreadable_video",
    "missing_video",
    "missing_rating",
    "error",
)
# Columns a manifest must have (an ImageFolder manifest leaves the others blank).
REQUIRED_COLUMNS = ("path", "label", "status")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


def manifest_csv(rows: Iterable[Mapping[str, str]]) -> str:
    """Manifest rows (dicts keyed by :data:`MANIFEST_COLUMNS`) as CSV text, header first, ``\\n`` line ends."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_manifest(path: str | Path, rows: Iterable[Mapping[str, str]]) -> None:
    """Write manifest rows to ``path`` atomically (a kill leaves the old file or the new one)."""
    atomic_write_text(path, manifest_csv(rows))


def read_manifest_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a manifest-format CSV (``manifest.csv`` or a per-video part file), as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_manifest(data_dir: str | Path, ok_only: bool = True) -> pd.DataFrame:
    """``DATA/manifest.csv`` as strings (rows with status ``ok`` only by default).

    Raises ``FileNotFoundError`` without a manifest and ``ValueError`` when a required
    column is missing or a status is not one of :data:`STATUSES`.
    """
    path = Path(data_dir) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"no manifest.csv in {data_dir}: run `msvssm preprocess` first, or build one for an ImageFolder "
            "with msvssm.data.build_imagefolder_manifest"
        )
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise ValueError(f"{path} lacks the column {col!r}")
    unknown = sorted(set(df["status"]) - set(STATUSES))
    if unknown:
        raise ValueError(f"{path} has unknown status value(s) {unknown}; known: {', '.join(STATUSES)}")
    for col in ("participant", "trial"):
        if col not in df.columns:
            df[col] = ""
    if ok_only:
        df = df[df["status"] == STATUS_OK].reset_index(drop=True)
    return df


def read_classes(data_dir: str | Path, labels: Sequence[str] | None = None) -> list[str]:
    """Class names in label-index order: ``DATA/classes.json``, else DEAP's or the sorted labels."""
    path = Path(data_dir) / CLASSES_FILE
    if path.exists():
        return list(json.loads(path.read_text(encoding="utf-8")))
    if labels is None:
        labels = read_manifest(data_dir)["label"].tolist()
    return class_names_for(labels)


def build_imagefolder_manifest(
    root: str | Path,
    *,
    group_pattern: str | None = None,
    write: bool = True,
) -> pd.DataFrame:
    """A manifest for ``ROOT/<class>/<image>`` (class names = folder names, sorted).

    ``group_pattern``: optional regex searched in each file name whose first group is
    the participant id (e.g. ``r"^(S\\d+)_"``), which enables the ``subject`` and
    ``trial`` protocols (``trial`` uses the same id). Writes ``ROOT/manifest.csv`` and
    ``ROOT/classes.json`` when ``write``.
    """
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "splits")
    pattern = re.compile(group_pattern) if group_pattern else None
    rows = []
    for cls in classes:
        for f in sorted((root / cls).rglob("*")):
            if not f.is_file() or f.suffix.lower() not in IMAGE_EXTENSIONS or f.name.startswith("."):
                continue
            row = {c: "" for c in MANIFEST_COLUMNS}
            if pattern is not None:
                m = pattern.search(f.name)
                if m is None:
                    raise ValueError(f"group_pattern {group_pattern!r} does not match {f}")
                row["participant"] = m.group(1)
                row["trial"] = m.group(1)
            row.update(label=cls, status=STATUS_OK, path=f.relative_to(root).as_posix())
            rows.append(row)
    classes = [c for c in classes if any(r["label"] == c for r in rows)]
    if not rows:
        raise FileNotFoundError(f"{root} has no class subfolders with images ({', '.join(IMAGE_EXTENSIONS)})")
    if write:
        write_manifest(root / MANIFEST_FILE, rows)
        atomic_write_json(root / CLASSES_FILE, classes)
    log.info("ImageFolder %s: %d images in %d classes %s", root, len(rows), len(classes), classes)
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


__all__ = [
    "MANIFEST_FILE",
    "CLASSES_FILE",
    "MANIFEST_COLUMNS",
    "STATUS_OK",
    "STATUSES",
    "IMAGE_EXTENSIONS",
    "manifest_csv",
    "write_manifest",
    "read_manifest_rows",
    "read_manifest",
    "read_classes",
    "build_imagefolder_manifest",
]

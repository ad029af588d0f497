"""Torch datasets over a preprocessed manifest (or any ImageFolder) plus the paper's transforms.

* :func:`train_transforms` — paper step 4/5: Resize, RandomHorizontalFlip,
  RandomAffine(±10°, translate), ColorJitter(brightness, contrast, saturation),
  ToDtype(float32, scale), Normalize (ImageNet statistics by default).
* :func:`eval_transforms` — Resize, ToDtype, Normalize; no augmentation.
* :class:`FaceImageDataset` — rows with status ``ok`` of ``DATA/manifest.csv``,
  optionally restricted to one side of a split file; returns ``(image, label_index)``.
* :func:`build_imagefolder_manifest` — the same kind of manifest for a folder of
  class subfolders (RAF-DB, FER2013 exported as images, ...), so splits and the
  dataset work on it unchanged.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import pandas as pd
from torch.utils.data import Dataset

from ..utils import atomic_path, atomic_write_json, get_logger
from .deap import class_names_for

log = get_logger("data.dataset")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


class ImageReadError(RuntimeError):
    """An image file that PIL cannot read."""


# ----------------------------------------------------------------------------- transforms


def train_transforms(
    size: int,
    *,
    degrees: float = 10.0,
    translate: float = 0.1,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hflip: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
):
    """Training pipeline (PIL RGB image -> float tensor 3 x size x size)."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.RandomHorizontalFlip(p=hflip),
            v2.RandomAffine(degrees=degrees, translate=(translate, translate)),
            v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def eval_transforms(size: int, *, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """Evaluation pipeline: resize and normalise only."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
        ]
    )


# ----------------------------------------------------------------------------- manifests


def read_manifest(data_dir: str | Path, ok_only: bool = True) -> pd.DataFrame:
    """``DATA/manifest.csv`` as strings (rows with status ``ok`` only by default)."""
    path = Path(data_dir) / "manifest.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"no manifest.csv in {data_dir}: run `msvssm preprocess` first, or build one for an ImageFolder "
            "with msvssm.data.build_imagefolder_manifest"
        )
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in ("path", "label", "status"):
        if col not in df.columns:
            raise ValueError(f"{path} lacks the column {col!r}")
    for col in ("participant", "trial"):
        if col not in df.columns:
            df[col] = ""
    if ok_only:
        df = df[df["status"] == "ok"].reset_index(drop=True)
    return df


def read_classes(data_dir: str | Path, labels: Sequence[str] | None = None) -> list[str]:
    """Class names in label-index order: ``DATA/classes.json``, else DEAP's or the sorted labels."""
    path = Path(data_dir) / "classes.json"
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
    from .preprocess import MANIFEST_COLUMNS

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
            row.update(label=cls, status="ok", path=f.relative_to(root).as_posix())
            rows.append(row)
    classes = [c for c in classes if any(r["label"] == c for r in rows)]
    if not rows:
        raise FileNotFoundError(f"{root} has no class subfolders with images ({', '.join(IMAGE_EXTENSIONS)})")
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    if write:
        with atomic_path(root / "manifest.csv") as tmp:
            df.to_csv(tmp, index=False, lineterminator="\n")
        atomic_write_json(root / "classes.json", classes)
    log.info("ImageFolder %s: %d images in %d classes %s", root, len(df), len(classes), classes)
    return df


# ----------------------------------------------------------------------------- dataset


class FaceImageDataset(Dataset):
    """Images listed in ``DATA/manifest.csv`` (status ``ok``), optionally one side of a split.

    >>> ds = FaceImageDataset("out", "out/splits/subject_seed0.csv", "train", train_transforms(224))
    >>> image, label = ds[0]          # float32 3x224x224, int in [0, len(ds.classes))
    """

    def __init__(
        self,
        data_dir: str | Path,
        split_file: str | Path | None = None,
        split: str | None = None,
        transform=None,
        classes: Sequence[str] | None = None,
    ) -> None:
        from .splits import read_split

        self.data_dir = Path(data_dir)
        df = read_manifest(self.data_dir, ok_only=True)
        if split_file is not None:
            sp = read_split(split_file)
            if split is not None:
                if split not in set(sp["split"]):
                    raise ValueError(f"split {split!r} not in {split_file} (has {sorted(set(sp['split']))})")
                sp = sp[sp["split"] == split]
            unknown = set(sp["path"]) - set(df["path"])
            if unknown:
                raise ValueError(
                    f"{split_file} lists {len(unknown)} image(s) not in {self.data_dir / 'manifest.csv'} "
                    f"(e.g. {sorted(unknown)[0]}): the split was made for other data"
                )
            df = df[df["path"].isin(set(sp["path"]))].reset_index(drop=True)
        elif split is not None:
            raise ValueError("split given without split_file")
        self.classes = list(classes) if classes is not None else read_classes(self.data_dir)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        bad = sorted(set(df["label"]) - set(self.classes))
        if bad:
            raise ValueError(f"labels {bad} in the manifest are not among the classes {self.classes}")
        self.frame = df
        self.samples = [(self.data_dir / p, self.class_to_idx[lab]) for p, lab in zip(df["path"], df["label"])]
        self.targets = [t for _, t in self.samples]
        self.transform = transform
        self._warned_mode = False

    def __len__(self) -> int:
        return len(self.samples)

    def class_counts(self) -> list[int]:
        """Images per class, in ``self.classes`` order."""
        counts = [0] * len(self.classes)
        for t in self.targets:
            counts[t] += 1
        return counts

    def load_image(self, index: int):
        """The PIL RGB image of sample ``index`` (errors name the file)."""
        from PIL import Image

        path = self.samples[index][0]
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode != "RGB":
                    if not self._warned_mode:
                        log.info("converting %s images (e.g. %s) to RGB", im.mode, path)
                        self._warned_mode = True
                    im = im.convert("RGB")
                else:
                    im = im.copy()
        except Exception as exc:
            raise ImageReadError(f"cannot read image {path}: {exc}") from exc
        return im

    def __getitem__(self, index: int):
        image = self.load_image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.samples[index][1]


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageReadError",
    "train_transforms",
    "eval_transforms",
    "read_manifest",
    "read_classes",
    "build_imagefolder_manifest",
    "FaceImageDataset",
]

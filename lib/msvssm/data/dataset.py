"""Torch datasets over a preprocessed manifest (or any ImageFolder) plus the paper's transforms.

* :func:`train_transforms` — paper step 4/5: Resize, RandomHorizontalFlip,
  RandomAffine(±10°, translate), ColorJitter(brightness, contrast, saturation),
  ToDtype(float32, scale), Normalize (ImageNet statistics by default).
* :func:`eval_transforms` — Resize, ToDtype, Normalize; no augmentation.
* :class:`FaceImageDataset` — rows with status ``ok`` of ``DATA/manifest.csv``,
  optionally restricted to one side of a split file; returns ``(image, label_index)``.

``read_manifest``, ``read_classes`` and ``build_imagefolder_manifest`` live in
:mod:`.manifest` and are re-exported here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from torch.utils.data import Dataset

from ..utils import get_logger
from .manifest import build_imagefolder_manifest, read_classes, read_manifest

log = get_logger("data.dataset")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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

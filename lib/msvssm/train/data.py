"""Training data for two cores: decode each split once into memory, augment whole batches as tensors.

Why: a nano model trains at ~200 images/s at 64x64 on two cores, and per-image PIL decoding
plus torchvision's per-image transforms cost a large share of each step (measured by
``make bench-train``); DataLoader workers would compete with the model for the same two
cores. The face crops of one split are small (2,000 crops of 64x64x3 are 25 MB as uint8),
so each split is decoded once into a uint8 tensor, and every batch is augmented at once
with *per-sample* random parameters (each image gets its own flip, angle, shift and
colour factors, as a per-image pipeline would).

The paper's augmentation (section 4.1.1, step 4): random horizontal flip, rotation within
+-10 deg, translation, and brightness / contrast / saturation jitter. Parameters are drawn
per epoch for every sample from a generator seeded by (seed, epoch), so an image's
augmentation does not depend on which batch, process or rank it lands in: a resumed run
and a multi-process (DDP) run see exactly the same augmented images.

Data that does not fit in memory keeps :class:`msvssm.data.FaceImageDataset` with the
per-image ``train_transforms``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.dataset import IMAGENET_MEAN, IMAGENET_STD  # one source for eval_transforms and the batches
from ..utils import get_logger

log = get_logger("train.data")


@dataclass
class InMemorySplit:
    """One side of a split, decoded: ``images`` uint8 (n, 3, size, size), ``labels`` int64 (n,)."""

    images: Tensor
    labels: Tensor
    paths: list[str]
    participants: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def repeated(self, n: int) -> "InMemorySplit":
        """The images again and again, ``n`` in all (a dry run's batches from a few images)."""
        k = -(-n // len(self))
        return InMemorySplit(self.images.repeat(k, 1, 1, 1)[:n], self.labels.repeat(k)[:n], (self.paths * k)[:n],
                             (self.participants * k)[:n])


def _decode_one(args: tuple[str, int]) -> np.ndarray:
    from PIL import Image

    path, size = args
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != "RGB":  # grayscale / RGBA / palette crops: convert, as FaceImageDataset does
                im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
            return np.asarray(im, dtype=np.uint8).copy()
    except Exception as exc:  # name the file: a corrupt crop must not be a mystery
        raise OSError(f"cannot read image {path}: {exc}") from exc


def decode_images(paths: Sequence[str | Path], size: int, workers: int = 0) -> Tensor:
    """Read ``paths`` as RGB, resize to ``size`` x ``size`` (antialiased), return uint8 (n, 3, size, size)."""
    jobs = [(str(p), size) for p in paths]
    # One uint8 tensor, filled image by image: the DEAP-scale data at 224 is ~7 GB, and a list of arrays
    # plus a stacked copy plus a permuted copy would need three times that (in every process of a DDP run).
    out = torch.empty(len(jobs), 3, size, size, dtype=torch.uint8)  # (n, 3, size, size)
    if workers > 1 and len(jobs) > 256:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from ..data.jobs import safe_start_method

        # never a plain fork: this process may already run OpenMP / numba / OpenCV threads
        with ProcessPoolExecutor(workers, mp_context=mp.get_context(safe_start_method())) as pool:
            arrays = pool.map(_decode_one, jobs, chunksize=64)
            for i, array in enumerate(arrays):
                out[i] = torch.from_numpy(array).permute(2, 0, 1)  # (3, size, size)
    else:
        for i, job in enumerate(jobs):
            out[i] = torch.from_numpy(_decode_one(job)).permute(2, 0, 1)
    return out


def load_split(dataset, size: int, workers: int = 0, limit: int | None = None) -> InMemorySplit:
    """Decode a :class:`msvssm.data.FaceImageDataset` (one split side) into memory (its first ``limit`` images)."""
    paths = [p for p, _ in dataset.samples][:limit]
    images = decode_images(paths, size, workers)
    labels = torch.tensor(dataset.targets[:limit], dtype=torch.int64)
    frame = dataset.frame.iloc[:limit]
    participants = frame["participant"].astype(str).tolist() if "participant" in frame else [""] * len(paths)
    return InMemorySplit(images, labels, [str(p) for p in frame["path"]], participants)


# ----------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentParams:
    """Strength of the paper's augmentation (0 turns a part off)."""

    hflip: float = 0.5  # probability
    degrees: float = 10.0  # rotation uniform in [-degrees, degrees]
    translate: float = 0.1  # shift uniform in [-translate, translate] x image size, per axis
    brightness: float = 0.2  # factor uniform in [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2


def draw_augmentations(n: int, params: AugmentParams, generator: torch.Generator) -> dict[str, Tensor]:
    """Random parameters for ``n`` samples: one row per sample (index with a batch's sample ids)."""

    def uniform(half_width: float) -> Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * half_width

    return {
        "flip": torch.rand(n, generator=generator) < params.hflip,  # (n,)
        "angle": uniform(params.degrees) * math.pi / 180,  # (n,) radians
        "shift": torch.stack([uniform(params.translate), uniform(params.translate)], dim=1),  # (n, 2) fraction
        "brightness": 1 + uniform(params.brightness),  # (n,)
        "contrast": 1 + uniform(params.contrast),  # (n,)
        "saturation": 1 + uniform(params.saturation),  # (n,)
    }


def _grayscale(x: Tensor) -> Tensor:
    """ITU-R 601 luma, as torchvision's rgb_to_grayscale: (b, 3, h, w) -> (b, 1, h, w)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def augment_batch(images: Tensor, aug: dict[str, Tensor]) -> Tensor:
    """Apply per-sample flip, rotation + translation and colour jitter to float images in [0, 1].

    images: (b, 3, h, w) float; ``aug``: rows of :func:`draw_augmentations` for these b samples.
    Geometry is one bilinear resampling (rotation about the centre, then the shift), with zeros
    outside the image as torchvision's RandomAffine; colour jitter follows torchvision's
    definitions (brightness scales, contrast blends with the mean grey, saturation with the
    grey image), clamped to [0, 1] after each step.
    """
    b = images.shape[0]
    aug = {name: v.to(images.device) for name, v in aug.items()}  # drawn on the CPU, applied where the images are
    x = torch.where(aug["flip"].view(b, 1, 1, 1), images.flip(-1), images)  # (b, 3, h, w)
    cos, sin = torch.cos(aug["angle"]), torch.sin(aug["angle"])  # (b,)
    # affine_grid maps output coordinates (in [-1, 1]) to input coordinates: the inverse transform.
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)  # built where the images are (a GPU)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    theta[:, :, 2] = -2 * aug["shift"].to(x.dtype)  # a shift of s image widths is 2s in grid units
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (b, h, w, 2)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (b, 3, h, w)
    x = (x * aug["brightness"].view(b, 1, 1, 1)).clamp(0, 1)
    mean_grey = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # (b, 1, 1, 1)
    c = aug["contrast"].view(b, 1, 1, 1)
    x = (c * x + (1 - c) * mean_grey).clamp(0, 1)
    s = aug["saturation"].view(b, 1, 1, 1)
    x = (s * x + (1 - s) * _grayscale(x)).clamp(0, 1)
    return x


def normalize(x: Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Tensor:
    """(b, 3, h, w) in [0, 1] -> standardised with ImageNet statistics (as ``eval_transforms``)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def to_float(images_uint8: Tensor) -> Tensor:
    return images_uint8.float().div_(255)


class BatchIterator:
    """Batches of one in-memory split: ``(images float (b,3,h,w), labels (b,))``, augmented or not.

    Sample order comes from a ``torch.utils.data.DistributedSampler`` (with one replica
    when not distributed), so shuffling is a function of (seed, epoch) only; call
    :meth:`set_epoch` before each epoch, as with any DistributedSampler.
    """

    def __init__(self, split: InMemorySplit, batch_size: int, *, train: bool, seed: int = 0,
                 augment: AugmentParams | None = None, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu") -> None:
        from torch.utils.data import DistributedSampler

        self.split, self.batch_size, self.train, self.seed = split, batch_size, train, seed
        self.augment, self.device = augment, torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        # Training: shuffle; each rank takes every world_size-th sample (the global batch is
        # batch_size * world_size). Evaluation: every sample once, no padding (see indices()).
        self.sampler = DistributedSampler(range(len(split)), num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=seed, drop_last=False) if train else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def indices(self) -> list[int]:
        if self.sampler is not None:
            return list(self.sampler)
        return list(range(self.rank, len(self.split), self.world_size))

    def __len__(self) -> int:
        n = len(self.indices())
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def __iter__(self):
        idx = torch.tensor(self.indices(), dtype=torch.int64)
        aug = None
        if self.train and self.augment is not None:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, "augment"))
            aug = draw_augmentations(len(self.split), self.augment, gen)  # rows indexed by sample id
        # Training drops the last partial batch (a batch of one breaks BatchNorm baselines).
        n_batches = len(self)
        for k in range(n_batches):
            batch = idx[k * self.batch_size : (k + 1) * self.batch_size]  # (b,)
            # uint8 to the device first (a quarter of float32's bytes); augmentation and
            # normalisation then run there, not on the CPU in series with the GPU.
            x = to_float(self.split.images[batch].to(self.device, non_blocking=True))  # (b, 3, h, w) in [0, 1]
            if aug is not None:
                x = augment_batch(x, {name: v[batch] for name, v in aug.items()})
            yield normalize(x), self.split.labels[batch].to(self.device)


def epoch_seed(seed: int, epoch: int, purpose: str) -> int:
    """A seed for (run seed, epoch, purpose): stable across processes and Python versions."""
    import zlib

    return (seed * 1_000_003 + epoch * 10_007 + zlib.crc32(purpose.encode())) % (2**63 - 1)

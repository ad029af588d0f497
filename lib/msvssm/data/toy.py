"""A toy image folder a model learns in seconds: for tests, benchmarks and the install check.

``ROOT/<class>/pXX_iYY.png`` for DEAP's four classes: noise, plus one bright quadrant per class
(brighter for each "participant" ``pXX``), with a ``manifest.csv`` that groups images by
participant, so every split protocol works on it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .deap import CLASS_NAMES
from .manifest import build_imagefolder_manifest


def make_quadrant_folder(root: str | Path, participants: int = 4, per_class: int = 6, size: int = 40,
                         seed: int = 0) -> Path:
    """Write the toy folder under ``root`` (deterministic in ``seed``) and its manifest; returns ``root``."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASS_NAMES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for p in range(participants):
            for i in range(per_class):
                img = rng.integers(0, 90, size=(size, size, 3)).astype(np.uint8)
                y0, x0 = (c // 2) * size // 2, (c % 2) * size // 2
                img[y0 : y0 + size // 2, x0 : x0 + size // 2] += np.uint8(120 + 10 * p)
                Image.fromarray(img).save(root / name / f"p{p:02d}_i{i:02d}.png")
    build_imagefolder_manifest(root, group_pattern=r"^(p\d+)_")
    return root

"""One call that makes the default dataset ready: synthetic DEAP videos -> face crops.

Both steps resume, so calling this again after a kill (or when the data is
already there) only does what is missing. The real DEAP is used by passing
``deap_root`` instead: nothing is generated then.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..profiles import Profile
from ..utils import get_logger

log = get_logger("data")


def synthetic_root(data_dir: str | os.PathLike, profile: Profile) -> Path:
    """Where the synthetic DEAP of ``profile`` lives under ``data_dir``."""
    return Path(data_dir) / f"synth-deap-{profile.synth_scale}"


def faces_root(data_dir: str | os.PathLike, profile: Profile, real_deap: bool = False) -> Path:
    """Where the face crops of ``profile`` live (one folder per data source and crop size)."""
    tag = "deap" if real_deap else f"synth-{profile.synth_scale}"
    return Path(data_dir) / f"faces-{tag}-{profile.crop_size}"


def prepare_faces(
    data_dir: str | os.PathLike,
    profile: Profile,
    *,
    deap_root: str | os.PathLike | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Make ``data_dir/faces`` (manifest + crops) for ``profile``; returns that folder.

    Without ``deap_root``, the synthetic DEAP of ``profile.synth_scale`` is
    generated first into ``synthetic_root(...)``. Face crops go to
    ``faces_root(...)``, one folder per source and crop size, so profiles never mix.
    """
    from .preprocess import PreprocessConfig, preprocess_deap
    from .synth import generate_synthetic_deap

    if deap_root is None:
        root = synthetic_root(data_dir, profile)
        generate_synthetic_deap(root, seed=seed, scale=profile.synth_scale, workers=workers, progress=progress)
    else:
        root = Path(deap_root)
    out = faces_root(data_dir, profile, real_deap=deap_root is not None)
    summary = preprocess_deap(root, out, PreprocessConfig(size=profile.crop_size), workers=workers, progress=progress)
    log.info("faces ready in %s: %s", out, {k: summary[k] for k in sorted(summary) if isinstance(summary[k], int)})
    return out

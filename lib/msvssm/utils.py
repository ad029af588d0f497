"""Small shared helpers: logging setup, atomic file writes, seeding.

Long jobs (preprocessing, training) must never leave a half-written file behind
after a kill: every write goes to a temporary file in the same folder and is
moved into place with ``os.replace``, which is atomic on POSIX and Windows.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

LOGGER_NAME = "msvssm"

# mkstemp makes owner-only files; results should get the usual permissions (0666 minus the umask).
_UMASK = os.umask(0)
os.umask(_UMASK)


def get_logger(name: str | None = None) -> logging.Logger:
    """The project's logger (``msvssm`` or a child of it)."""
    return logging.getLogger(LOGGER_NAME if name is None else f"{LOGGER_NAME}.{name}")


def setup_logging(level: int | str = logging.INFO) -> None:
    """Give the ``msvssm`` logger a plain stderr handler once (CLI and notebooks)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    if not any(getattr(h, "_msvssm", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s %(message)s"))
        handler._msvssm = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success.

    >>> with atomic_path("out.csv") as tmp:
    ...     frame.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def is_atomic_leftover(path: Path) -> bool:
    """Whether ``path`` is a temporary file of ``atomic_path`` (``.NAME.XXXX.tmpSUFFIX``)."""
    return path.is_file() and path.name.startswith(".") and ".tmp" in path.name


def remove_atomic_leftovers(folders) -> int:
    """Delete the temporary files that writes interrupted by a kill left in ``folders``.

    Only the folders themselves are searched (not their subfolders). Returns how many were removed.
    """
    removed = 0
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir():
            for f in folder.iterdir():
                if is_atomic_leftover(f):
                    f.unlink()
                    removed += 1
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible run."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit(short: bool = False) -> str:
    """The checkout's commit (``-dirty`` if tracked files changed), or "unknown" outside git."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", *(["--short"] if short else []), "HEAD"], cwd=here,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def synchronize(device) -> None:
    """Wait for the device's queued work before reading a clock (a no-op on the CPU: CUDA runs asynchronously)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)

"""What a run was computed from: its inputs, by content, so that a cached run is never stale.

A finished run is reused (by a sweep, by a second ``make reproduce``) only if everything
that decides its numbers is unchanged. :func:`run_inputs` lists those things:

    config      the run's configuration (``TrainConfig.identity()``: no output folder, no speed knobs),
                with the data folder's *path* left out: the data counts by content, below
    data        sha256 of ``manifest.csv``, ``classes.json`` and every crop the manifest lists as usable
                (regenerate the data in place, even with the same file names, and this changes)
    split       sha256 of the split file the run reads (which images are train / val / test)
    runtime     the device type and the autocast dtype (``amp=auto`` is bf16 on a GPU, float32 on a CPU);
                on a CPU also the thread count (``threads``, or torch's default when 0): it changes the
                order of float sums, so 1 and 2 threads train to slightly different weights
    code        sha256 per part of the library code that computes a run (:data:`CODE_PARTS`: the
                models, the scan operators, the training loop and its plumbing, the data readers,
                the metrics), over the *syntax tree* without docstrings, so editing a comment or
                a docstring keeps the cache and editing code does not. (Sweeps, plots and the
                notebooks' analyses are not in it: they read runs, they do not compute them.)
    versions    torch, timm, numpy, numba and Python's major.minor: other versions may round differently
                (and Python's syntax trees differ between minor versions)
    (pretrained_sha256: the checkpoint a run starts from, when ``model_kwargs`` names one)

The sweep's cache key is a hash of all of it (:func:`inputs_key`); each run folder keeps
its own ``inputs.json``, and :func:`changed_inputs` says, in words, what differs between a
saved one and now, for the error that refuses to resume or reuse a stale run.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

INPUTS_FILE = "inputs.json"
INPUTS_FORMAT = 1

# The library code a run's numbers depend on: packages (every module below them) and single modules.
CODE_PARTS: tuple[str, ...] = ("models", "ops", "train/run.py", "train/loop.py", "train/data.py", "train/config.py",
                               "train/checkpoint.py", "train/distributed.py", "data/dataset.py", "data/manifest.py",
                               "data/splits.py", "data/deap.py", "evaluation.py")
VERSIONED = ("torch", "timm", "numpy", "numba")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # lib/msvssm


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- code


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_fingerprint(path: Path) -> str:
    """sha256 of a module's syntax tree without docstrings: comments, docstrings and layout do not count."""
    tree = _strip_docstrings(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


_FIRST_CODE_STAMP: dict[str, tuple] = {}


class LibraryChangedError(RuntimeError):
    """The library's files changed on disk after this process first fingerprinted them."""


def code_fingerprint(root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """One sha256 per entry of :data:`CODE_PARTS`, over its modules' syntax trees (sorted by path).

    A process (a notebook kernel) that imported the library and then sees its files edited on
    disk still runs the code it imported: a run it trained must not be stored under the new
    code's fingerprint. So the files' stamps are remembered the first time, and a later change
    is an error that says to restart the kernel.
    """
    stamp = _code_stamp(root)
    first = _FIRST_CODE_STAMP.setdefault(str(root), stamp)
    if first != stamp:
        changed = sorted({Path(a[0]).relative_to(root).as_posix() for a, b in zip(first, stamp) if a != b}
                         | ({"(files added or removed)"} if len(first) != len(stamp) else set()))
        raise LibraryChangedError(
            f"the library's code changed on disk since this process loaded it ({', '.join(changed[:5])}): the code "
            "running is not the code on disk, so a run trained now could not be keyed by it. Restart the kernel "
            "(or the Python process) and run again")
    return dict(_code_fingerprint(str(root), stamp))


def _code_files(root: Path, part: str) -> list[Path]:
    target = root / part
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


def _code_stamp(root: Path) -> tuple:
    """Sizes and modification times of the code files: the fingerprint is recomputed when one changes."""
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for part in CODE_PARTS for p in _code_files(root, part))


@lru_cache(maxsize=4)
def _code_fingerprint(root: str, stamp: tuple) -> tuple[tuple[str, str], ...]:
    out = []
    for part in CODE_PARTS:
        h = hashlib.sha256()
        for path in _code_files(Path(root), part):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + source_fingerprint(path).encode() + b"\0")
        out.append((part, h.hexdigest()))
    return tuple(out)


def library_versions() -> dict[str, str]:
    """The numeric libraries' versions, and Python's major.minor (its syntax trees differ between them)."""
    import importlib
    import platform

    versions = {name: getattr(importlib.import_module(name), "__version__", "?") for name in VERSIONED}
    versions["python"] = ".".join(platform.python_version_tuple()[:2])
    return versions


# ----------------------------------------------------------------------------- data


def data_fingerprint(data_dir: str | os.PathLike) -> dict[str, Any]:
    """sha256 of the manifest and of every usable crop's bytes (in manifest order), and the crop count.

    Hashing the crops, not only the manifest, catches data regenerated in place under the same
    file names (another generator seed, a fixed renderer, another detector). Memoised per process
    on the files' sizes and modification times, so a sweep of many runs reads the crops once.
    """
    from ..data.manifest import read_manifest

    data_dir = Path(data_dir)
    manifest = data_dir / "manifest.csv"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} does not exist: cannot fingerprint the data of {data_dir}")
    rows = read_manifest(data_dir, ok_only=True)
    paths = [data_dir / str(p) for p in rows["path"]]
    classes = data_dir / "classes.json"  # the label order: which output is which class
    try:
        stamp = tuple((str(p), *_file_stamp(p)) for p in [manifest, classes if classes.exists() else manifest, *paths])
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{data_dir}: the manifest lists a crop that does not exist: {err.filename}") from None
    return dict(_data_fingerprint(stamp))


def _file_stamp(path: Path) -> tuple[int, ...]:
    """Size, inode, modification and change times: a file rewritten, or copied over with its mtime kept, differs."""
    st = path.stat()
    return st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns


@lru_cache(maxsize=8)
def _data_fingerprint(stamp: tuple) -> tuple[tuple[str, Any], ...]:
    manifest, classes, *crops = (Path(s[0]) for s in stamp)
    h = hashlib.sha256()
    for path in crops:
        h.update(file_sha256(path).encode())
    return (("manifest_sha256", file_sha256(manifest)), ("classes_sha256", file_sha256(classes)),
            ("crops_sha256", h.hexdigest()), ("crops", len(crops)))


# ----------------------------------------------------------------------------- a run's inputs


def run_inputs(cfg, split_file: str | os.PathLike, device=None) -> dict[str, Any]:
    """Everything a run of ``cfg`` on ``split_file`` is computed from (see the module docstring).

    ``device``: the torch device the run trains on (default: what ``cfg.device`` resolves to here);
    its type and the autocast dtype it implies count, since ``amp=auto`` means bf16 on a GPU and
    float32 on a CPU. Returned as plain JSON types (a tuple becomes a list), as read back from disk.
    """
    from .run import resolve_device

    config = cfg.identity()
    config.pop("data")  # the data counts by content (below), not by where it lies
    device = device if device is not None else resolve_device(cfg)
    inputs = {
        "format": INPUTS_FORMAT,
        "config": config,
        "data": data_fingerprint(cfg.data),
        "split": {"file": Path(split_file).name, "sha256": file_sha256(split_file)},
        "runtime": runtime_inputs(cfg, device),
        "code": code_fingerprint(),
        "versions": library_versions(),
    }
    pretrained = cfg.model_kwargs.get("pretrained")
    if isinstance(pretrained, str) and pretrained:  # a run that starts from a checkpoint depends on its weights
        inputs["pretrained_sha256"] = file_sha256(pretrained)
    return json.loads(json.dumps(inputs, sort_keys=True, default=str))


def runtime_inputs(cfg, device) -> dict[str, Any]:
    """The device type, the autocast dtype and, on a CPU, the thread count the run computes with."""
    import torch

    from .run import resolve_amp

    runtime: dict[str, Any] = {"device": device.type, "amp": str(resolve_amp(cfg, device) or "float32")}
    if device.type == "cpu":
        runtime["cpu_threads"] = cfg.threads or torch.get_num_threads()
    return runtime


def inputs_key(inputs: dict[str, Any]) -> str:
    """A short stable hash of a run's inputs: the sweep's cache key."""
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def read_inputs(run: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(run) / INPUTS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def changed_inputs(saved: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """What differs between a run's saved inputs and the current ones, one phrase each (empty: nothing)."""
    if saved is None:
        return [f"the run folder has no {INPUTS_FILE} (made before runs recorded their inputs)"]
    changes = []
    old_cfg, new_cfg = saved.get("config", {}), now["config"]
    diff = {k: (old_cfg.get(k), new_cfg.get(k)) for k in sorted(set(old_cfg) | set(new_cfg))
            if old_cfg.get(k) != new_cfg.get(k)}
    if diff:
        changes.append("the configuration changed (saved -> now: " +
                       ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items()) + ")")
    old_data, new_data = saved.get("data", {}), now["data"]
    if old_data.get("manifest_sha256") != new_data["manifest_sha256"]:
        changes.append("the data's manifest.csv changed")
    if old_data.get("classes_sha256") != new_data["classes_sha256"]:
        changes.append("the data's classes.json (the label order) changed")
    if old_data.get("crops_sha256") != new_data["crops_sha256"]:
        changes.append(f"the face crops changed ({old_data.get('crops')} -> {new_data['crops']} crops, "
                       "content hash differs): the data was regenerated or edited")
    if saved.get("split", {}).get("sha256") != now["split"]["sha256"]:
        changes.append(f"the split file {now['split']['file']} changed")
    if saved.get("runtime") != now["runtime"]:
        changes.append(f"the device, precision or CPU thread count changed ({saved.get('runtime')} -> {now['runtime']})")
    if saved.get("pretrained_sha256") != now.get("pretrained_sha256"):
        changes.append("the pretrained checkpoint it starts from changed")
    code = [part for part in now["code"] if saved.get("code", {}).get(part) != now["code"][part]]
    if code:
        changes.append("the library code that computes a run changed (msvssm: " + ", ".join(code) + ")")
    versions = {k: (saved.get("versions", {}).get(k), v) for k, v in now["versions"].items()
                if saved.get("versions", {}).get(k) != v}
    if versions:
        changes.append("library versions changed (" + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in versions.items()) + ")")
    return changes

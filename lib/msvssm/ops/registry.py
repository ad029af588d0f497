"""The selective-scan backend registry: names -> backends, loaded lazily.

This module imports none of the backends. ``BACKEND_MODULES`` names the module
that registers each built-in backend (the same lazy-table pattern as
``cli.SUBCOMMANDS`` and ``models.registry.MODEL_MODULES``); a module is imported
the first time its name is needed, and never again. Backend modules import this
module (to call :func:`register_backend`), never the other way round, so there
is no import cycle.

Registering a name twice is an error unless ``replace=True`` is passed
explicitly; :func:`temporary_backend` registers a backend for the length of a
``with`` block (the FLOP counter uses it) and restores what was there before.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from typing import Callable, Iterator, NamedTuple

import torch

from ..utils import get_logger

log = get_logger("scan")

ENV_VAR = "MSVSSM_SCAN_BACKEND"

# name -> module whose import registers that backend (imported on first use).
BACKEND_MODULES: dict[str, str] = {
    "reference": "msvssm.ops.scan_reference",
    "chunked": "msvssm.ops.scan_chunked",
    "numba": "msvssm.ops.scan_numba",
    "cuda": "msvssm.ops.scan_cuda",
}

# Order of preference for "auto", per device type.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cuda": ("cuda", "chunked", "reference"),
    "cpu": ("numba", "chunked", "reference"),
}


class ScanBackend(NamedTuple):
    """One backend: ``fn`` has the signature and contract of ``selective_scan_reference``."""

    name: str
    fn: Callable
    devices: tuple[str, ...]  # device types it runs on
    is_available: Callable[[], bool]
    why_unavailable: Callable[[], str]


# device type -> the backend whose absence "auto" warns about (the fused kernel; the fallback is generic).
WARN_IF_SKIPPED: dict[str, str] = {"cuda": "cuda"}
HOW_TO_GET: dict[str, str] = {
    "cuda": 'To get mamba-ssm\'s fused kernel: pip install -e ".[gpu]" --no-build-isolation on this machine '
            "(README, GPU section), then check it with `msvssm info`",
}

_BACKENDS: dict[str, ScanBackend] = {}
_logged_auto: set[tuple[str, str]] = set()
_warned_fallback: set[str] = set()  # device types whose fallback was warned about


def register_backend(backend: ScanBackend, *, replace: bool = False) -> ScanBackend | None:
    """Register ``backend`` under ``backend.name``; return the backend it replaced, if any.

    A name already registered is an error unless ``replace=True``.
    """
    previous = _BACKENDS.get(backend.name)
    if previous is not None and not replace:
        raise ValueError(f"selective-scan backend {backend.name!r} is already registered (pass replace=True)")
    _BACKENDS[backend.name] = backend
    return previous


def unregister_backend(name: str) -> None:
    """Remove a registered backend (an error if it is not registered)."""
    if name not in _BACKENDS:
        raise ValueError(f"selective-scan backend {name!r} is not registered")
    del _BACKENDS[name]


@contextlib.contextmanager
def temporary_backend(backend: ScanBackend, *, replace: bool = False) -> Iterator[ScanBackend]:
    """Register ``backend`` for the length of the block, then restore the previous state."""
    if replace:
        _load(backend.name)  # so the built-in comes back afterwards, not nothing
    previous = register_backend(backend, replace=replace)
    try:
        yield backend
    finally:
        if previous is None:
            _BACKENDS.pop(backend.name, None)
        else:
            _BACKENDS[backend.name] = previous


def _load(name: str) -> None:
    """Import the module that registers ``name`` if it is a built-in not yet registered."""
    if name not in _BACKENDS and name in BACKEND_MODULES:
        importlib.import_module(BACKEND_MODULES[name])
        if name not in _BACKENDS:
            raise RuntimeError(f"{BACKEND_MODULES[name]} did not register the backend {name!r}")


def backend_names() -> list[str]:
    """Every known backend name, available here or not."""
    return sorted(set(BACKEND_MODULES) | set(_BACKENDS))


def get_backend(name: str) -> ScanBackend:
    """The backend registered as ``name`` (its module is imported on first use)."""
    _load(name)
    if name not in _BACKENDS:
        raise ValueError(
            f"unknown selective-scan backend {name!r}; choose one of {backend_names() + ['auto']} "
            f"(set by argument or ${ENV_VAR})"
        )
    return _BACKENDS[name]


def available_scan_backends(device: str | torch.device | None = None) -> list[str]:
    """Names of the backends usable here (optionally: usable on ``device``)."""
    dev = None if device is None else torch.device(device).type
    names = []
    for name in backend_names():
        be = get_backend(name)
        if be.is_available() and (dev is None or dev in be.devices):
            names.append(name)
    return names


def _log_auto_choice(device_type: str, chosen: str, skipped: list[ScanBackend]) -> None:
    """Log what "auto" chose, once per process per (device type, backend).

    Skipping the backend ``WARN_IF_SKIPPED`` names for this device type (on a GPU: the
    ``cuda`` kernel, so "auto" falls back to ``chunked``) is a WARNING with the reason
    and how to get it, once per process per device type; otherwise INFO (a CPU without
    numba stays INFO).
    """
    wanted = WARN_IF_SKIPPED.get(device_type)
    missed = next((be for be in skipped if be.name == wanted), None)
    if missed is not None and device_type not in _warned_fallback:
        _warned_fallback.add(device_type)
        _logged_auto.add((device_type, chosen))
        log.warning(
            "selective scan: backend 'auto' chose %r for %s tensors because the %r backend is not available: %s. "
            "%s",
            chosen, device_type, missed.name, missed.why_unavailable() or "(no reason given)", HOW_TO_GET[wanted],
        )
        return
    key = (device_type, chosen)
    if key not in _logged_auto:
        _logged_auto.add(key)
        log.info("selective scan: backend 'auto' chose %r for %s tensors", chosen, device_type)


def resolve_backend(name: str | None, device: torch.device) -> str:
    """Turn ``name`` (or the environment variable, or "auto") into a usable backend name.

    Asking for a backend that cannot run here is an error that says why, never a fallback.
    """
    requested = name or os.environ.get(ENV_VAR) or "auto"
    if requested == "auto":
        skipped: list[ScanBackend] = []  # preferred for this device type but not available here
        for candidate in AUTO_ORDER.get(device.type, ("reference",)):
            be = get_backend(candidate)
            if device.type not in be.devices:
                continue
            if not be.is_available():
                skipped.append(be)
                continue
            _log_auto_choice(device.type, candidate, skipped)
            return candidate
        raise RuntimeError(f"no selective-scan backend runs on device {device}")
    be = get_backend(requested)
    if not be.is_available():
        raise RuntimeError(f"selective-scan backend {requested!r} is not available here: {be.why_unavailable()}")
    if device.type not in be.devices:
        raise RuntimeError(
            f"selective-scan backend {requested!r} runs on {be.devices}, but the tensors are on {device}"
        )
    return requested

"""MS-VSSM: visual state space models for facial-expression recognition (a course library).

Public API::

    msvssm.selective_scan(...)          # S6 with an explicit backend
    msvssm.available_scan_backends()    # backends usable on this machine
    msvssm.build_model(name, ...)       # vssm_* / msvssm_* in nano, tiny, small, base
    msvssm.list_models()
"""
from .ops import available_scan_backends, cross_merge, cross_scan, selective_scan, selective_scan_reference

__version__ = "0.1.0"


def __getattr__(name):
    # The model zoo imports timm; load it only when asked for.
    if name in {"build_model", "list_models", "MSVSSM"}:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'msvssm' has no attribute {name!r}")


__all__ = [
    "selective_scan",
    "selective_scan_reference",
    "available_scan_backends",
    "cross_scan",
    "cross_merge",
    "build_model",
    "list_models",
    "MSVSSM",
]

"""One model registry for the whole course: ``build_model(name)`` builds MS-VSSM, VSSM and the baselines.

Model files register their factories with ``@register_model``; the registry itself
imports none of them until a name is asked for, through the lazy table
``MODEL_MODULES`` (the same pattern as ``cli.SUBCOMMANDS``), so importing it is cheap
and import order never matters.

    >>> from msvssm.models import build_model
    >>> model = build_model("msvssm_nano", num_classes=4)
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch.nn as nn

# Modules whose import registers models. Each is imported on first use.
MODEL_MODULES: tuple[str, ...] = (
    "msvssm.models.msvssm",
    "msvssm.models.repvit",
    "msvssm.models.dilateformer",
)

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_loaded = False


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its ``__name__``. Registering a name twice is an error."""
    name = fn.__name__
    if name in _FACTORIES and _FACTORIES[name] is not fn:
        raise ValueError(f"model {name!r} is registered twice ({_FACTORIES[name].__module__} and {fn.__module__})")
    _FACTORIES[name] = fn
    return fn


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            # A model file not written yet is fine; a missing dependency inside one is not.
            if err.name != module:
                raise
    _loaded = True


def list_models(pattern: str | None = None) -> list[str]:
    """Names accepted by ``build_model`` (optionally only those containing ``pattern``)."""
    _load_all()
    return sorted(n for n in _FACTORIES if pattern is None or pattern in n)


def get_factory(name: str) -> Callable[..., nn.Module]:
    _load_all()
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _FACTORIES[name]


def build_model(name: str, num_classes: int = 4, pretrained=None, **overrides) -> nn.Module:
    """Build a registered model, e.g. ``build_model("msvssm_nano", num_classes=4, dspp=False)``.

    ``overrides`` go to the model's constructor (for MS-VSSM: ``in_chans``,
    ``drop_path_rate``, ``path_se``, ``layer_scale``, ``dspp``, ``scan_backend``...).
    ``pretrained``: a checkpoint file (or state dict) to start from, loaded by
    :func:`msvssm.models.pretrained.load_pretrained` (official VMamba, timm, or our own
    run); its report is logged and kept as ``model.pretrained_report``.
    """
    model = get_factory(name)(num_classes=num_classes, **overrides)
    if pretrained is not None:
        from .pretrained import load_pretrained

        model.pretrained_report = load_pretrained(model, pretrained)
    return model

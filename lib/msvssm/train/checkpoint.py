"""Checkpoints: written atomically, loaded with ``weights_only=True``, checked against the model.

Two files per run:

``last.pt``  everything needed to continue exactly: model, optimiser, schedule, EMA and
             loss-scaler states, the completed epoch, the global step, the history and
             the best score so far. Written at the end of every epoch.
``best.pt``  the weights that scored the best validation weighted F1 (the EMA weights
             when EMA is on), with the model name, class names and the epoch.

Both hold only tensors, numbers, strings, lists and dicts, so ``torch.load(...,
weights_only=True)`` reads them: loading a checkpoint never runs code from the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..utils import atomic_path

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or belongs to another model."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (a kill leaves the previous file intact)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read checkpoint {path} with weights_only=True ({type(err).__name__}: {err}); "
            "if it is a file you trust that pickles other objects, load it yourself with weights_only=False"
        ) from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a checkpoint of this library (no 'model' state dict)")
    return state


def check_compatible(state: dict[str, Any], model_name: str, num_classes: int, path: str | os.PathLike = "") -> None:
    """Refuse a checkpoint of another model or class count, with a message that says which."""
    saved_name = state.get("model_name")
    if saved_name is not None and saved_name != model_name:
        raise CheckpointError(f"checkpoint {path} is of model {saved_name!r}, not {model_name!r}")
    saved_classes = state.get("class_names")
    if saved_classes is not None and len(saved_classes) != num_classes:
        raise CheckpointError(
            f"checkpoint {path} has {len(saved_classes)} classes {saved_classes}, the model {num_classes}"
        )


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: str | os.PathLike = "") -> None:
    """Load a state dict strictly; a mismatch names the first differing parameters and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong = [(k, tuple(weights[k].shape), tuple(v.shape)) for k, v in own.items()
             if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(wrong)} of another shape "
            f"(e.g. {wrong[:3]} as (file, model))"
        )
    model.load_state_dict(weights)

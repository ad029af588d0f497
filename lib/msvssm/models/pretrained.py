"""Pretrained starts: load a checkpoint file into a model of this library (nothing is downloaded).

    >>> model = build_model("msvssm_tiny", num_classes=4, pretrained="vssm1_tiny_0230s_ckpt_epoch_264.pth")
    >>> report = load_pretrained(model, "run/checkpoint.pt")          # or by hand; returns a LoadReport

Three kinds of file are understood, told apart by their parameter names:

``vmamba``   an official VMamba ImageNet checkpoint (weights under key ``model``, VMamba's
             names, its ``v05_noz`` layout): renamed by ``VMAMBA_NAME_MAP`` into ``vssm_*`` /
             ``msvssm_*`` of the matching configuration (any size).
``timm``     a timm checkpoint (e.g. ``repvit_m0_9``'s ``model.safetensors`` or
             ``pytorch_model.bin``): timm's names are the model's names.
``msvssm``   our own run checkpoint (``{"model": state_dict, ...}``) or a bare state dict:
             fine-tuning from a previous run.

Rules, the same for all three:

* a parameter of the model found in the file with the same shape is **loaded**;
* a parameter not in the file starts **new** (its init): SE-SS2D, Layer Scale and DSPP
  when loading VMamba into MS-VSSM, for instance;
* a classifier parameter (name starting ``head.``) whose shape differs (another class
  count) starts new, and the file's one is **dropped**;
* a file entry the model has no place for is **dropped** (VMamba's ``head_dist`` of a
  distilled RepViT, a conv bias the model does not have...);
* any other shape mismatch is refused with an error naming the parameter and both shapes
  (a ``vssm_small`` file into ``vssm_tiny``, say);
* a file of which nothing matches is refused (wrong model, or a fused RepViT: load
  the checkpoint first, then ``fuse``).

Files are read with ``torch.load(path, map_location="cpu", weights_only=True)``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

# VMamba (official code, v05_noz layout) <-> this library's MSVSSM, one row per name pattern.
# VMamba's stem is nn.Sequential(conv, permute, LN, permute, GELU, conv, permute, LN):
# indices 0, 2, 5, 7 hold parameters; its downsample is (permute, conv, permute, LN): 1, 3.
# A block's names below ``layers.i.blocks.j`` are the same in both (norm, op.*, norm2, mlp.*).
# Placeholders: {i} stage, {j} block, {w} weight|bias, {p} one of the block's parameters.
_BLOCK_PARAMS = (
    r"norm\.(?:weight|bias)",
    r"norm2\.(?:weight|bias)",
    r"mlp\.fc[12]\.(?:weight|bias)",
    r"op\.in_proj\.weight",
    r"op\.conv2d\.weight",
    r"op\.x_proj_weight",
    r"op\.dt_projs_weight",
    r"op\.dt_projs_bias",
    r"op\.A_logs",
    r"op\.Ds",
    r"op\.out_norm\.(?:weight|bias)",
    r"op\.out_proj\.weight",
)
VMAMBA_NAME_MAP: tuple[tuple[str, str], ...] = (  # (VMamba's name, ours)
    ("patch_embed.0.{w}", "stem.conv1.{w}"),
    ("patch_embed.2.{w}", "stem.norm1.{w}"),
    ("patch_embed.5.{w}", "stem.conv2.{w}"),
    ("patch_embed.7.{w}", "stem.norm2.{w}"),
    ("layers.{i}.blocks.{j}.{p}", "stages.{i}.blocks.{j}.{p}"),
    ("layers.{i}.downsample.1.{w}", "stages.{i}.downsample.conv.{w}"),
    ("layers.{i}.downsample.3.{w}", "stages.{i}.downsample.norm.{w}"),
    ("classifier.norm.{w}", "norm.{w}"),
    ("classifier.head.{w}", "head.{w}"),
)
_PLACEHOLDERS = {"i": r"\d+", "j": r"\d+", "w": r"weight|bias", "p": "|".join(_BLOCK_PARAMS)}


def _compile(template: str) -> re.Pattern:
    r"""'layers.{i}.downsample.1.{w}' -> ^layers\.(?P<i>\d+)\.downsample\.1\.(?P<w>weight|bias)$"""
    parts = re.split(r"\{(\w)\}", template)  # literal, name, literal, name, ...
    regex = "".join(re.escape(t) if k % 2 == 0 else f"(?P<{t}>{_PLACEHOLDERS[t]})" for k, t in enumerate(parts))
    return re.compile(f"^{regex}$")


_COMPILED = [(_compile(theirs), ours) for theirs, ours in VMAMBA_NAME_MAP]
_COMPILED_INVERSE = [(_compile(ours), theirs) for theirs, ours in VMAMBA_NAME_MAP]


def _rename(name: str, table) -> str | None:
    for pattern, template in table:
        found = pattern.match(name)
        if found:
            return template.format(**found.groupdict())
    return None


def vmamba_to_ours(name: str) -> str | None:
    """VMamba's parameter name -> ours (None: no place for it, e.g. a conv bias VMamba v2 never has)."""
    return _rename(name, _COMPILED)


def ours_to_vmamba(name: str) -> str | None:
    """Our parameter name -> VMamba's (None for SE-SS2D, Layer Scale and DSPP, which VMamba lacks)."""
    return _rename(name, _COMPILED_INVERSE)


def to_vmamba_state_dict(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict renamed into VMamba's layout (SE / Layer Scale / DSPP left out)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    out = {}
    for name, value in state.items():
        theirs = ours_to_vmamba(name)
        if theirs is not None:
            out[theirs] = value
    return out


@dataclass
class LoadReport:
    """What ``load_pretrained`` did. Names are the model's, except ``dropped`` (the file's)."""

    source: str  # "vmamba", "timm" or "msvssm"
    path: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # file name -> why

    def summary(self) -> str:
        lines = [f"{self.path} ({self.source}): {len(self.loaded)} loaded, {len(self.new)} new, {len(self.dropped)} dropped"]
        if self.new:
            lines.append("  new: " + ", ".join(_compress(self.new)))
        if self.dropped:
            lines.append("  dropped: " + ", ".join(f"{k} ({v})" for k, v in list(self.dropped.items())[:12])
                         + (" ..." if len(self.dropped) > 12 else ""))
        return "\n".join(lines)

    __str__ = summary


def _compress(names: list[str], limit: int = 12) -> list[str]:
    """Group names by their last two components (e.g. 'op.path_se.fc1_weight x 12') for a short summary."""
    counts: dict[str, int] = {}
    for n in names:
        key = re.sub(r"\d+", "*", n)
        counts[key] = counts.get(key, 0) + 1
    out = [f"{k} x{c}" if c > 1 else k for k, c in counts.items()]
    return out[:limit] + (["..."] if len(out) > limit else [])


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A file's state dict: ``model`` / ``state_dict`` inside a training checkpoint, or the file itself."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError and friends
        raise ValueError(
            f"{path} cannot be read with torch.load(weights_only=True): it holds more than tensors "
            f"(VMamba's training checkpoints also store their config object). Only if you trust the "
            f"file: state = torch.load(path, map_location='cpu', weights_only=False)['model'], then "
            f"load_pretrained(model, state). ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    return unwrap_state_dict(obj, str(path))


def unwrap_state_dict(obj, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the state dict inside a checkpoint object; strips a DistributedDataParallel ``module.`` prefix."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{where}: expected a state dict (name -> tensor), or a dict holding one under 'model'")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def detect_source(state: Mapping[str, torch.Tensor], model: nn.Module | None = None) -> str:
    """'vmamba' (VMamba's names), else 'timm' for a timm model, else 'msvssm' (names taken as they are)."""
    if any(k.startswith(("patch_embed.", "layers.", "classifier.")) for k in state) and any(
        vmamba_to_ours(k) for k in state
    ):
        return "vmamba"
    if model is not None and type(model).__module__.startswith("timm."):
        return "timm"
    return "msvssm"


def _same_up_to_singletons(a: torch.Size, b: torch.Size) -> bool:
    """(o, i) vs (o, i, 1, 1): a Linear stored as a 1x1 conv (VMamba's channel-first Linear2d)."""
    strip = lambda s: tuple(s[: len(s) - next((i for i, d in enumerate(reversed(s)) if d != 1), len(s))])  # noqa: E731
    return strip(a) == strip(b)


def load_pretrained(
    model: nn.Module, checkpoint: str | Path | Mapping[str, torch.Tensor], source: str | None = None
) -> LoadReport:
    """Load ``checkpoint`` (a path, or a state dict already read) into ``model`` in place; see the module doc.

    ``source``: "vmamba", "timm" or "msvssm" to override the detection from names.
    Returns a :class:`LoadReport`; refuses shape mismatches (outside the classifier) with
    a ValueError naming the parameter and both shapes.
    """
    where = str(checkpoint) if isinstance(checkpoint, (str, Path)) else "state dict"
    state = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, Path)) else unwrap_state_dict(checkpoint, where)
    source = source or detect_source(state, model)
    if source not in ("vmamba", "timm", "msvssm"):
        raise ValueError(f"source must be 'vmamba', 'timm' or 'msvssm', got {source!r}")
    report = LoadReport(source=source, path=where)

    # 1. the file's names in the model's terms
    renamed: dict[str, tuple[str, torch.Tensor]] = {}  # our name -> (file name, tensor)
    for name, value in state.items():
        ours = vmamba_to_ours(name) if source == "vmamba" else name
        if ours is None:
            report.dropped[name] = "no VMamba v05_noz counterpart"
        else:
            renamed[ours] = (name, value)

    # 2. match against the model, shape by shape
    target = model.state_dict()
    merged = dict(target)
    for ours, (theirs, value) in renamed.items():
        if ours not in target:
            report.dropped[theirs] = "not in this model"
            continue
        want = target[ours].shape
        if value.shape != want:
            if ours.startswith("head."):
                report.dropped[theirs] = f"classifier shape {tuple(value.shape)} != {tuple(want)}"
                continue
            if value.numel() == target[ours].numel() and _same_up_to_singletons(value.shape, want):
                value = value.reshape(want)
            else:
                raise ValueError(
                    f"shape mismatch for {ours} (file: {theirs}): checkpoint {tuple(value.shape)}, model {tuple(want)}; "
                    f"is the checkpoint for another size/configuration of the model?"
                )
        merged[ours] = value.to(dtype=target[ours].dtype)
        report.loaded.append(ours)
    loaded = set(report.loaded)
    report.new = [n for n in target if n not in loaded and not n.endswith("num_batches_tracked")]
    if not report.loaded:
        raise ValueError(
            f"{where}: no parameter of the checkpoint matches the model ({type(model).__name__}); "
            f"first names in the file: {list(state)[:3]}, in the model: {list(target)[:3]}"
            + (" (a fused RepViT: load the unfused model, then fuse)" if "stem.conv1.c.weight" in state else "")
        )
    model.load_state_dict(merged, strict=True)
    log.info("pretrained start: %s", report.summary())
    return report

"""Models: SS2D / SE-SS2D, VSS blocks, DSPP and the MS-VSSM classifier (symbols: the glossary in ``msvssm.ops``)."""
from .blocks import DSPP, Mlp, VSSBlock
from .msvssm import ABLATION_FLAGS, MSVSSM, SIZES
from .registry import build_model, get_factory, list_models, register_model
from .ss2d import SS2D, LayerScale, PathSqueezeExcite

__all__ = [
    "ABLATION_FLAGS",
    "DSPP",
    "LayerScale",
    "MSVSSM",
    "Mlp",
    "PathSqueezeExcite",
    "SIZES",
    "SS2D",
    "VSSBlock",
    "build_model",
    "get_factory",
    "list_models",
    "register_model",
]

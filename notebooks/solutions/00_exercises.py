"""Solutions to the exercises of notebook 00 (checked by tests/test_exercises.py)."""
import math


def stage_sizes(image_size):
    """Side of the four stage maps of MS-VSSM for a square input of ``image_size`` pixels."""
    side = image_size
    for _ in range(2):  # the stem: two stride-2 convs
        side = math.ceil(side / 2)
    sizes = [side]
    for _ in range(3):  # one stride-2 downsample before stages 2, 3 and 4
        side = math.ceil(side / 2)
        sizes.append(side)
    return sizes


def dspp_share(model):
    """Fraction of ``model``'s parameters that sit inside DSPP modules."""
    from msvssm.models import DSPP

    total = sum(p.numel() for p in model.parameters())
    in_dspp = sum(p.numel() for m in model.modules() if isinstance(m, DSPP) for p in m.parameters())
    return in_dspp / total

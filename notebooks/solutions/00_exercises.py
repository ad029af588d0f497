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


def stage_params(model):
    """Parameters of each of the four stages (its DSPP, blocks and downsample)."""
    return [sum(p.numel() for p in stage.parameters()) for stage in model.stages]

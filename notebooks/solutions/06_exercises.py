"""Solutions to the exercises of notebook 06 (checked by tests/test_exercises.py)."""


def receptive_field(pool_k, dilation, conv_k=3):
    """Side of the receptive field of avgpool(pool_k, stride 1) followed by a conv_k conv with ``dilation``."""
    return pool_k + dilation * (conv_k - 1)


def dspp_params(dim, ratio):
    """Parameters of DSPP(dim, ratio): every conv has a bias."""
    m = max(int(dim * ratio), 8)
    reduce = dim * m + m
    global_branch = m * m + m
    dilated = 3 * (9 * m * m + m)
    align = 4 * (m * m + m)
    fuse = 4 * m * dim + dim
    return reduce + global_branch + dilated + align + fuse

"""Solutions to the exercises of notebook 03 (checked by tests/test_exercises.py)."""
import math


def paths_where_first(p, q, height, width):
    """Directions k (0..3, the library's order) in which pixel p = (row, col) is scanned before q."""
    def position(k, pixel):
        i, j = pixel
        row_major, col_major = i * width + j, j * height + i
        last = height * width - 1
        return [row_major, col_major, last - row_major, last - col_major][k]

    return [k for k in range(4) if position(k, p) < position(k, q)]


def ss2d_params(dim, d_state, ssm_ratio):
    """Parameters of a plain SS2D (no SE, no Layer Scale), by formula."""
    d, n, K = int(ssm_ratio * dim), d_state, 4
    r = math.ceil(dim / 16)
    in_proj = dim * d
    conv = d * 9  # depthwise 3x3, no bias
    x_proj = K * (r + 2 * n) * d
    dt_proj = K * d * r + K * d  # weight and bias
    a_logs, ds = K * d * n, K * d
    out_norm = 2 * d
    out_proj = d * dim
    return in_proj + conv + x_proj + dt_proj + a_logs + ds + out_norm + out_proj

"""Solutions to the exercises of notebook 05 (checked by tests/test_exercises.py)."""
import math


def my_layer_scale_branch(x, y, out_norm, gamma, out_proj):
    """The SS2D residual of a VSS block with Layer Scale: x + out_proj(Λ ⊙ out_norm(y)).

    x (b, h, w, dim) the block's input; y (b, h, w, d_inner) the merged scan output; gamma (d_inner,).
    """
    return x + out_proj(gamma * out_norm(y))  # (b, h, w, dim)


def my_fold_layer_scale(weight, bias, gamma):
    """(W', b') with W' v + b' = Λ ⊙ (W v + b): Λ scales the layer's outputs, i.e. the rows of W and the bias."""
    return gamma[:, None] * weight, gamma * bias


def residual_std(depth, branch_scale):
    """Std after ``depth`` blocks x <- x + s f(x), each branch adding an independent term of std s."""
    return math.sqrt(1 + depth * branch_scale**2)

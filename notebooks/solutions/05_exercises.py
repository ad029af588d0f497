"""Solutions to the exercises of notebook 05 (checked by tests/test_exercises.py)."""
import math


def fold_layer_scale(weight, gamma):
    """W' with W' x = W (x * gamma): gamma scales the input columns of a bias-free Linear."""
    return weight * gamma[None, :]


def residual_std(depth, branch_scale):
    """Std after ``depth`` blocks x <- x + s f(x), each branch adding an independent term of std s."""
    return math.sqrt(1 + depth * branch_scale**2)

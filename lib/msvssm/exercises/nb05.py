"""Exercises of notebook 05 Layer Scale: each check takes the student's function, returns (ok, message).

Registered with :func:`msvssm.exercises.core.exercise`, with the plausible wrong answers the check must
reject (tests/test_exercises.py runs the solution, the stubs and every wrong answer through it)."""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch

from .core import Result, _call, _close, _known_mistake, exercise


# ---- Layer Scale in the SS2D branch: x + out_proj(Λ ⊙ out_norm(y)) ---------------------------------------------
def _ls_before_norm(x, y, out_norm, gamma, out_proj):
    """Wrong: Λ before the norm (which normalises it away)."""
    return x + out_proj(out_norm(y * gamma))


def _ls_after_proj(x, y, out_norm, gamma, out_proj):
    """Wrong: CaiT's place, on the branch output after out_proj (runs only when d_inner == dim)."""
    return x + out_proj(out_norm(y)) * gamma


def _ls_no_residual(x, y, out_norm, gamma, out_proj):
    """Wrong: forgets the residual connection."""
    return out_proj(out_norm(y) * gamma)


@functools.lru_cache(maxsize=1)
def _ls_cases():
    """(x, y, out_norm, gamma, out_proj, want) from library VSSBlocks (SS2D branch only, Λ and the norm randomised).

    y is what the block's ``out_norm`` receives (the merged scan output, captured with a hook), want the block's
    output. The first block has d_inner == dim (so CaiT's placement runs and can be recognised), the second
    ssm_ratio 2; the third keeps Λ at its initial 1e-5. Built once (the check clones what it hands over)."""
    from ..models import VSSBlock

    cases = []
    for seed, (dim, ratio, init) in enumerate(((8, 1.0, False), (8, 2.0, False), (12, 1.0, True))):
        torch.manual_seed(seed)
        block = VSSBlock(dim, mlp_ratio=0, layer_scale=True, ssm_ratio=ratio, scan_backend="reference").eval()
        op = block.op
        with torch.no_grad():
            if not init:
                op.layer_scale.gamma.uniform_(0.2, 2.0)
            op.out_norm.weight.uniform_(0.5, 1.5)
            op.out_norm.bias.normal_(0.0, 0.3)
        captured = {}
        hook = op.out_norm.register_forward_hook(lambda m, inp, out: captured.update(y=inp[0].detach().clone()))
        x = torch.randn(2, 5, 6, dim)
        with torch.no_grad():
            want = block(x)
        hook.remove()
        cases.append((x, captured["y"], op.out_norm, op.layer_scale.gamma.detach().clone(), op.out_proj, want))
    return cases


@exercise("05", "my_layer_scale_branch", wrong=(_ls_before_norm, _ls_after_proj, _ls_no_residual))
def check_layer_scale_branch(fn: Callable) -> Result:
    """Exercise 05.1: ``my_layer_scale_branch(x, y, out_norm, gamma, out_proj)`` -> the VSS block's SS2D residual
    x + out_proj(Λ ⊙ out_norm(y)), compared with the library's VSSBlock(layer_scale=True, mlp_ratio=0)."""
    known = ((_ls_before_norm, "Λ sits AFTER out_norm: before it, LayerNorm divides any common scale away, so Λ = 1e-5 could not quiet the branch"),
             (_ls_after_proj, "that is CaiT's place (on the branch output, after out_proj); this project, reading "
                              "paper 3.3.2, puts Λ after out_norm and before out_proj"),
             (_ls_no_residual, "the block adds the branch to its input: x + ..."))
    for x, y, out_norm, gamma, out_proj, want in _ls_cases():
        with torch.no_grad():
            got, err = _call(fn, x.clone(), y.clone(), out_norm, gamma.clone(), out_proj)
        if err:
            return False, err
        got = torch.as_tensor(got).detach()
        ok, msg = _close(got, want, rtol=1e-4, atol=1e-5)
        if not ok:
            hint = _known_mistake(got, known, (x, y, out_norm, gamma, out_proj), rtol=1e-4, atol=1e-5)
            return False, f"{msg}: {hint}" if hint else msg
    return True, "x + out_proj(Λ ⊙ out_norm(y)): the library's VSS block, SS2D branch"


# ---- how a residual stack grows ------------------------------------------------------------------------------
@exercise("05", "residual_std", wrong=(
    lambda depth, s: 1 + depth * s,  # stds added
    lambda depth, s: (1 + s * s) ** (depth / 2),  # multiplicative growth: no pre-norm
))
def check_residual_growth(fn: Callable) -> Result:
    """Exercise 05.2: ``residual_std(depth, branch_scale)`` -> std after ``depth`` residual blocks x <- x + s·f(x).

    Model: x starts with std 1 and each branch adds an independent term of std ``branch_scale`` (a pre-norm
    branch: its size does not depend on the size of x).
    """
    for depth, s in ((1, 1.0), (8, 1.0), (24, 1e-5), (100, 0.1), (0, 1.0), (32, 0.5)):
        got, err = _call(fn, depth, s)
        if err:
            return False, err
        want = math.sqrt(1 + depth * s * s)
        ok, msg = _close(float(got), want, rtol=1e-6)
        if not ok:
            hint = " (independent terms add in variance, not in std)"
            if depth > 1 and math.isclose(float(got), (1 + s * s) ** (depth / 2), rel_tol=1e-6):
                hint = (" (that is growth by a factor per block, x <- (1 + s W) x; a pre-norm branch adds a term "
                        "of fixed size s, whatever the size of x)")
            return False, f"residual_std({depth}, {s}): {msg}{hint}"
    return True, "variances add: sqrt(1 + depth s^2); Λ = 1e-5 keeps a deep stack at std 1"


# ---- folding Λ into the layer whose output it scales -----------------------------------------------------------
def _fold_input_side(W, b, gamma):
    """Wrong: scales the columns (the input side): the fold for a Λ that comes BEFORE the layer."""
    return W * gamma[None, :], b * gamma


def _fold_forgets_bias(W, b, gamma):
    """Wrong: scales the rows but leaves the bias."""
    return gamma[:, None] * W, b


@exercise("05", "my_fold_layer_scale", wrong=(_fold_input_side, _fold_forgets_bias, lambda W, b, g: (W, b)))
def check_fold_layer_scale(fn: Callable) -> Result:
    """Exercise 05.3: ``my_fold_layer_scale(weight, bias, gamma)`` -> (W', b') with W' v + b' = Λ ⊙ (W v + b).

    Checked on a square and a wide layer, then used on the library: Λ folded into SS2D's ``out_norm`` (its affine
    part is the diagonal layer diag(g) v + β) must give the same function as ``SS2D(layer_scale=True)``."""
    gen = torch.Generator().manual_seed(0)
    for out_dim, in_dim in ((6, 6), (6, 10)):
        W = torch.randn(out_dim, in_dim, generator=gen, dtype=torch.float64)
        b = torch.randn(out_dim, generator=gen, dtype=torch.float64)
        gamma = torch.rand(out_dim, generator=gen, dtype=torch.float64) + 0.1
        got, err = _call(fn, W.clone(), b.clone(), gamma.clone())
        if err:
            return False, err + (" (Λ has one entry per OUTPUT of the layer: it scales the rows of W (out, in))"
                                 if "size" in err or "shape" in err else "")
        try:
            W2, b2 = got
        except (TypeError, ValueError):
            return False, "return a pair (W', b')"
        ok, msg = _close(W2, gamma[:, None] * W, rtol=1e-9, atol=1e-12)
        if not ok:
            if _close(W2, W * gamma[None, :], rtol=1e-9, atol=1e-12)[0]:
                return False, ("W': you scaled the columns (inputs), W diag(Λ): that folds a Λ that comes BEFORE the "
                               "layer. Here Λ multiplies the layer's outputs: W' = diag(Λ) W, its rows")
            return False, f"W': {msg}"
        ok, msg = _close(b2, gamma * b, rtol=1e-9, atol=1e-12)
        if not ok:
            hint = ": Λ ⊙ (W v + b) scales the bias too, b' = Λ ⊙ b" if _close(b2, b)[0] else ""
            return False, f"b': {msg}{hint}"
    # on the library: fold Λ into SS2D's out_norm and drop it
    from ..models import SS2D

    torch.manual_seed(0)
    with_ls = SS2D(8, layer_scale=True, scan_backend="reference").eval()
    with torch.no_grad():
        with_ls.layer_scale.gamma.uniform_(0.5, 2.0)
        with_ls.out_norm.weight.uniform_(0.5, 1.5)
        with_ls.out_norm.bias.normal_(0.0, 0.3)
        folded = SS2D(8, layer_scale=False, scan_backend="reference").eval()
        folded.load_state_dict({k: v for k, v in with_ls.state_dict().items() if "layer_scale" not in k})
        g, beta, lam = with_ls.out_norm.weight, with_ls.out_norm.bias, with_ls.layer_scale.gamma
        got, err = _call(fn, torch.diag(g).clone(), beta.clone(), lam.clone())
        if err:
            return False, f"on SS2D's out_norm: {err}"
        W2, b2 = got
        folded.out_norm.weight.copy_(torch.diagonal(torch.as_tensor(W2)))
        folded.out_norm.bias.copy_(torch.as_tensor(b2))
        x = torch.randn(2, 5, 5, 8)
        ok, msg = _close(folded(x), with_ls(x), rtol=1e-4, atol=1e-5)
    if not ok:
        return False, f"Λ folded into SS2D's out_norm does not reproduce SS2D(layer_scale=True): {msg}"
    return True, "W' = diag(Λ) W, b' = Λ ⊙ b: the same function without Λ (checked on SS2D's out_norm too)"

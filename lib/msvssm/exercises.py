"""Checks for the exercises of the notebooks (00-06 concepts, 07 training, 11 looking inside).

Each ``check_*`` takes the student's function and returns ``(ok, message)``. It never
raises: an unsolved stub (``NotImplementedError`` or ``None``), an exception or a wrong
value all give ``ok = False`` and a message saying what is wrong, so a notebook runs
top to bottom with the stubs unsolved. The notebooks' check cells and
``tests/test_exercises.py`` (which runs ``notebooks/solutions/NN_exercises.py``) call
the same functions.

    >>> from msvssm.exercises import check, check_zoh_B_bar
    >>> check(check_zoh_B_bar, my_zoh_B_bar)        # prints "correct" or what is wrong

``EXERCISES`` lists every exercise: notebook -> {stub name: check function}.
"""
from __future__ import annotations

import math
import traceback
from typing import Callable

import numpy as np
import torch

from .optional import require

Result = tuple[bool, str]


# ----------------------------------------------------------------------------- helpers


def _call(fn: Callable, *args, **kwargs):
    """(value, None) or (None, message) when the function is unsolved or fails."""
    try:
        value = fn(*args, **kwargs)
    except NotImplementedError:
        return None, "not solved yet (the stub raises NotImplementedError)"
    except Exception as exc:  # a student's bug: say which, never crash the notebook
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return None, f"your function raised {type(exc).__name__}: {exc} (line {last.lineno})"
    if value is None:
        return None, "not solved yet (the function returned None)"
    return value, None


def _close(got, want, rtol: float = 1e-5, atol: float = 1e-6) -> tuple[bool, str]:
    try:
        got_t = torch.as_tensor(np.array(got, dtype=np.float64) if not torch.is_tensor(got) else got).double()
    except Exception as exc:
        return False, f"cannot read your answer as numbers ({type(exc).__name__}: {exc})"
    want_t = torch.as_tensor(want).double()
    if got_t.shape != want_t.shape:
        return False, f"shape {tuple(got_t.shape)}, expected {tuple(want_t.shape)}"
    if not torch.isfinite(got_t).all():
        return False, "your answer has NaN or inf"
    err = (got_t - want_t).abs()
    bad = err > atol + rtol * want_t.abs()
    if bad.any():
        i = int(bad.flatten().nonzero()[0])
        return False, (f"{int(bad.sum())} of {bad.numel()} values are off; e.g. element {i}: "
                       f"{got_t.flatten()[i].item():.6g}, expected {want_t.flatten()[i].item():.6g}")
    return True, ""


def check(check_fn: Callable[[Callable], Result], student_fn: Callable) -> bool:
    """Run ``check_fn(student_fn)`` and print "correct" or the message; returns ok (for notebooks)."""
    ok, message = check_fn(student_fn)
    print("correct" + (f": {message}" if message else "") if ok else f"not yet: {message}")
    return ok


# ----------------------------------------------------------------------------- 00 start here


def true_stage_sizes(image_size: int) -> list[int]:
    """Side of each stage's feature map for a square input: stem /4 (two stride-2 convs), then /2 per stage.

    Every stride-2 3x3 conv with padding 1 maps a side s to ceil(s / 2).
    """
    s = image_size
    for _ in range(2):  # stem
        s = math.ceil(s / 2)
    sizes = [s]
    for _ in range(3):  # downsample between stages
        s = math.ceil(s / 2)
        sizes.append(s)
    return sizes


def check_stage_sizes(fn: Callable[[int], list[int]]) -> Result:
    """Exercise 00.1: ``stage_sizes(image_size)`` -> the side of the 4 stage maps."""
    for size in (224, 112, 64, 100, 33):
        got, err = _call(fn, size)
        if err:
            return False, err
        try:
            got = [int(v) for v in got]
        except Exception:
            return False, f"stage_sizes({size}) should return 4 integers, got {got!r}"
        want = true_stage_sizes(size)
        if got != want:
            return False, f"stage_sizes({size}) = {got}, expected {want}" + (
                " (each stride-2 conv rounds up: ceil(s / 2))" if size in (100, 33) else "")
    return True, "stage sides are ceil(H/4), then halved (rounding up) at each downsample"


def check_dspp_share(fn: Callable) -> Result:
    """Exercise 00.2: ``dspp_share(model)`` -> the fraction of the model's parameters inside DSPP modules."""
    from .models import DSPP, build_model

    for name in ("msvssm_nano", "vssm_nano"):
        model = build_model(name, num_classes=4)
        total = sum(p.numel() for p in model.parameters())
        in_dspp = sum(p.numel() for m in model.modules() if isinstance(m, DSPP) for p in m.parameters())
        got, err = _call(fn, model)
        if err:
            return False, err
        try:
            got = float(got)
        except Exception:
            return False, f"dspp_share should return a number, got {got!r}"
        if abs(got - in_dspp / total) > 1e-6:
            hint = " (a fraction in [0, 1], not a percentage)" if got > 1 else ""
            return False, f"dspp_share({name}) = {got:.4f}, expected {in_dspp / total:.4f}{hint}"
    return True, "DSPP's share of the parameters, and 0 for the plain VSSM"


# ----------------------------------------------------------------------------- 01 data


def check_quadrant(fn: Callable[[float, float], str]) -> Result:
    """Exercise 01.1: ``quadrant(valence, arousal)`` -> HVHA / HVLA / LVHA / LVLA (>= 5 is high)."""
    from .data.deap import quadrant as truth

    for v, a in ((7.0, 7.0), (5.0, 4.99), (4.99, 5.0), (1.0, 1.0), (9.0, 1.0), (5.0, 5.0), (2.5, 8.5)):
        got, err = _call(fn, v, a)
        if err:
            return False, err
        if got != truth(v, a):
            return False, f"quadrant({v}, {a}) = {got!r}, expected {truth(v, a)!r} (a rating of exactly 5 is high)"
    return True, "the threshold 5 belongs to the high side, as in the paper"


def _toy_manifest() -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    rows = [(p, t, f) for p in ("1", "2", "3", "4", "5") for t in ("1", "2") for f in range(3)]
    return pd.DataFrame({"participant": [r[0] for r in rows], "trial": [r[1] for r in rows],
                         "path": [f"s{r[0]}_t{r[1]}_{r[2]}.png" for r in rows], "label": "HVHA"})


def check_split_by_participant(fn: Callable) -> Result:
    """Exercise 01.2: ``split_by_participant(df, val, test)`` -> "train"/"val"/"test" per row, participants disjoint."""
    from .data.splits import leakage

    df = _toy_manifest()
    val, test = ["2"], ["4", "5"]
    got, err = _call(fn, df.copy(), val, test)
    if err:
        return False, err
    got = np.asarray(list(got), dtype=object)
    if len(got) != len(df):
        return False, f"one split name per row: got {len(got)} for {len(df)} rows"
    want = np.where(df["participant"].isin(test), "test", np.where(df["participant"].isin(val), "val", "train"))
    if not (got == want).all():
        i = int(np.nonzero(got != want)[0][0])
        return False, f"row {i} (participant {df['participant'][i]}) is {got[i]!r}, expected {want[i]!r}"
    share = leakage(df.assign(split=got))
    if any(v > 0 for v in share.values()):
        return False, f"leakage is not zero: {share}"
    return True, "no participant is on two sides: leakage() gives 0 for trials and participants"


def check_weighted_f1(fn: Callable) -> Result:
    """Exercise 01.3: ``weighted_f1(y_true, y_pred)`` by hand, equal to scikit-learn's ``average="weighted"``."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    cases = [(np.array([0, 0, 0, 0, 1, 1, 2, 3]), np.array([0, 0, 0, 1, 1, 0, 2, 2]))]
    y = rng.choice(4, size=200, p=[0.5, 0.25, 0.15, 0.1])
    cases.append((y, np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))))
    for y_true, y_pred in cases:
        got, err = _call(fn, y_true.copy(), y_pred.copy())
        if err:
            return False, err
        want = f1_score(y_true, y_pred, average="weighted")
        macro = f1_score(y_true, y_pred, average="macro")
        try:
            got = float(got)
        except Exception:
            return False, f"weighted_f1 should return a number, got {got!r}"
        if abs(got - want) > 1e-9:
            hint = " (that is the macro F1: weight each class by its share of the TRUE labels)" if abs(got - macro) < 1e-9 else ""
            return False, f"weighted_f1 = {got:.4f}, expected {want:.4f}{hint}"
    return True, "sum over classes of (true share) x F1_i, as the paper's formula"


# ----------------------------------------------------------------------------- 02 selective scan


def check_zoh_B_bar(fn: Callable) -> Result:
    """Exercise 02.1: ``zoh_B_bar(delta, A, B)`` -> the exact zero-order-hold B̄ = (exp(ΔA) - 1) / A · B (diagonal A)."""
    delta = torch.tensor([0.01, 0.1, 1.0, 3.0], dtype=torch.float64)[:, None]  # (4, 1)
    A = -torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)[None, :]  # (1, 3)
    B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)[None, :]  # (1, 3)
    got, err = _call(fn, delta.clone(), A.clone(), B.clone())
    if err:
        return False, err
    want = torch.expm1(delta * A) / A * B  # (4, 3)
    ok, msg = _close(got, want, rtol=1e-6, atol=1e-9)
    if not ok:
        euler = delta * B
        if _close(got, euler, 1e-6, 1e-9)[0]:
            return False, "that is Mamba's Euler simplification ΔB; the exact ZOH has (exp(ΔA) - 1) / A"
        return False, msg
    return True, "exact ZOH; it matches ΔB to first order in Δ (try Δ = 0.01 against Δ = 3)"


def _loop_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h, out = torch.zeros_like(a[..., 0]), []
    for t in range(a.shape[-1]):
        h = a[..., t] * h + b[..., t]
        out.append(h)
    return torch.stack(out, -1)


def check_parallel_scan(fn: Callable) -> Result:
    """Exercise 02.2: ``parallel_scan(a, b)`` -> h with h_t = a_t h_{t-1} + b_t (h_{-1} = 0), in O(log L) vectorised steps."""
    gen = torch.Generator().manual_seed(0)
    for length in (1, 7, 16, 37):
        a = torch.rand(3, length, generator=gen, dtype=torch.float64)
        b = torch.randn(3, length, generator=gen, dtype=torch.float64)
        got, err = _call(fn, a.clone(), b.clone())
        if err:
            return False, err
        ok, msg = _close(got, _loop_scan(a, b), rtol=1e-9, atol=1e-10)
        if not ok:
            return False, f"L = {length}: {msg}"
    return True, "the same h_t as the loop (the combine rule is associative)"


def check_half_life(fn: Callable) -> Result:
    """Exercise 02.3: ``half_life(delta, a)`` -> steps after which exp(Δ a t) = 1/2 (a < 0)."""
    for delta, a in ((0.1, -1.0), (1.0, -1.0), (0.01, -4.0), (0.5, -0.25)):
        got, err = _call(fn, delta, a)
        if err:
            return False, err
        want = math.log(2) / (delta * -a)
        ok, msg = _close(float(got) if np.ndim(got) == 0 else got, want, rtol=1e-6)
        if not ok:
            return False, f"half_life({delta}, {a}): {msg}"
    return True, "ln 2 / (Δ |a|): small Δ remembers long"


# ----------------------------------------------------------------------------- 03 SS2D


def scan_positions(height: int, width: int) -> torch.Tensor:
    """(K, height, width): the position of each pixel in each of the library's four scan sequences."""
    from .ops import cross_unscan

    positions = torch.arange(height * width, dtype=torch.float32)
    return cross_unscan(positions.expand(1, 4, 1, height * width), height, width)[0, :, 0].long()


def check_paths_where_first(fn: Callable) -> Result:
    """Exercise 03.1: ``paths_where_first(p, q, height, width)`` -> sorted directions k where pixel p is scanned before q."""
    rng = np.random.default_rng(0)
    for height, width in ((3, 4), (5, 5), (2, 7)):
        order = scan_positions(height, width)
        for _ in range(12):
            p = (int(rng.integers(height)), int(rng.integers(width)))
            q = (int(rng.integers(height)), int(rng.integers(width)))
            if p == q:
                continue
            got, err = _call(fn, p, q, height, width)
            if err:
                return False, err
            want = [k for k in range(4) if order[k][p] < order[k][q]]
            try:
                got = sorted(int(k) for k in got)
            except Exception:
                return False, f"return a list of direction indices, got {got!r}"
            if got != want:
                return False, f"pixels p={p}, q={q} on {height}x{width}: got {got}, expected {want}"
    return True, "every pair is ordered both ways: p before q in two paths and q before p in the other two"


def ss2d_param_count_truth(dim: int, d_state: int, ssm_ratio: float) -> int:
    from .models import SS2D

    return sum(p.numel() for p in SS2D(dim, d_state=d_state, ssm_ratio=ssm_ratio).parameters())


def check_ss2d_params(fn: Callable) -> Result:
    """Exercise 03.2: ``ss2d_params(dim, d_state, ssm_ratio)`` -> parameters of a plain SS2D, by formula."""
    for dim, n, ratio in ((32, 1, 1.0), (96, 1, 1.0), (96, 16, 2.0), (40, 4, 1.5)):
        got, err = _call(fn, dim, n, ratio)
        if err:
            return False, err
        want = ss2d_param_count_truth(dim, n, ratio)
        if int(got) != want:
            return False, f"ss2d_params({dim}, {n}, {ratio}) = {got}, expected {want}"
    return True, "in_proj and out_proj dominate; the S6 parameters are a few percent"


# ----------------------------------------------------------------------------- 04 SE-SS2D


def check_se_params(fn: Callable) -> Result:
    """Exercise 04.1: ``se_params(channels, directions, reduction)`` -> parameters of ``PathSqueezeExcite``."""
    from .models import PathSqueezeExcite

    for c, k, r in ((32, 4, 16), (96, 4, 16), (192, 4, 4), (16, 4, 16), (64, 2, 8)):
        got, err = _call(fn, c, k, r)
        if err:
            return False, err
        want = sum(p.numel() for p in PathSqueezeExcite(c, k, r).parameters())
        if int(got) != want:
            hint = " (the hidden width is max(channels // reduction, 4))" if c // r < 4 else ""
            return False, f"se_params({c}, {k}, {r}) = {got}, expected {want}{hint}"
    return True, "K x (2 c h + h + c) with h = max(c // r, 4)"


def check_se_gate(fn: Callable) -> Result:
    """Exercise 04.2: ``se_gate(y, w1, b1, w2, b2)`` -> the gate (b, d) of ONE direction's map y (b, d, h, w)."""
    from .models import PathSqueezeExcite

    torch.manual_seed(0)
    se = PathSqueezeExcite(24, directions=4, reduction=4)
    with torch.no_grad():
        for p in (se.fc1_bias, se.fc2_bias):
            p.normal_()
    y = torch.randn(2, 4, 24, 5, 6)
    with torch.no_grad():
        want_all = se(y) / y  # (b, K, d, h, w): the gate broadcast over the grid
    for k in range(4):
        got, err = _call(fn, y[:, k].clone(), se.fc1_weight[k].detach().clone(), se.fc1_bias[k].detach().clone(),
                         se.fc2_weight[k].detach().clone(), se.fc2_bias[k].detach().clone())
        if err:
            return False, err
        ok, msg = _close(torch.as_tensor(got).detach(), want_all[:, k, :, 0, 0], rtol=1e-4, atol=1e-5)
        if not ok:
            return False, f"direction {k}: {msg}"
    return True, "sigmoid(W2 relu(W1 GAP(y) + b1) + b2): the same gate as the library, per direction"


# ----------------------------------------------------------------------------- 05 Layer Scale


def check_fold_layer_scale(fn: Callable) -> Result:
    """Exercise 05.1: ``fold_layer_scale(weight, gamma)`` -> W' with W'x = W (x ⊙ γ) for a bias-free Linear."""
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(6, 10, generator=gen, dtype=torch.float64)  # (out, in)
    gamma = torch.rand(10, generator=gen, dtype=torch.float64) + 0.1
    got, err = _call(fn, W.clone(), gamma.clone())
    if err:
        return False, err
    want = W * gamma[None, :]
    ok, msg = _close(got, want, rtol=1e-9, atol=1e-12)
    if not ok:
        return False, msg + " (γ scales the inputs of out_proj: its columns)"
    return True, "Λ folds into out_proj's columns: same function, different parameterisation"


def check_residual_growth(fn: Callable) -> Result:
    """Exercise 05.2: ``residual_std(depth, branch_scale)`` -> std after ``depth`` residual blocks x <- x + s·f(x).

    Model: x starts with std 1 and each branch adds an independent term of std ``branch_scale``.
    """
    for depth, s in ((1, 1.0), (8, 1.0), (24, 1e-5), (100, 0.1), (0, 1.0)):
        got, err = _call(fn, depth, s)
        if err:
            return False, err
        want = math.sqrt(1 + depth * s * s)
        ok, msg = _close(float(got), want, rtol=1e-6)
        if not ok:
            return False, f"residual_std({depth}, {s}): {msg} (independent terms add in variance, not in std)"
    return True, "variances add: sqrt(1 + depth s^2); Λ = 1e-5 keeps a deep stack at std 1"


# ----------------------------------------------------------------------------- 06 DSPP


def check_branch_receptive_field(fn: Callable) -> Result:
    """Exercise 06.1: ``receptive_field(pool_k, dilation, conv_k=3)`` -> side of one DSPP branch's receptive field."""
    for k, d, c in ((3, 1, 3), (5, 2, 3), (7, 3, 3), (1, 1, 1), (3, 4, 5)):
        got, err = _call(fn, k, d, c)
        if err:
            return False, err
        want = k + d * (c - 1)
        if int(got) != want:
            hint = " (a pool of k and a conv of effective size d(c-1)+1 compose to k + d(c-1))" if int(got) == k * d * c else ""
            return False, f"receptive_field({k}, {d}, {c}) = {got}, expected {want}{hint}"
    return True, "pool k then a dilated conv: k + d (c - 1); branches see 5, 9 and 13 pixels"


def check_dspp_params(fn: Callable) -> Result:
    """Exercise 06.2: ``dspp_params(dim, ratio)`` -> parameters of ``DSPP(dim, ratio)`` (convs have biases)."""
    from .models import DSPP

    for dim, ratio in ((32, 0.25), (96, 0.25), (768, 0.25), (64, 1.0), (16, 0.25)):
        got, err = _call(fn, dim, ratio)
        if err:
            return False, err
        want = sum(p.numel() for p in DSPP(dim, ratio).parameters())
        if int(got) != want:
            hint = " (the width is max(int(dim * ratio), 8))" if int(dim * ratio) < 8 else ""
            return False, f"dspp_params({dim}, {ratio}) = {got}, expected {want}{hint}"
    return True, "the three 3x3 dilated convs dominate: 3 x 9 m^2"


# ----------------------------------------------------------------------------- 07 training


def check_overfit_one_batch(fn: Callable) -> Result:
    """Exercise 07.1: ``overfit_one_batch(model, images, labels, steps)`` -> list of the loss at each step.

    A correct loop (forward, loss, zero_grad, backward, step) drives the loss of one fixed batch
    of 8 random images towards 0 within 60 AdamW steps; a loop that forgets the step, or steps
    before the gradient is computed, does not.
    """
    from .models import build_model

    torch.manual_seed(0)
    model = build_model("vssm_nano", num_classes=4, drop_path_rate=0.0)
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    losses, why = _call(fn, model, images, labels, 60)
    if why:
        return False, why
    try:
        losses = [float(v) for v in losses]
    except Exception:
        return False, "return the list of losses, one float per step"
    if len(losses) != 60:
        return False, f"{len(losses)} losses for 60 steps"
    if not all(math.isfinite(v) for v in losses):
        return False, "a loss is NaN or inf"
    if not losses[-1] < 0.1 * losses[0]:
        return False, (f"the loss went from {losses[0]:.3f} to {losses[-1]:.3f}: one batch should be learnt by heart "
                       "(below a tenth of the start). Did you call optimizer.step() after loss.backward()?")
    return True, ""


def check_recall_from_confusion(fn: Callable) -> Result:
    """Exercise 07.2: ``recall_from_confusion(counts)`` -> per-class recall, the diagonal of the paper's Fig. 2."""
    counts = np.array([[50, 3, 5, 2], [4, 20, 1, 5], [6, 2, 30, 2], [1, 9, 3, 17]])
    got, why = _call(fn, counts.copy())
    if why:
        return False, why
    return _close(got, np.diag(counts) / counts.sum(axis=1), rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- 11 looking inside


def check_rf_centre(fn: Callable) -> Result:
    """Exercise 11.1: ``rf_centre(index, n_convs)`` -> input pixel at the centre of output cell ``index``'s
    receptive field, through ``n_convs`` 3x3 convolutions with stride 2 and padding 1."""
    for index, n in ((0, 5), (1, 5), (2, 5), (3, 5), (1, 1), (3, 1), (2, 3), (5, 2)):
        got, why = _call(fn, index, n)
        if why:
            return False, why
        # the truth, by following the window of one output pixel back through the convs
        lo = hi = index
        for _ in range(n):
            lo, hi = 2 * lo - 1, 2 * hi + 1  # out j reads in 2j-1 .. 2j+1 (padding 1 shifts by one)
        want = (lo + hi) / 2
        try:
            got = float(got)
        except Exception:
            return False, f"rf_centre({index}, {n}) should return a number, got {got!r}"
        if abs(got - want) > 1e-9:
            block = 2 ** n * index + (2 ** n - 1) / 2
            hint = (" (that is the middle of the cell's block of 2^n pixels; with padding 1 output j reads "
                    "inputs 2j-1, 2j, 2j+1, centred on 2j)") if abs(got - block) < 0.51 else ""
            return False, f"rf_centre({index}, {n}) = {got:g}, expected {want:g}{hint}"
    return True, "2^n x index: cell i of the last stage looks at pixel 32 i"


def check_centre_square_side(fn: Callable) -> Result:
    """Exercise 11.2: ``centre_square_side(erf, share)`` -> the odd side of the smallest square centred on
    (H // 2, W // 2) that holds at least ``share`` of the map's mass."""
    from .inside import centre_square_side as truth

    delta = np.zeros((9, 9))
    delta[4, 4] = 1.0
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    blob = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 18.0)
    cases = [(delta, 1.0), (delta, 0.5), (np.ones((9, 9)), 0.5), (np.ones((9, 9)), 1.0), (blob, 0.5), (blob, 0.9),
             (rng.random((12, 12)), 0.3), (rng.random((15, 15)) ** 4, 0.75)]
    for erf, share in cases:
        got, why = _call(fn, erf.copy(), share)
        if why:
            return False, why
        want = truth(erf, share)
        try:
            got = int(got)
        except Exception:
            return False, f"return the side as an integer, got {got!r}"
        if got != want:
            hint = ""
            if got == (want - 1) // 2:
                hint = " (that is the half-width i; the side of the square is 2 i + 1)"
            elif share == 1.0:
                hint = " (\"at least\" the share: use >=, a square holding all of the mass qualifies)"
            return False, f"a {erf.shape[0]}x{erf.shape[1]} map, share {share}: got {got}, expected {want}{hint}"
    return True, "sides 1, 3, 5, ... around the centre until the share is reached"


def _toy_predictions():
    import pandas as pd

    rng = np.random.default_rng(1)
    counts = {1: 40, 2: 10, 3: 25, 4: 5, 5: 30, 6: 12}
    error_p = {1: 0.1, 2: 0.6, 3: 0.2, 4: 0.8, 5: 0.05, 6: 0.3}
    rows = [{"participant": p, "correct": bool(rng.random() >= error_p[p])} for p, n in counts.items() for _ in range(n)]
    expressivity = pd.DataFrame({"participant": list(counts), "expressivity": [0.9, 0.2, 0.7, 0.3, 1.1, 0.35]})
    return pd.DataFrame(rows), expressivity


def check_weakest_error_rate(fn: Callable) -> Result:
    """Exercise 11.3: ``weakest_error_rate(predictions, expressivity, k)`` -> error rate pooled over all images
    of the ``k`` participants with the lowest expressivity."""
    preds, expr = _toy_predictions()
    for k in (1, 2, 3):
        got, why = _call(fn, preds.copy(), expr.copy(), k)
        if why:
            return False, why
        weakest = expr.nsmallest(k, "expressivity")["participant"]
        rows = preds[preds["participant"].isin(weakest)]
        want = 1 - rows["correct"].mean()
        per_person = (1 - rows.groupby("participant")["correct"].mean()).mean()
        try:
            got = float(got)
        except Exception:
            return False, f"weakest_error_rate should return a number, got {got!r}"
        if abs(got - want) > 1e-9:
            if abs(got - per_person) < 1e-9:
                hint = " (that is the mean of the per-person rates: pool the images, each image counts once)"
            elif abs(got - (1 - want)) < 1e-9:
                hint = " (that is the accuracy; the error rate is 1 - accuracy)"
            else:
                hint = " (the weakest are the k LOWEST expressivities)"
            return False, f"k = {k}: got {got:.4f}, expected {want:.4f}{hint}"
    return True, "pooled over the images of the k least expressive people"


EXERCISES: dict[str, dict[str, Callable[[Callable], Result]]] = {
    "00": {"stage_sizes": check_stage_sizes, "dspp_share": check_dspp_share},
    "01": {"quadrant": check_quadrant, "split_by_participant": check_split_by_participant,
           "weighted_f1": check_weighted_f1},
    "02": {"zoh_B_bar": check_zoh_B_bar, "parallel_scan": check_parallel_scan, "half_life": check_half_life},
    "03": {"paths_where_first": check_paths_where_first, "ss2d_params": check_ss2d_params},
    "04": {"se_params": check_se_params, "se_gate": check_se_gate},
    "05": {"fold_layer_scale": check_fold_layer_scale, "residual_std": check_residual_growth},
    "06": {"receptive_field": check_branch_receptive_field, "dspp_params": check_dspp_params},
    "07": {"overfit_one_batch": check_overfit_one_batch, "recall_from_confusion": check_recall_from_confusion},
    "11": {"rf_centre": check_rf_centre, "centre_square_side": check_centre_square_side,
           "weakest_error_rate": check_weakest_error_rate},
}


# ----------------------------------------------------------------------------- 08 ablation


def check_mean_and_std(fn: Callable) -> Result:
    """Exercise 08.1: ``mean_and_std(values)`` -> (mean, sample std with ddof=1; 0.0 for a single value)."""
    cases = [[0.81, 0.86, 0.84], [0.5, 0.7], [0.9]]
    for values in cases:
        got, err = _call(fn, list(values))
        if err:
            return False, err
        want_std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        ok, msg = _close(got, [float(np.mean(values)), want_std], rtol=1e-6, atol=1e-9)
        if not ok:
            hint = " (divide by n - 1, not n: ddof=1)" if len(values) > 1 and abs(
                np.asarray(got, dtype=float)[-1] - np.std(values)) < 1e-9 else ""
            return False, f"for {values}: {msg}{hint}"
    return True, "the sample std is what pandas' .std() gives (ddof=1); numpy's np.std defaults to ddof=0"


def check_extra_params(fn: Callable) -> Result:
    """Exercise 08.2: ``extra_params(flag)`` -> parameters one flag adds to msvssm_nano (other flags off)."""
    from .models import build_model

    def count(**flags):
        return sum(p.numel() for p in build_model("msvssm_nano", num_classes=4, **flags).parameters())

    off = dict(path_se=False, layer_scale=False, dspp=False)
    base = count(**off)
    for flag in ("path_se", "layer_scale", "dspp"):
        got, err = _call(fn, flag)
        if err:
            return False, err
        want = count(**{**off, flag: True}) - base
        if int(got) != want:
            return False, f"{flag}: {got}, expected {want}"
    return True, ""


EXERCISES.update({"08": {"mean_and_std": check_mean_and_std, "extra_params": check_extra_params}})


# ----------------------------------------------------------------------------- 09 baselines


def check_fold_bn(fn: Callable) -> Result:
    """Exercise 09.1: ``fold_bn(weight, bias, bn)`` -> (W', b') with conv'(x) == bn(conv(x)) in eval mode."""
    import torch.nn as nn

    torch.manual_seed(0)
    for bias in (True, False):
        conv = nn.Conv2d(3, 5, 3, padding=1, bias=bias)
        bn = nn.BatchNorm2d(5, eps=1e-5 if bias else 0.1)  # a large eps: forgetting it must show
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
        bn.eval()
        got, err = _call(fn, conv.weight.detach().clone(), None if conv.bias is None else conv.bias.detach().clone(), bn)
        if err:
            return False, err
        try:
            w, b = got
            x = torch.randn(2, 3, 8, 8)
            out = torch.nn.functional.conv2d(x, torch.as_tensor(w), torch.as_tensor(b), padding=1)
        except Exception as exc:
            return False, f"cannot use your (W', b') as a conv: {type(exc).__name__}: {exc}"
        with torch.no_grad():
            want = bn(conv(x))
        ok, msg = _close(out.detach(), want, rtol=1e-4, atol=1e-5)
        if not ok:
            return False, f"conv {'with' if bias else 'without'} bias: {msg}"
    return True, "RepViT's fuse() does this for every conv + BN pair, then adds its parallel branches"


def check_conv_macs(fn: Callable) -> Result:
    """Exercise 09.2: ``conv_macs(c_in, c_out, k, h_out, w_out, groups)`` -> fvcore's count for a bias-free conv."""
    import torch.nn as nn
    FlopCountAnalysis = require("fvcore.nn", "analysis", "exercise 09.2").FlopCountAnalysis

    for c_in, c_out, k, stride, groups, size in [(3, 16, 3, 2, 1, 32), (32, 32, 3, 1, 32, 16), (16, 24, 1, 1, 1, 8),
                                                  (8, 8, 5, 1, 2, 10)]:
        conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False)
        x = torch.zeros(1, c_in, size, size)
        h_out = conv(x).shape[-1]
        want = FlopCountAnalysis(conv, x).unsupported_ops_warnings(False).total()
        got, err = _call(fn, c_in, c_out, k, h_out, h_out, groups)
        if err:
            return False, err
        if int(got) != want:
            return False, f"conv {c_in}->{c_out}, k={k}, groups={groups}, output {h_out}x{h_out}: {got}, fvcore {want}"
    return True, ""


EXERCISES.update({"09": {"fold_bn": check_fold_bn, "conv_macs": check_conv_macs}})


# ----------------------------------------------------------------------------- 10 protocols


def check_per_participant_accuracy(fn: Callable) -> Result:
    """Exercise 10.1: ``per_participant_accuracy(df)`` -> Series of accuracy indexed by participant."""
    import pandas as pd

    df = pd.DataFrame({"participant": [3, 1, 1, 3, 2, 1, 3, 3], "label": list("ABABAAAB"), "pred": list("AAABBAAB")})
    want = (df["label"] == df["pred"]).groupby(df["participant"]).mean().sort_index()
    got, err = _call(fn, df.copy())
    if err:
        return False, err
    try:
        got = pd.Series(got).astype(float)
    except Exception as exc:
        return False, f"cannot read your answer as a Series of numbers ({exc})"
    if list(got.index) != list(want.index):
        return False, f"index {list(got.index)}, expected the participants sorted: {list(want.index)}"
    ok, msg = _close(got.to_numpy(), want.to_numpy())
    return ok, msg


def check_wilson_interval(fn: Callable) -> Result:
    """Exercise 10.2: ``wilson_interval(k, n, z)`` -> (low, high), compared with scipy's binomtest."""
    binomtest = require("scipy.stats", "analysis", "exercise 10.2").binomtest

    for k, n in [(80, 100), (5, 10), (0, 20), (417, 418)]:
        got, err = _call(fn, k, n)
        if err:
            return False, err
        ci = binomtest(k, n).proportion_ci(method="wilson")
        ok, msg = _close(got, [ci.low, ci.high], rtol=1e-3, atol=1e-4)
        if not ok:
            return False, f"k={k}, n={n}: {msg}"
    return True, "note how wide it is for n=10"


EXERCISES.update({"10": {"per_participant_accuracy": check_per_participant_accuracy,
                         "wilson_interval": check_wilson_interval}})

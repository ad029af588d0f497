"""Every exercise of notebooks 00-06: the solution passes its check, and the check rejects wrong answers.

The notebooks' check cells call the same ``msvssm.exercises`` functions, so an exercise
cannot be unsolvable (the solution passes) or silently broken (a stub, a raised
NotImplementedError and a deliberately wrong answer all fail, without raising).
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from msvssm import exercises as ex

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


def load_solutions(notebook: str):
    path = SOLUTIONS / f"{notebook}_exercises.py"
    spec = importlib.util.spec_from_file_location(f"solutions_{notebook}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = [(nb, name) for nb, checks in ex.EXERCISES.items() for name in checks]


def test_every_notebook_has_two_to_four_exercises():
    for nb, checks in ex.EXERCISES.items():
        assert 2 <= len(checks) <= 4, nb


@pytest.mark.parametrize("notebook,name", CASES, ids=[f"{nb}-{n}" for nb, n in CASES])
def test_solution_passes(notebook, name):
    solution = getattr(load_solutions(notebook), name)
    ok, message = ex.EXERCISES[notebook][name](solution)
    assert ok, message


def _loop_without_step(model, images, labels, steps):
    """A classic bug: gradients computed, the optimiser never stepped."""
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        losses.append(loss.item())
    return losses


def _raise(*args, **kwargs):
    raise NotImplementedError


def _none(*args, **kwargs):
    return None


def _crash(*args, **kwargs):
    return 1 / 0


@pytest.mark.parametrize("notebook,name", CASES, ids=[f"{nb}-{n}" for nb, n in CASES])
@pytest.mark.parametrize("stub", [_raise, _none, _crash], ids=["NotImplementedError", "None", "ZeroDivisionError"])
def test_unsolved_stub_is_rejected_without_raising(notebook, name, stub):
    ok, message = ex.EXERCISES[notebook][name](stub)
    assert not ok and message


# A plausible mistake for each exercise: the check must say no.
WRONG = {
    ("00", "stage_sizes"): lambda s: [s // 4, s // 8, s // 16, s // 32],  # floor instead of ceil
    ("00", "dspp_share"): lambda model: 100 * load_solutions("00").dspp_share(model),  # a percentage
    ("01", "quadrant"): lambda v, a: ("HV" if v > 5 else "LV") + ("HA" if a > 5 else "LA"),  # 5 counted as low
    ("01", "split_by_participant"): lambda df, val, test: np.where(df.index % 5 == 0, "test", "train"),  # by frame
    ("01", "weighted_f1"): lambda y, p: __import__("sklearn.metrics").metrics.f1_score(y, p, average="macro"),
    ("02", "zoh_B_bar"): lambda delta, A, B: delta * B,  # Mamba's Euler simplification
    ("02", "parallel_scan"): lambda a, b: torch.cumsum(b, -1),  # forgets the decay
    ("02", "half_life"): lambda delta, a: 1 / (delta * -a),  # time constant, not half-life
    ("03", "paths_where_first"): lambda p, q, h, w: [0, 1] if p < q else [2, 3],  # rows only
    ("03", "ss2d_params"): lambda dim, n, r: 2 * dim * int(r * dim),  # projections only
    ("04", "se_params"): lambda c, k, r: 2 * c * (c // r) + c // r + c,  # one SE, not one per path
    ("04", "se_gate"): lambda y, w1, b1, w2, b2: torch.relu(y.mean((-2, -1)) @ w1.T + b1) @ w2.T + b2,  # no sigmoid
    ("05", "fold_layer_scale"): lambda W, g: W,  # forgets gamma
    ("05", "residual_std"): lambda depth, s: 1 + depth * s,  # stds added
    ("06", "receptive_field"): lambda k, d, c: k * d * c,
    ("07", "overfit_one_batch"): lambda model, x, y, steps: _loop_without_step(model, x, y, steps),
    ("07", "recall_from_confusion"): lambda c: np.diag(c) / c.sum(axis=0),  # precision (columns), not recall
    ("06", "dspp_params"): lambda dim, ratio: load_solutions("06").dspp_params(dim, ratio) - dim,  # fuse bias forgotten
    ("08", "mean_and_std"): lambda v: (float(np.mean(v)), float(np.std(v))),  # ddof=0
    ("08", "extra_params"): lambda flag: load_solutions("08").extra_params(flag) + (1 if flag == "dspp" else 0),
    ("09", "fold_bn"): lambda w, b, bn: (w * bn.weight.detach()[:, None, None, None], bn.bias.detach()),  # no 1/sigma, no mu
    ("09", "conv_macs"): lambda ci, co, k, h, w, g=1: h * w * co * ci * k * k,  # groups ignored
    ("10", "per_participant_accuracy"): lambda df: (df["label"] == df["pred"]).groupby(df["participant"], sort=False).mean(),
    ("10", "wilson_interval"): lambda k, n, z=1.96: (k / n - z * math.sqrt(k / n * (1 - k / n) / n),
                                                     k / n + z * math.sqrt(k / n * (1 - k / n) / n)),  # Wald, not Wilson
    ("11", "rf_centre"): lambda i, n: 2 ** n * i + 2 ** (n - 1),
    ("11", "centre_square_side"): lambda erf, share: (load_solutions("11").centre_square_side(erf, share) - 1) // 2,
    ("11", "weakest_error_rate"): lambda p, e, k: (1 - p[p["participant"].isin(e.nsmallest(k, "expressivity")["participant"])]
                                                   .groupby("participant")["correct"].mean()).mean(),  # mean of rates, not pooled
}


def test_every_exercise_has_a_wrong_answer():
    assert set(WRONG) == set(CASES)


@pytest.mark.parametrize("notebook,name", CASES, ids=[f"{nb}-{n}" for nb, n in CASES])
def test_wrong_answer_is_rejected(notebook, name):
    ok, message = ex.EXERCISES[notebook][name](WRONG[(notebook, name)])
    assert not ok and message


def test_zoh_matches_euler_to_first_order():
    """The fact exercise 02.1 teaches: ZOH and Mamba's ΔB agree up to O(Δ²)."""
    zoh = load_solutions("02").zoh_B_bar
    A, B = torch.tensor(-1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    for delta in (1e-3, 1e-2):
        d = torch.tensor(delta, dtype=torch.float64)
        assert math.isclose((zoh(d, A, B) - d * B).item(), -delta**2 / 2, rel_tol=0.01)


def test_true_stage_sizes_match_the_model():
    from msvssm.models import build_model

    model = build_model("msvssm_nano", num_classes=4, scan_backend="reference").eval()
    for size in (64, 50):
        with torch.no_grad():
            outs = model.forward_intermediates(torch.randn(1, 3, size, size))
        assert [o.shape[1] for o in outs] == ex.true_stage_sizes(size)


def test_check_prints_verdict(capsys):
    assert ex.check(ex.check_half_life, load_solutions("02").half_life)
    assert capsys.readouterr().out.startswith("correct")
    assert not ex.check(ex.check_half_life, _raise)
    assert "not solved yet" in capsys.readouterr().out


def test_fold_bn_without_eps_is_rejected():
    import torch

    def forgets_eps(w, b, bn):
        scale = bn.weight.detach() / torch.sqrt(bn.running_var)
        bias = b if b is not None else torch.zeros_like(bn.running_mean)
        return w * scale[:, None, None, None], bn.bias.detach() + (bias - bn.running_mean) * scale

    ok, message = ex.EXERCISES["09"]["fold_bn"](forgets_eps)
    assert not ok and "without bias" in message

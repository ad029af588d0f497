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


CASES = [(nb, name) for nb, book in ex.REGISTRY.items() for name in book]
WRONG_CASES = [(nb, name, i) for nb, book in ex.REGISTRY.items() for name, e in book.items()
               for i in range(len(e.wrong_answers))]


def test_every_notebook_has_two_to_six_exercises():
    assert sorted(ex.REGISTRY) == [f"{i:02d}" for i in range(12)]
    for nb, book in ex.REGISTRY.items():
        assert 2 <= len(book) <= 6, nb


@pytest.mark.parametrize("notebook,name", CASES, ids=[f"{nb}-{n}" for nb, n in CASES])
def test_solution_passes(notebook, name):
    solution = getattr(load_solutions(notebook), name)
    ok, message = ex.REGISTRY[notebook][name].check(solution)
    assert ok, message


def _raise(*args, **kwargs):
    raise NotImplementedError


def _none(*args, **kwargs):
    return None


def _crash(*args, **kwargs):
    return 1 / 0


@pytest.mark.parametrize("notebook,name", CASES, ids=[f"{nb}-{n}" for nb, n in CASES])
@pytest.mark.parametrize("stub", [_raise, _none, _crash], ids=["NotImplementedError", "None", "ZeroDivisionError"])
def test_unsolved_stub_is_rejected_without_raising(notebook, name, stub):
    ok, message = ex.REGISTRY[notebook][name].check(stub)
    assert not ok and message


def test_every_exercise_has_a_plausible_wrong_answer():
    missing = [f"{nb}.{name}" for nb, name in CASES if not ex.REGISTRY[nb][name].wrong_answers]
    assert missing == []


@pytest.mark.parametrize("notebook,name,index", WRONG_CASES, ids=[f"{nb}-{n}-{i}" for nb, n, i in WRONG_CASES])
def test_wrong_answer_is_rejected(notebook, name, index):
    """Each plausible mistake registered with an exercise (``exercise(..., wrong=...)``) is rejected, with a message."""
    e = ex.REGISTRY[notebook][name]
    ok, message = e.check(e.wrong_answers[index])
    assert not ok and message


def test_registering_an_exercise_twice_is_an_error():
    from msvssm.exercises.core import exercise

    with pytest.raises(ValueError, match="twice"):
        exercise("02", "zoh_B_bar")(lambda fn: (True, ""))


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

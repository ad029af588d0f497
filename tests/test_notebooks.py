"""Smoke run of every numbered notebook with the tiny "smoke" profile (papermill).

Figures and data go to a temporary folder, so the committed figures/ are untouched.
Marked ``notebook``: ``make test`` runs these after the unit tests.
"""
from pathlib import Path

import pytest

from msvssm.reproduce import run_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="session")
def smoke_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    return {"data_dir": str(root / "data"), "figures_dir": str(root / "figures"), "out": root / "executed"}


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(notebook, smoke_dirs):
    params = dict(profile="smoke", data_dir=smoke_dirs["data_dir"], figures_dir=smoke_dirs["figures_dir"])
    executed = run_notebook(notebook, smoke_dirs["out"], params)
    assert executed.exists()
    assert list(Path(smoke_dirs["figures_dir"]).glob(f"{notebook.stem[:2]}_*.png")), "the notebook wrote no figure"

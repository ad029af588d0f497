"""msvssm grade: submitted notebooks run headless, every exercise's check on the student's functions, a gradebook.

End to end on notebook 00 as shipped (every exercise "not done"), with the solutions filled in (all pass) and
with one wrong answer, next to an unreadable file and an endless notebook (stopped by the time limit, the
others still graded). Every course notebook defines a function for each of its registered exercises, so each
can be graded."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from msvssm import exercises
from msvssm.grade import MISSING, NOT_DONE, PASS, grade, grade_namespace, notebook_number

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(Path(__file__).parent))
from test_exercises import load_solutions  # noqa: E402


def test_notebook_number_from_the_file_name():
    assert notebook_number(Path("02_selective_scan.ipynb")) == "02"
    assert notebook_number(Path("alice_05_layer_scale.ipynb")) == "05"
    with pytest.raises(ValueError, match="--notebook"):
        notebook_number(Path("homework.ipynb"))


def test_every_notebook_defines_a_function_for_each_of_its_exercises():
    for path in NOTEBOOKS:
        source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                           if c["cell_type"] == "code")
        for name in exercises.exercises_of(path.name[:2]):
            assert re.search(rf"^def {name}\(", source, re.M), f"{path.name} has no `def {name}(` to grade"


def test_grade_namespace_verdicts(tmp_path):
    solutions = load_solutions("02")
    e = exercises.REGISTRY["02"]["zoh_B_bar"]

    def stub(*args):
        raise NotImplementedError

    namespace = {"zoh_B_bar": solutions.zoh_B_bar, "parallel_scan": stub, "half_life": e.wrong_answers[0]}
    verdicts = grade_namespace("02", namespace, tmp_path / "v.json")
    assert verdicts["zoh_B_bar"] == PASS and verdicts["parallel_scan"] == NOT_DONE
    assert verdicts["half_life"].startswith("wrong: ")
    assert all(verdicts[n] == MISSING for n in exercises.exercises_of("02") if n not in namespace)
    assert json.loads((tmp_path / "v.json").read_text())["verdicts"] == verdicts


def _with_cell_at_the_end(source: Path, target: Path, code: str) -> Path:
    nb = nbformat.read(str(source), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(code))
    nbformat.write(nb, str(target))
    return target


@pytest.mark.slow
def test_grade_shipped_solved_wrong_and_broken_submissions(tmp_path):
    source = REPO / "notebooks" / "00_start_here.ipynb"
    subs = tmp_path / "submissions"
    subs.mkdir()
    (subs / "anna_00_start_here.ipynb").write_bytes(source.read_bytes())  # as shipped: every stub unsolved
    solution_code = (REPO / "notebooks" / "solutions" / "00_exercises.py").read_text()
    _with_cell_at_the_end(source, subs / "ben_00_start_here.ipynb", solution_code)
    wrong = solution_code + "\n\ndef stage_sizes(image_size):\n    return [image_size // 4 // 2 ** i for i in range(4)]\n"
    _with_cell_at_the_end(source, subs / "carl_00_start_here.ipynb", wrong)  # floor instead of ceil
    (subs / "dora_00_start_here.ipynb").write_text("{ not a notebook")

    book = grade(sorted(subs.glob("*.ipynb")), tmp_path / "out", timeout=300).set_index("submission")
    names = [f"00.{n}" for n in exercises.exercises_of("00")]
    assert (book.loc["anna_00_start_here.ipynb", names] == NOT_DONE).all()
    assert book.loc["anna_00_start_here.ipynb", "status"] == "ran"
    assert (book.loc["ben_00_start_here.ipynb", names] == PASS).all()
    assert book.loc["ben_00_start_here.ipynb", "score"] == f"{len(names)}/{len(names)}"
    assert book.loc["carl_00_start_here.ipynb", "00.stage_sizes"].startswith("wrong: ")
    assert book.loc["carl_00_start_here.ipynb", "00.stage_params"] == PASS
    assert book.loc["dora_00_start_here.ipynb", "status"].startswith("unreadable")
    on_disk = pd.read_csv(tmp_path / "out" / "gradebook.csv")
    assert len(on_disk) == 4 and (tmp_path / "out" / "gradebook.md").read_text().startswith("# Gradebook")
    assert (tmp_path / "out" / "executed" / "ben_00_start_here.ipynb").exists()


def test_an_endless_submission_is_stopped_and_a_raising_cell_does_not_stop_the_rest(tmp_path):
    endless = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("while True:\n    pass")])
    raising = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("1 / 0"),
        nbformat.v4.new_code_cell("def half_life(delta, a):\n    import math\n    return math.log(2) / (delta * -a)")])
    nbformat.write(endless, str(tmp_path / "x_02_endless.ipynb"))
    nbformat.write(raising, str(tmp_path / "y_02_raising.ipynb"))
    book = grade([tmp_path / "x_02_endless.ipynb", tmp_path / "y_02_raising.ipynb"], tmp_path / "out",
                 timeout=20).set_index("submission")
    assert book.loc["x_02_endless.ipynb", "status"] == "timed out after 20 s"
    assert book.loc["y_02_raising.ipynb", "status"] == "ran" and book.loc["y_02_raising.ipynb", "cells_with_errors"] == 1
    assert book.loc["y_02_raising.ipynb", "02.half_life"] == PASS
    assert book.loc["y_02_raising.ipynb", "02.zoh_B_bar"] == MISSING

"""``msvssm grade``: run submitted notebooks and write a gradebook of their exercises.

    msvssm grade submissions/*.ipynb --out grades [--timeout 600] [--data build/grade-data]

For each submission (a course notebook ``NN_*.ipynb`` a student filled in):

1. papermill writes the parameters (the tiny ``smoke`` profile, the shared data folder, figures
   and results into the output folder, never the course's ``figures/``), and a last cell is
   added that runs every check of notebook NN (:mod:`msvssm.exercises`, the same checks as the
   notebook's own check cells) on the function of that name the student's code defined;
2. the notebook runs in a fresh kernel in a process of its own, cells that raise do not stop it
   (a student's error in one exercise must not cost the others), and the whole notebook has
   ``timeout`` seconds: an endless submission is stopped, recorded, and the next is graded;
3. the executed copy goes to ``OUT/executed/`` (the instructor can read what the student saw).

``OUT/gradebook.csv`` and ``OUT/gradebook.md`` have one row per submission and one column per
exercise: ``pass``, ``not done`` (the stub unchanged), ``missing`` (no function of that name) or
``wrong: <the check's hint>``, plus how the run went and the score. Grading uses the checks'
verdicts only: a wrong answer is wrong whatever the student printed.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .utils import atomic_write_json, get_logger

log = get_logger("grade")

RESULT_MARKER = "msvssm-grade"
PASS, NOT_DONE, MISSING = "pass", "not done", "missing"


def notebook_number(path: Path) -> str:
    """The course notebook a submission is ("02" for ``02_selective_scan.ipynb``, also for ``alice_02_...``)."""
    import re

    match = re.search(r"(?:^|[^0-9])(\d\d)_", path.name) or re.match(r"(\d\d)", path.name)
    if not match:
        raise ValueError(f"{path.name}: cannot tell which notebook this is (name it like 02_selective_scan.ipynb, "
                         "or pass --notebook NN)")
    return match.group(1)


def grading_cell(notebook: str, result_path: Path) -> str:
    return (f"# added by msvssm grade: every exercise check of notebook {notebook} on your functions\n"
            "from msvssm.grade import grade_namespace as _msvssm_grade_namespace\n"
            f"_msvssm_grade_namespace({notebook!r}, globals(), {str(result_path)!r})\n")


def grade_namespace(notebook: str, namespace: dict, result_path: str | os.PathLike) -> dict[str, str]:
    """Run every check of ``notebook`` on the functions in ``namespace``; write and return {name: verdict}."""
    from .exercises import exercises_of

    verdicts = {}
    for name, ex in exercises_of(notebook).items():
        fn = namespace.get(name)
        if not callable(fn):
            verdicts[name] = MISSING
            continue
        try:
            ok, message = ex.check(fn)
        except Exception as err:  # noqa: BLE001 - a check never raises; if one does, say so instead of losing the rest
            ok, message = False, f"the check itself failed: {type(err).__name__}: {err}"
        verdicts[name] = PASS if ok else (NOT_DONE if message.startswith("not solved yet") else f"wrong: {message}")
    atomic_write_json(Path(result_path), {"marker": RESULT_MARKER, "notebook": notebook, "verdicts": verdicts})
    for name, verdict in verdicts.items():
        print(f"{name}: {verdict}")
    return verdicts


def prepare_submission(source: Path, notebook: str, parameters: dict, result_path: Path):
    """The submission, parameterised by papermill, with the grading cell appended."""
    import nbformat
    from papermill.parameterize import parameterize_notebook

    from nbformat.corpus.words import generate_corpus_id
    from papermill.iorw import load_notebook_node

    nb = load_notebook_node(str(source))  # papermill's reader: tags and its metadata on every cell
    nb = parameterize_notebook(nb, parameters, kernel_name="python3", language="python")
    nb.cells.append(nbformat.v4.new_code_cell(grading_cell(notebook, result_path)))
    nb.nbformat_minor = max(nb.nbformat_minor, 5)  # the new cells carry ids, which format 4.5 has for every cell
    for cell in nb.cells:
        cell.setdefault("id", generate_corpus_id())
    return nb


def _execute(prepared: str, executed: str, cwd: str, cell_timeout: int) -> None:
    """Run a prepared notebook in a fresh kernel (in this process), errors allowed; write the executed copy."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(prepared, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": cwd}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, executed)


def run_submission(source: Path, out: Path, notebook: str, parameters: dict, timeout: int) -> dict[str, Any]:
    """Grade one submission: {"submission", "notebook", "status", "seconds", "cells_with_errors", "verdicts"}."""
    import nbformat

    name = source.stem
    work = out / "work" / name
    work.mkdir(parents=True, exist_ok=True)
    result_path = (work / "verdicts.json").resolve()
    result_path.unlink(missing_ok=True)
    executed = out / "executed" / source.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"submission": source.name, "notebook": notebook, "status": "", "seconds": 0.0,
                           "cells_with_errors": None, "verdicts": {}}
    try:
        prepared = prepare_submission(source, notebook, parameters, result_path)
    except Exception as err:  # noqa: BLE001 - a broken file is one row of the gradebook, not the end of grading
        row["status"] = f"unreadable: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
        return row
    prepared_path = work / source.name
    nbformat.write(prepared, str(prepared_path))
    t0 = time.perf_counter()
    code = (f"from msvssm.grade import _execute; _execute({str(prepared_path)!r}, {str(executed)!r}, "
            f"{str(source.resolve().parent)!r}, {int(timeout)})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # its own group: the kernel dies with it
    try:
        output, _ = proc.communicate(timeout=timeout)
        row["status"] = "ran" if proc.returncode == 0 else f"runner failed ({proc.returncode}): {output[-300:]}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        row["status"] = f"timed out after {timeout} s"
    row["seconds"] = round(time.perf_counter() - t0, 1)
    if executed.exists():
        done = nbformat.read(str(executed), as_version=4)
        row["cells_with_errors"] = sum(1 for c in done.cells if c.cell_type == "code"
                                       for o in c.get("outputs", []) if o.get("output_type") == "error")
    if result_path.exists():
        result = json.loads(result_path.read_text(encoding="utf-8"))
        if result.get("marker") == RESULT_MARKER:
            row["verdicts"] = result["verdicts"]
    elif row["status"] == "ran":
        row["status"] = "ran, but the grading cell did not finish"
    return row


def gradebook(rows: list[dict[str, Any]]):
    """One row per submission, one column per exercise (``NN.name``), then status, errors and score."""
    import pandas as pd

    from .exercises import exercises_of

    records = []
    for row in rows:
        record = {"submission": row["submission"], "notebook": row["notebook"]}
        book = exercises_of(row["notebook"])
        for name in book:
            record[f"{row['notebook']}.{name}"] = row["verdicts"].get(name, "not graded")
        passed = sum(1 for name in book if row["verdicts"].get(name) == PASS)
        record.update(score=f"{passed}/{len(book)}", status=row["status"],
                      cells_with_errors=row["cells_with_errors"], seconds=row["seconds"])
        records.append(record)
    frame = pd.DataFrame(records)
    front = ["submission", "notebook", "score"]
    back = ["status", "cells_with_errors", "seconds"]
    middle = [c for c in frame.columns if c not in front + back]
    return frame[front + middle + back].fillna("")


def grade(submissions: list[Path], out: Path, *, timeout: int = 600, data: Path | None = None,
          notebook: str | None = None, profile: str = "smoke"):
    """Grade every submission into ``out``; returns the gradebook (also written as CSV and Markdown)."""
    from .utils import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(data) if data else out / "data"
    parameters = dict(profile=profile, data_dir=str(data.resolve()), figures_dir=str((out / "figures").resolve()),
                      results_dir="", deap_root="")
    rows = []
    for source in submissions:
        source = Path(source)
        try:
            number = notebook or notebook_number(source)
        except ValueError as err:
            rows.append({"submission": source.name, "notebook": "", "status": str(err), "seconds": 0.0,
                         "cells_with_errors": None, "verdicts": {}})
            continue
        log.info("grading %s (notebook %s)", source.name, number)
        row = run_submission(source, out, number, parameters, timeout)
        log.info("%s: %s, %s", source.name, row["status"],
                 ", ".join(f"{k} {v.split(':')[0]}" for k, v in row["verdicts"].items()) or "no verdicts")
        rows.append(row)
    frame = gradebook(rows)
    with atomic_path(out / "gradebook.csv") as tmp:
        frame.to_csv(tmp, index=False)
    with atomic_path(out / "gradebook.md") as tmp:
        Path(tmp).write_text(f"# Gradebook ({len(rows)} submissions, profile {profile}, {timeout} s each)\n\n"
                             + frame.to_markdown(index=False) + "\n", encoding="utf-8")
    return frame


def add_cli(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Run submitted course notebooks headless (fresh kernel each, a time limit each) and write "
                          "a gradebook of their exercises: OUT/gradebook.csv and OUT/gradebook.md.")
    parser.add_argument("notebooks", nargs="+", type=Path, help="submitted notebooks (NN_*.ipynb)")
    parser.add_argument("--out", type=Path, required=True, help="gradebook, executed copies, figures")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per notebook (default 600)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder shared by the submissions (default OUT/data; prepared once, smoke scale)")
    parser.add_argument("--notebook", default=None, help="which course notebook (NN) when the file names do not say")
    parser.add_argument("--profile", default="smoke", choices=("smoke", "cpu"), help="the notebooks' profile")

    def run(args: argparse.Namespace) -> int:
        frame = grade(args.notebooks, args.out, timeout=args.timeout, data=args.data, notebook=args.notebook,
                      profile=args.profile)
        print(frame.to_markdown(index=False))
        print(f"\nwrote {args.out / 'gradebook.csv'} and {args.out / 'gradebook.md'}")
        return 0

    parser.set_defaults(func=run)

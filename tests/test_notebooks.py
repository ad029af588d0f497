"""Smoke run of every numbered notebook with the tiny "smoke" profile (papermill).

Figures, data, runs and results go to a temporary folder, so the committed figures/ are
untouched. Marked ``notebook``: ``make test`` runs these after the unit tests, in file order
(the last test re-runs the results notebooks and checks that nothing trains again).
"""
import os
from pathlib import Path

import pytest

from msvssm.reproduce import main as reproduce_main
from msvssm.reproduce import run_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TRAINING_NOTEBOOKS = [nb for nb in NOTEBOOKS if nb.name[:2] in {"07", "08", "09", "10", "11"}]


@pytest.fixture(scope="session")
def smoke_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    return {"data_dir": str(root / "data"), "figures_dir": str(root / "figures"), "out": root / "executed",
            "results_dir": str(root / "results")}


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"
    assert [nb.name[:2] for nb in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))], "numbered without gaps"


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(notebook, smoke_dirs):
    params = dict(profile="smoke", data_dir=smoke_dirs["data_dir"], figures_dir=smoke_dirs["figures_dir"],
                  results_dir=smoke_dirs["results_dir"])
    executed = run_notebook(notebook, smoke_dirs["out"], params)
    assert executed.exists()
    declared = declared_figures(notebook)
    assert declared, "the notebook declares no figure"
    missing = [name for name in declared if not (Path(smoke_dirs["figures_dir"]) / f"{name}.png").exists()]
    assert not missing, f"figures declared but not written: {missing}"


def declared_figures(notebook: Path) -> list[str]:
    """The stable figure names a notebook saves: every quoted "NN_name" (its own number NN, no file
    extension) in its code cells, which is how the notebooks name figures for save_figure."""
    import re

    import nbformat

    source = "\n".join(c.source for c in nbformat.read(notebook, 4).cells if c.cell_type == "code")
    return sorted(set(re.findall(rf"[\"']({notebook.name[:2]}_[a-z0-9_]+)[\"']", source)))


def test_every_notebook_declares_figures_under_its_own_number():
    for nb in NOTEBOOKS:
        names = declared_figures(nb)
        assert names and all(n.startswith(nb.name[:2] + "_") for n in names), (nb.name, names)


@pytest.mark.notebook
def test_a_second_reproduction_trains_nothing_and_collects_every_result(smoke_dirs, tmp_path):
    """``make reproduce`` twice: the second call finds every run in the sweep cache (no run folder is
    added or rewritten) and joins what the notebooks recorded into results.md."""
    runs = Path(smoke_dirs["data_dir"]) / "runs"
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/metrics.json")}
    assert before, "the smoke notebooks trained no run"
    # the plan that make reproduce trains first is exactly the set of runs the notebooks read (no second list)
    from msvssm.data.prepare import faces_root
    from msvssm.profiles import get_profile
    from msvssm.train.plan import course_plan

    faces = faces_root(smoke_dirs["data_dir"], get_profile("smoke"))
    planned = {Path(cfg.out).name for _, _, cfg, _ in course_plan("smoke", faces, runs).runs()}
    assert planned == {p.parent.name for p in before}, "the plan and the notebooks' runs differ"
    out = tmp_path / "results.md"
    code = reproduce_main(["--profile", "smoke", "--data", smoke_dirs["data_dir"], "--figures", str(tmp_path / "figures"),
                           "--out", str(tmp_path / "executed"), "--results", str(out),
                           *map(str, TRAINING_NOTEBOOKS)])
    assert code == 0
    after = {p: p.stat().st_mtime_ns for p in runs.glob("*/metrics.json")}
    assert after == before, "a run was trained or re-evaluated on the second call"
    text = out.read_text()
    for nb in TRAINING_NOTEBOOKS:
        assert f"## {nb.name[:2]} " in text, f"{nb.name} recorded no result"
    assert "synthetic DEAP" in text and "nan" not in text.lower().split()
    # the smoke profile, as cpu: one grouped split each, and no augmentation arm (that needs the folds)
    assert "trial/subject one grouped split" in text and "MS-VSSM + paper augmentation" not in text


def test_a_failing_notebook_fails_the_reproduction_with_its_name(tmp_path, caplog):
    import nbformat

    bad = tmp_path / "99_broken.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("raise ValueError('on purpose')")])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, bad)
    os.environ.setdefault("MPLBACKEND", "Agg")
    code = reproduce_main(["--profile", "smoke", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                           "--results", str(tmp_path / "results.md"), "--figures", str(tmp_path / "fig"), str(bad)])
    assert code == 1
    assert "99_broken.ipynb failed" in caplog.text and "on purpose" in caplog.text
    assert not (tmp_path / "out" / "99_broken.ipynb").exists()


def check_site(smoke_dirs: dict, tmp_path: Path) -> None:
    """make html on the smoke reproduction: every page and internal link exists, nothing is fetched from the network,
    no injected-parameters cell or machine path, the maths is MathML, every image has alternative text."""
    import re

    from msvssm.site import build_site

    executed = sorted(smoke_dirs["out"].glob("*.ipynb"))
    assert len(executed) == len(NOTEBOOKS), "the smoke notebooks ran first"
    results_md = tmp_path / "results.md"
    from msvssm import results

    results.collect(smoke_dirs["results_dir"], results_md, profile="smoke", data="synthetic DEAP (tiny scale)")
    index = build_site(smoke_dirs["out"], tmp_path / "site", results_md, figures=smoke_dirs["figures_dir"])
    site = index.parent
    pages = {p.relative_to(site).as_posix(): p.read_text(encoding="utf-8") for p in site.rglob("*.html")}
    assert {"index.html", "results.html", "docs/notation.html", *(f"{nb.stem}.html" for nb in NOTEBOOKS)} <= set(pages)
    machine_paths = [str(REPO), smoke_dirs["data_dir"], smoke_dirs["figures_dir"], str(smoke_dirs["out"])]
    for name, text in pages.items():
        for href in re.findall(r'(?:href|src)="([^"#:]+)(?:#[^"]*)?"', text):  # relative links and images
            assert (site / name).parent.joinpath(href).exists(), f"{name} links to a missing {href}"
        remote = re.findall(r'<(?:script|link|img)[^>]*(?:src|href)=["\'](?:https?:)?//', text)
        assert not remote, f"{name} loads something from the network: {remote[:2]}"
        assert "mathjax" not in text.lower() and "require.min.js" not in text, name
        assert "injected-parameters" not in text and "Parameters injected by papermill" not in text, name
        for path in machine_paths:
            assert path not in text, f"{name} shows the machine path {path}"
        for img in re.findall(r"<img\b[^>]*>", text):
            assert re.search(r'\balt="[^"]+"', img), f"{name}: an image without alternative text"
        if name.startswith(tuple(nb.stem for nb in NOTEBOOKS)):
            assert 'href="index.html"' in text and '<nav class="toc">' in text, f"{name}: no navigation"
    assert "This page was executed with: <code>profile = &#x27;smoke&#x27;" in pages["02_selective_scan.html"], \
        "each page says which profile produced it (its own parameters cell shows the defaults)"
    assert "<math" in pages["02_selective_scan.html"] and "$$" not in pages["02_selective_scan.html"], \
        "the selective scan's equations are MathML, not raw LaTeX"
    assert 'href="03_ss2d.html"' in pages["02_selective_scan.html"] and 'href="01_data_pipeline.html"' in pages["02_selective_scan.html"]


@pytest.mark.notebook
def test_the_site_builds_offline_from_the_smoke_notebooks(smoke_dirs, tmp_path):
    check_site(smoke_dirs, tmp_path)


@pytest.mark.notebook
def test_notebook_10_cross_validates_when_asked(smoke_dirs, tmp_path):
    """The smoke and cpu profiles have one grouped split each; cpu-cv and gpu cross-validate. Notebook 10 with
    ``folds=2`` on the smoke data runs the cross-validated path (every crop tested once, the paper-augmentation row,
    the paired table over people); after the smoke notebooks (file order) it finds their frame runs and trains only
    the folds."""
    notebook = REPO / "notebooks" / "10_protocols.ipynb"
    results_dir = tmp_path / "results"
    params = dict(profile="smoke", data_dir=smoke_dirs["data_dir"], figures_dir=str(tmp_path / "figures"),
                  results_dir=str(results_dir), folds=2)
    run_notebook(notebook, tmp_path / "executed", params)
    runs = Path(smoke_dirs["data_dir"]) / "runs"
    assert len(list(runs.glob("*-trial-k2f*/metrics.json"))) == 2 * 3, "2 folds x (VSSM, MS-VSSM, + paper augmentation)"
    recorded = "\n".join(p.read_text() for p in results_dir.glob("10-*.md"))
    assert "2-fold cross-validated" in recorded and "MS-VSSM + paper augmentation" in recorded
    assert "every person tested once" in recorded

"""Every number the notebooks produce, gathered into one file: ``build/results.md``.

A notebook calls :func:`record` for each table or statement it reports; each call writes
one Markdown fragment ``RESULTS_DIR/<notebook>-<nn>-<slug>.md`` (atomically), with the data
it came from and the run folders it was computed from. ``make reproduce`` clears the
folder before the first notebook and calls :func:`collect` after the last, which joins
the fragments in notebook order under a header (date, profile, data, git commit).

    from msvssm import results
    results.record(results_dir, "08", "Table 3: ablation", table, data="synthetic DEAP",
                   runs=per_run["run"])
"""
from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from .utils import atomic_write_text


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "result"


def as_markdown(obj) -> str:
    """A DataFrame/Series as a Markdown table (floats with 4 significant digits); anything else as text.

    Missing values are blank cells, nested column labels are joined with " / ", and "|" inside
    labels or cells is escaped so that it cannot split a column.
    """
    if isinstance(obj, pd.Series):
        obj = obj.to_frame()
    if isinstance(obj, pd.DataFrame):
        obj = obj.copy()
        if isinstance(obj.columns, pd.MultiIndex):
            obj.columns = [" / ".join(map(str, c)) for c in obj.columns]
        obj.columns = [str(c).replace("|", "\\|") for c in obj.columns]
        index = obj.index.name is not None or not isinstance(obj.index, pd.RangeIndex)
        if index:
            obj.index = pd.Index([str(i).replace("|", "\\|") for i in obj.index], name=obj.index.name)
        obj = obj.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)
        obj = obj.astype(object).where(obj.notna(), None)  # blank cells, not "nan"
        return obj.to_markdown(index=index, floatfmt=".4g", missingval="")
    return str(obj)


def record(results_dir: str | os.PathLike | None, notebook: str, title: str, obj, *, data: str = "",
           runs: Iterable[str | os.PathLike] = (), note: str = "") -> Path | None:
    """Write one result fragment; returns its path (None when ``results_dir`` is empty: not collecting).

    ``notebook`` is the two-digit number ("08"); ``data`` says what the numbers were measured
    on (always say "synthetic DEAP" when they were); ``runs`` are the run folders behind them.
    Recording the same title again replaces the fragment, so re-running a notebook is safe.
    """
    if not results_dir:
        return None
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    slug = _slug(title)
    existing = sorted(folder.glob(f"{notebook}-*-{slug}.md"))
    if existing:
        path = existing[0]
    else:
        count = len(list(folder.glob(f"{notebook}-*.md")))
        path = folder / f"{notebook}-{count:02d}-{slug}.md"
    parts = [f"### {title}", ""]
    if data:
        parts += [f"*Data:* {data}", ""]
    parts += [as_markdown(obj), ""]
    if note:
        parts += [note, ""]
    runs = sorted({Path(r).name for r in runs})
    if runs:
        parts += ["<details><summary>runs (" + str(len(runs)) + ")</summary>", "",
                  ", ".join(f"`{r}`" for r in runs), "", "</details>", ""]
    atomic_write_text(path, "\n".join(parts))
    return path


NOTEBOOK_TITLES = {
    "00": "00 Start here", "01": "01 Data preprocessing", "02": "02 The selective scan", "03": "03 SS2D",
    "04": "04 SE-SS2D", "05": "05 Layer Scale", "06": "06 DSPP", "07": "07 Training MS-VSSM",
    "08": "08 Ablation (Table 3)", "09": "09 Baselines (Tables 2 and 4)", "10": "10 Evaluation protocols",
    "11": "11 Looking inside",
}


def collect(results_dir: str | os.PathLike, out: str | os.PathLike, *, profile: str, data: str,
            commit: str = "", notebooks: Iterable[str] = ()) -> Path:
    """Join the fragments into ``out`` in notebook order, under a header; returns ``out``."""
    folder = Path(results_dir)
    fragments = sorted(folder.glob("[0-9][0-9]-*.md"))
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = ["# Results of the last reproduction", "",
             f"Written by `make reproduce` on {when}: profile `{profile}`, data: {data}"
             + (f", git commit `{commit}`" if commit else "") + ".",
             "Every table below was computed by the notebook named above it, on that data; the run folders"
             " behind each table are listed under it. Runs live in the data folder's `runs/` (the sweep cache).",
             ""]
    if notebooks:
        notebooks = list(notebooks)
        earlier = sorted({f.name[:2] for f in fragments} - {nb[:2] for nb in notebooks})
        lines += ["Notebooks executed: " + ", ".join(notebooks) + "."
                  + (f" The sections of notebooks {', '.join(earlier)} are kept from an earlier call into the same "
                     "build folder (each notebook rewrites only its own)." if earlier else ""), ""]
    current = None
    for path in fragments:
        nb = path.name[:2]
        if nb != current:
            lines += [f"## {NOTEBOOK_TITLES.get(nb, nb)}", ""]
            current = nb
        lines += [path.read_text(encoding="utf-8").rstrip(), ""]
    if not fragments:
        lines += ["(no notebook recorded a result)", ""]
    atomic_write_text(out, "\n".join(lines))
    return Path(out)


# ----------------------------------------------------------------------------- the README's Results, generated

README_BEGIN = "<!-- results:begin (generated from docs/results_cpu.md by `make readme-results`; do not edit by hand) -->"
README_END = "<!-- results:end -->"
# Notebook 10's tables (the cpu-cv block shows these alone).
PROTOCOL_TABLES = (
    "Protocols: test accuracy under",
    "Grouped splits (",
    "Grouped splits: the checkpoint each run selected",
    "MS-VSSM test accuracy (frame: first seed; trial, subject:",
)
# The tables the README shows, by the start of their title in results.md, in this order.
README_TABLES = (
    "Table 3: ablation",
    "Ablation: each step paired over seeds",
    "Seeds needed to see the paper's steps",
    "Chaos: the same MS-VSSM",
    "Tables 2 and 4: baselines",
    "MS-VSSM against each baseline, paired",
    *PROTOCOL_TABLES,
    "Calibration of the test predictions",
    "Saliency sanity check",
    "Error against expressivity",
)
# The cross-validated reproduction (profile cpu-cv): notebook 10's tables, in a block of their own.
README_CV_BEGIN = ("<!-- results-cv:begin (generated from docs/results_cpu_cv.md by `make readme-results`; do not "
                   "edit by hand) -->")
README_CV_END = "<!-- results-cv:end -->"
README_CV_TABLES = PROTOCOL_TABLES
# profile -> (the committed copy of its results.md, the README block's markers, its tables)
README_BLOCKS = {"cpu": ("docs/results_cpu.md", README_BEGIN, README_END, README_TABLES),
                 "cpu-cv": ("docs/results_cpu_cv.md", README_CV_BEGIN, README_CV_END, README_CV_TABLES)}


def read_sections(results_md: str | os.PathLike) -> tuple[str, dict[str, str]]:
    """(the header line saying what produced it, {title: its section without the runs list}) of a results.md."""
    text = Path(results_md).read_text(encoding="utf-8")
    header = next((line for line in text.splitlines() if line.startswith("Written by `make reproduce`")), "")
    sections = {}
    for block in re.split(r"^### ", text, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        body = re.split(r"^(<details>|## )", body, flags=re.M)[0]  # without the runs list and the next notebook
        sections[title.strip()] = body.strip()
    return header, sections


def results_profile(results_md: str | os.PathLike) -> str:
    """The profile a results.md was written by (its header: "profile `cpu`"), or "" when it does not say."""
    found = re.search(r"profile `([^`]+)`", read_sections(results_md)[0])
    return found.group(1) if found else ""


def readme_block(results_md: str | os.PathLike, profile: str = "cpu") -> str:
    """The README's Results block of ``profile`` (cpu: every table; cpu-cv: notebook 10's), copied from
    ``results_md`` (a reproduction's results.md) with what produced it."""
    _, begin, end, tables = README_BLOCKS[profile]
    header, sections = read_sections(results_md)
    lines = [begin, "", f"*{header.replace('Written by', 'Copied from the results.md written by')}*", ""]
    for start in tables:
        title = next((t for t in sections if t.startswith(start)), None)
        if title is None:
            raise KeyError(f"{results_md} has no table titled {start!r}...: was it made by an older reproduction?")
        lines += [f"**{title}**", "", sections[title], ""]
    lines.append(end)
    return "\n".join(lines)


def update_readme(readme: str | os.PathLike, results_md: str | os.PathLike, profile: str = "cpu") -> bool:
    """Replace the generated block of ``profile`` in ``readme`` with :func:`readme_block` of ``results_md``; True if
    it changed."""
    _, begin, end, _ = README_BLOCKS[profile]
    text = Path(readme).read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise ValueError(f"{readme} has no generated Results block ({begin} ... {end})")
    before, rest = text.split(begin, 1)
    _, after = rest.split(end, 1)
    new = before + readme_block(results_md, profile) + after
    if new != text:
        atomic_write_text(readme, new)
    return new != text


def keep_reproduction(results_md: str | os.PathLike, repo: str | os.PathLike) -> Path:
    """``make readme-results``: copy a cpu or cpu-cv reproduction's results.md to its committed place
    (docs/results_cpu.md, docs/results_cpu_cv.md) and regenerate its README block; refuses another profile's."""
    profile = results_profile(results_md)
    if profile not in README_BLOCKS:
        raise ValueError(f"{results_md} was written by profile {profile or '(none)'!r}: the README shows the "
                         f"reproductions of {sorted(README_BLOCKS)} only")
    readme_block(results_md, profile)  # raises on a partial results.md (NOTEBOOKS=...) before anything is written
    kept = Path(repo) / README_BLOCKS[profile][0]
    atomic_write_text(kept, Path(results_md).read_text(encoding="utf-8"))
    update_readme(Path(repo) / "README.md", kept, profile)
    return kept


if __name__ == "__main__":  # python -m msvssm.results build/results.md [repo]: make readme-results
    import sys

    kept = keep_reproduction(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ".")
    print(f"{sys.argv[1]} kept as {kept}; the README's block of profile {results_profile(kept)} regenerated from it")

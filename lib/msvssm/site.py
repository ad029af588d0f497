"""``make html``: the executed notebooks as a website that works offline, in ``build/site/``.

    python -m msvssm.site [--notebooks build/notebooks] [--out build/site] [--results build/results.md]

Built with nbconvert (the lab template) and a few steps around it, so that the pages read well opened
straight from the disk, without a network:

* **maths rendered at build time**: every ``$...$`` and ``$$...$$`` of the markdown cells becomes MathML
  (latex2mathml), which browsers draw natively; the template's MathJax and require.js tags are removed,
  and no page loads a script, style or font from anywhere;
* **clean pages**: papermill's injected-parameters cell is removed (the notebook's own parameters cell
  stays), the machine's paths in outputs are replaced by the names of what they are (``data/``,
  ``figures/``, ...), stderr (log lines, progress bars) and widget outputs are dropped, and every output
  image gets alternative text: its figure's name and the section it belongs to;
* **a site**: an index (the route through the course from the README's "Start here" table, the figure
  gallery), every notebook as a page with previous / next links and a table of contents of its
  sections, and the results page from ``build/results.md``.
"""
from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
from pathlib import Path

from .utils import atomic_write_text, get_logger

log = get_logger("site")
REPO = Path(__file__).resolve().parents[2]
PATH_PARAMETERS = {"data_dir": "data", "figures_dir": "figures", "results_dir": "build/results", "runs_dir": "data/runs",
                   "deap_root": "DEAP"}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1b1b1b; }
nav.site { background: #f3f4f6; border-bottom: 1px solid #d1d5db; padding: 0.5em 1.2em; font-size: 0.95em; }
nav.site a { margin-right: 1.2em; }
nav.toc { border: 1px solid #d1d5db; background: #fafafa; padding: 0.6em 1.2em; margin: 1em 1.2em; font-size: 0.9em; }
nav.toc ul { margin: 0.3em 0; padding-left: 1.4em; list-style: none; }
main.page { max-width: 1100px; margin: 0 auto; padding: 0 1.2em 3em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #d1d5db; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
figure.gallery { display: inline-block; width: 31%; margin: 0.5em 1%; vertical-align: top; font-size: 0.85em; }
figure.gallery img { width: 100%; border: 1px solid #e5e7eb; }
math[display="block"] { margin: 0.6em 0; }
p.ran-with { margin: 0.6em 1.2em; font-size: 0.9em; color: #374151; }
"""


# ----------------------------------------------------------------------------- maths


_MATH = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<![\\$])\$(?!\s)([^$\n]+?)(?<![\s\\])\$(?!\$)", re.S)
_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)


def latex_to_mathml(source: str, display: bool) -> str:
    """MathML for one LaTeX formula (latex2mathml); a formula it cannot read stays as its source, marked."""
    from latex2mathml.converter import convert

    try:
        return convert(source.strip(), display="block" if display else "inline")
    except Exception as err:  # noqa: BLE001 - one unreadable formula must not stop the site
        log.warning("formula left as text (%s): %s", err, source.strip()[:80])
        return f'<code class="latex">{html.escape(source)}</code>'


def markdown_math_to_mathml(text: str) -> str:
    """Replace every ``$$...$$`` and ``$...$`` outside code by MathML (raw HTML the markdown renderer keeps)."""
    parts = _CODE.split(text)
    for i in range(0, len(parts), 2):  # even parts are outside code spans and fences
        parts[i] = _MATH.sub(lambda m: latex_to_mathml(m.group(1), True) if m.group(1) is not None
                             else latex_to_mathml(m.group(2), False), parts[i])
    return "".join(parts)


# ----------------------------------------------------------------------------- one notebook


def _scrub_paths(text: str, replacements: dict[str, str]) -> str:
    for path, name in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(path, name)
    return text


def clean_notebook(nb) -> tuple[object, list[str], dict[str, str]]:
    """Remove papermill's injected-parameters cell, machine paths, stderr and widget outputs; give every output
    image alternative text. Returns the notebook, the alt texts of its output images in order, and the values
    papermill injected (paths replaced by the names of what they are), for the page's banner."""
    import ast

    replacements = {str(REPO) + "/": "", str(REPO): "."}
    injected: dict[str, str] = {}
    kept = []
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            for node in ast.parse(cell.source).body:  # the values papermill injected: the run's profile, machine paths
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                    name, value = node.targets[0].id, node.value.value
                    if name in PATH_PARAMETERS and isinstance(value, str) and value.startswith("/"):
                        replacements[value.rstrip("/")] = PATH_PARAMETERS[name]
                        replacements[str(Path(value).resolve())] = PATH_PARAMETERS[name]
                        value = PATH_PARAMETERS[name]
                    injected[name] = repr(value)
            continue
        kept.append(cell)
    nb.cells = kept
    alts: list[str] = []
    section = nb.metadata.get("title", "")
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = re.findall(r"^#{1,4}\s+(.+)$", cell.source, flags=re.M)
            if headings:
                section = headings[-1].strip()
            continue
        if cell.cell_type != "code":
            continue
        figures = re.findall(r"save_figure\([^)]*?[\"'](\d\d_[a-z0-9_]+)[\"']", cell.source)
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                continue  # log lines and progress bars: noise on a page
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                continue
            if out.get("output_type") == "stream":
                out["text"] = _scrub_paths(out["text"], replacements)
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in data:
                    value = data[mime] if isinstance(data[mime], str) else "".join(data[mime])
                    data[mime] = _scrub_paths(value, replacements)
            if "image/png" in data:
                name = figures.pop(0) if figures else ""
                alt = f"Figure {name}: {section}" if name else f"Output figure: {section}"
                alts.append(alt)
            outputs.append(out)
        cell.outputs = outputs
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = markdown_math_to_mathml(cell.source)
    return nb, alts, injected


_REMOTE_TAG = re.compile(r"<script[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>|<link[^>]*\bhref=[\"']https?://[^>]*>", re.I)
_MATHJAX_BLOCK = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)


def notebook_page(path: Path, nav: dict[str, str], route: list[tuple[str, str]]) -> str:
    """One notebook as a self-contained HTML page: cleaned, exported, with navigation and a table of contents."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    nb, alts, injected = clean_notebook(nb)
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    body = _MATHJAX_BLOCK.sub("", body)
    body = _REMOTE_TAG.sub("", body)
    body = re.sub(r"<script[^>]*require[^>]*>\s*</script>", "", body)
    images = iter(alts)  # nbconvert's template writes no alt: each output image in turn gets its own
    body = re.sub(r'<img src="data:image/png', lambda m: f'<img alt="{html.escape(next(images, "Output figure"))}" '
                  'src="data:image/png', body)
    headings = re.findall(r'<h2 id="([^"]+)">(.*?)<a class="anchor-link"', body)
    toc = "".join(f'<li><a href="#{h_id}">{re.sub(r"<[^>]+>", "", text)}</a></li>' for h_id, text in headings)
    bar = _nav_bar(nav, route)
    head_extra = f"<style>{CSS}</style>"
    body = body.replace("</head>", head_extra + "</head>", 1)
    contents = f'<nav class="toc"><strong>Contents</strong><ul>{toc}</ul></nav>' if toc else ""
    ran_with = (", ".join(f"{k} = {html.escape(v)}" for k, v in injected.items()) if injected
                else "the notebook's own parameters (not run by papermill)")
    banner = f'<p class="ran-with">This page was executed with: <code>{ran_with}</code>.</p>'
    body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + bar + banner + contents, body, count=1)
    body = body.replace("</body>", bar + "</body>", 1)
    body = re.sub(r'href="(?:\.\./)?(\d\d_[a-z0-9_]+)\.ipynb', r'href="\1.html', body)  # links between notebooks
    body = re.sub(r'href="\.\./docs/([A-Za-z0-9_\-]+)\.md', r'href="docs/\1.html', body)  # the docs, rendered beside
    return body


def docs_pages(pages: dict[str, str], out: Path, docs: Path = REPO / "docs") -> None:
    """Render every ``docs/*.md`` the pages link to as ``out/docs/<name>.html`` (a link between docs is rewritten too)."""
    wanted = set()
    for text in pages.values():
        wanted |= set(re.findall(r'href="docs/([A-Za-z0-9_\-]+)\.html', text))
    done: set[str] = set()
    while wanted - done:
        name = sorted(wanted - done)[0]
        done.add(name)
        source = docs / f"{name}.md"
        if not source.exists():
            raise FileNotFoundError(f"a page links to docs/{name}.md, which does not exist")
        body = _markdown_to_html(markdown_math_to_mathml(source.read_text(encoding="utf-8")))
        body = re.sub(r'href="([A-Za-z0-9_\-]+)\.md', r'href="\1.html', body)
        wanted |= set(re.findall(r'href="([A-Za-z0-9_\-]+)\.html', body))
        wanted = {w for w in wanted if (docs / f"{w}.md").exists()} | {name}
        (out / "docs").mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "docs" / f"{name}.html",
                          f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(name)}</title>"
                          f"<style>{CSS}</style></head><body><nav class='site'><a href='../index.html'>Course index</a>"
                          f"</nav><main class='page'>{body}</main></body></html>")


def _nav_bar(nav: dict[str, str], route: list[tuple[str, str]]) -> str:
    links = ['<a href="index.html">Course index</a>']
    if nav.get("prev"):
        links.append(f'<a href="{nav["prev"]}">&larr; previous: {html.escape(dict(route).get(nav["prev"], nav["prev"]))}</a>')
    if nav.get("next"):
        links.append(f'<a href="{nav["next"]}">next: {html.escape(dict(route).get(nav["next"], nav["next"]))} &rarr;</a>')
    links.append('<a href="results.html">Results</a>')
    return '<nav class="site">' + " ".join(links) + "</nav>"


# ----------------------------------------------------------------------------- index and results


def _markdown_to_html(text: str) -> str:
    import mistune

    return mistune.html(text)


def start_here_table(readme: Path) -> str:
    """The README's "Start here" route table (notebook, times, what it teaches), notebook names linked to pages."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("## Start here", 1)[1].split("\n## ", 1)[0] if "## Start here" in text else ""
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    table = re.sub(r"`(\d\d_[a-z0-9_]+)`", lambda m: f"[{m.group(1)}]({m.group(1)}.html)", table)
    return table


def build_site(notebooks_dir: str | Path, out: str | Path, results_md: str | Path | None = None,
               readme: str | Path = REPO / "README.md", figures: str | Path = REPO / "figures") -> Path:
    """Write the site into ``out``; returns its index page."""
    notebooks = sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no executed notebooks in {notebooks_dir}: run make reproduce first")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    route = [(f"{nb.stem}.html", nb.stem) for nb in notebooks]
    pages = {}
    for i, nb in enumerate(notebooks):
        nav = {"prev": route[i - 1][0] if i else "", "next": route[i + 1][0] if i + 1 < len(route) else ""}
        pages[nb.stem] = notebook_page(nb, nav, route)
        atomic_write_text(out / f"{nb.stem}.html", pages[nb.stem])
        log.info("page %s", nb.stem)
    docs_pages(pages, out)
    gallery_dir = out / "figures"
    gallery_dir.mkdir(exist_ok=True)
    gallery = []
    for png in sorted(Path(figures).glob("[0-9][0-9]_*.png")):
        shutil.copy2(png, gallery_dir / png.name)
        page = next((href for href, stem in route if stem[:2] == png.name[:2]), "")
        gallery.append(f'<figure class="gallery"><a href="{page}"><img src="figures/{png.name}" '
                       f'alt="Figure {png.stem} (notebook {png.name[:2]})"></a><figcaption>{png.stem}</figcaption></figure>')
    links = "".join(f'<li><a href="{href}">{html.escape(stem)}</a></li>' for href, stem in route)
    route_table = start_here_table(Path(readme)) if Path(readme).exists() else ""
    index = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>MS-VSSM: a course in visual state "
             f"space models</title><style>{CSS}</style></head><body>{_nav_bar({'next': route[0][0]}, route)}"
             "<main class='page'><h1>MS-VSSM: a course in visual state space models</h1>"
             "<p>The executed notebooks of the course, readable without running them and without a network. "
             "Every number on these pages was produced by the run that built them (see each page's data notes: "
             "by default the <strong>synthetic DEAP</strong>).</p>"
             f"<h2 id='route'>The route</h2>{_markdown_to_html(route_table) if route_table else ''}"
             f"<ol>{links}</ol><p><a href='results.html'>All recorded results</a></p>"
             f"<h2 id='gallery'>Figures</h2>{''.join(gallery)}</main></body></html>")
    atomic_write_text(out / "index.html", index)
    results_html = (_markdown_to_html(markdown_math_to_mathml(Path(results_md).read_text(encoding="utf-8")))
                    if results_md and Path(results_md).exists() else "<p>No results.md: run make reproduce.</p>")
    atomic_write_text(out / "results.html",
                      f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Results</title>"
                      f"<style>{CSS}</style></head><body>{_nav_bar({}, route)}<main class='page'>{results_html}"
                      "</main></body></html>")
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    from .utils import setup_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=Path, default=REPO / "build" / "notebooks")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "site")
    parser.add_argument("--results", type=Path, default=REPO / "build" / "results.md")
    parser.add_argument("--figures", type=Path, default=REPO / "figures")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        index = build_site(args.notebooks, args.out, args.results, figures=args.figures)
    except FileNotFoundError as err:
        print(f"msvssm.site: {err}", file=sys.stderr)
        return 1
    print(f"site: {index} (open it in a browser; it needs no network)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the numbered notebooks headlessly with papermill (``make reproduce``).

    python -m msvssm.reproduce --profile cpu [--data data] [--out build/notebooks] [notebooks ...]

Prepares the dataset of the profile first (resumable), then executes every
notebook in order with the parameters ``profile``, ``data_dir``, ``figures_dir``,
``results_dir`` and ``deap_root``. Executed copies go to ``--out`` (written
atomically, so a killed run never leaves a half-written notebook); figures go to
``figures/``; the numbers each notebook records (:mod:`msvssm.results`) are joined
into ``build/results.md``. Training runs are cached in the data folder's ``runs/``
(the sweep cache), so a second reproduction trains nothing. A failing notebook stops
the command with its name and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .optional import require
from .utils import atomic_path, get_logger, git_commit, setup_logging

log = get_logger("reproduce")
REPO = Path(__file__).resolve().parents[2]


def run_notebook(source: Path, out_dir: Path, parameters: dict, cwd: Path | None = None) -> Path:
    """Execute ``source`` with papermill into ``out_dir/source.name``; returns that path."""
    pm = require("papermill", "notebooks", "running the notebooks")

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / source.name
    with atomic_path(target) as tmp:
        pm.execute_notebook(
            str(source),
            str(tmp),
            parameters=parameters,
            cwd=str(cwd or source.parent),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
        )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/[0-9][0-9]_*.ipynb")
    parser.add_argument("--profile", default="cpu", help="smoke, cpu or gpu")
    parser.add_argument("--data", type=Path, default=REPO / "data", help="data folder")
    parser.add_argument("--figures", type=Path, default=REPO / "figures", help="figures folder")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "notebooks", help="executed notebooks")
    parser.add_argument("--deap-root", type=Path, default=None, help="the real DEAP instead of synthetic data")
    parser.add_argument("--results", type=Path, default=REPO / "build" / "results.md",
                        help="every recorded number, joined (fragments in a folder beside it)")
    args = parser.parse_args(argv)
    setup_logging()

    from .data.prepare import prepare_faces
    from .profiles import get_profile

    profile = get_profile(args.profile)
    notebooks = args.notebooks or sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        log.error("no notebooks found")
        return 1
    log.info("profile %s: preparing data in %s", profile.name, args.data)
    prepare_faces(args.data, profile, deap_root=args.deap_root)
    results_dir = args.results.with_suffix("")  # build/results/: one fragment per recorded result
    params = dict(
        profile=profile.name,
        data_dir=str(args.data.resolve()),
        figures_dir=str(args.figures.resolve()),
        results_dir=str(results_dir.resolve()),
        deap_root=str(args.deap_root.resolve()) if args.deap_root else "",
    )
    from . import results

    for nb in notebooks:  # fragments of the notebooks about to run are rewritten by them
        for old in results_dir.glob(f"{nb.name[:2]}-*.md"):
            old.unlink()
    t_all = time.perf_counter()
    for nb in notebooks:
        t0 = time.perf_counter()
        log.info("running %s", nb.name)
        try:
            target = run_notebook(nb.resolve(), args.out, params)
        except Exception as err:  # papermill's error names the cell; say which notebook it was
            log.error("notebook %s failed: %s", nb.name, str(err).strip().splitlines()[-1] if str(err).strip() else err)
            log.error("the partly executed copy is not kept; run it alone with: python -m msvssm.reproduce "
                      "--profile %s %s", profile.name, nb)
            return 1
        log.info("%s done in %.0f s -> %s", nb.name, time.perf_counter() - t0, target)
    data_label = f"real DEAP at {args.deap_root}" if args.deap_root else f"synthetic DEAP ({profile.synth_scale} scale)"
    out = results.collect(results_dir, args.results, profile=profile.name, data=data_label, commit=git_commit(short=True),
                          notebooks=[nb.stem for nb in notebooks])
    log.info("all %d notebooks ran in %.1f min; results in %s", len(notebooks), (time.perf_counter() - t_all) / 60, out)
    log.info("figures in %s", args.figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the numbered notebooks headlessly with papermill (``make reproduce``).

    python -m msvssm.reproduce --profile cpu [--data data] [--out build/notebooks] [notebooks ...]

Prepares the dataset of the profile first (resumable), then executes every
notebook in order with the parameters ``profile``, ``data_dir`` and
``figures_dir``. Executed copies go to ``--out`` (written atomically, so a
killed run never leaves a half-written notebook); figures go to ``figures/``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .utils import atomic_path, get_logger, setup_logging

log = get_logger("reproduce")
REPO = Path(__file__).resolve().parents[2]


def run_notebook(source: Path, out_dir: Path, parameters: dict, cwd: Path | None = None) -> Path:
    """Execute ``source`` with papermill into ``out_dir/source.name``; returns that path."""
    import papermill as pm

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
    params = dict(
        profile=profile.name,
        data_dir=str(args.data.resolve()),
        figures_dir=str(args.figures.resolve()),
        deap_root=str(args.deap_root.resolve()) if args.deap_root else "",
    )
    for nb in notebooks:
        t0 = time.perf_counter()
        log.info("running %s", nb.name)
        target = run_notebook(nb.resolve(), args.out, params)
        log.info("%s done in %.0f s -> %s", nb.name, time.perf_counter() - t0, target)
    log.info("figures in %s", args.figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

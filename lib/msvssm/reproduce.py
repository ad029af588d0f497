"""Run the numbered notebooks headlessly with papermill (``make reproduce``).

    python -m msvssm.reproduce --profile cpu [--data data] [--out build/notebooks] [notebooks ...]
    python -m msvssm.reproduce --profile gpu --dry-run [--device cpu]   # check before a week of GPU time

Prepares the dataset of the profile first (resumable), trains every run of the course's
plan (:mod:`msvssm.train.plan`: the runs notebooks 03-11 read; the profile's ``jobs`` at once,
or ``--jobs``), then executes every notebook in order with the parameters ``profile``, ``data_dir``, ``figures_dir``,
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
    parser.add_argument("--profile", default="cpu", help="smoke, cpu, cpu-cv or gpu")
    parser.add_argument("--data", type=Path, default=REPO / "data", help="data folder")
    parser.add_argument("--figures", type=Path, default=REPO / "figures", help="figures folder")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "notebooks", help="executed notebooks")
    parser.add_argument("--deap-root", type=Path, default=None, help="the real DEAP instead of synthetic data")
    parser.add_argument("--results", type=Path, default=REPO / "build" / "results.md",
                        help="every recorded number, joined (fragments in a folder beside it)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="training runs at once before the notebooks (default: the profile's: smoke 1, cpu 2, "
                             "gpu one per GPU); 0: train none first (the notebooks train what they need)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the environment and dry-run the profile's training configuration "
                             "(msvssm.train.dry_run) instead of running the notebooks")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="with --dry-run: the device (default: the profile's)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="with --dry-run: override a training config field, as msvssm train --set")
    args = parser.parse_args(argv)
    setup_logging()

    from .data.prepare import prepare_faces
    from .profiles import get_profile

    profile = get_profile(args.profile)
    device = args.device or profile.device
    if device == "cuda":
        problem = gpu_environment_problem()
        if problem:
            log.error("profile %s needs a working GPU environment: %s", profile.name, problem)
            return 1
    if args.dry_run:
        return dry_run_profile(profile, args, device)
    notebooks = args.notebooks or sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        log.error("no notebooks found")
        return 1
    log.info("profile %s: preparing data in %s", profile.name, args.data)
    faces = prepare_faces(args.data, profile, deap_root=args.deap_root)
    from .train.plan import NOTEBOOK_PARTS

    parts = sorted({part for nb in notebooks for part in NOTEBOOK_PARTS.get(nb.name[:2], ())})
    if args.jobs != 0 and parts:
        failed = train_plan(profile.name, faces, Path(args.data) / "runs", args.jobs, parts)
        if failed:
            return 1
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


def train_plan(profile: str, faces: Path, runs_root: Path, jobs: int | None, parts=None) -> int:
    """Train the course plan's missing runs (of ``parts``: those the notebooks about to run read), ``jobs`` at once
    (None: the profile's); returns how many failed."""
    from .train.plan import course_plan, default_jobs
    from .train.sweep import SweepError

    jobs = default_jobs(profile) if jobs is None else jobs
    t0 = time.perf_counter()
    try:
        course_plan(profile, faces, runs_root).train(jobs=jobs, parts=parts)
    except SweepError as err:
        log.error("training the plan: %s", err)
        log.error("each failed run's log is in %s; the notebooks did not run", runs_root / "logs")
        return len(err.failed)
    log.info("the plan's runs are trained (%.1f min)", (time.perf_counter() - t0) / 60)
    return 0


def gpu_environment_problem() -> str:
    """Why this Python cannot run the gpu profile as intended ("" when it can): CUDA usable, and the
    ``cuda`` scan backend (mamba-ssm's kernel) answering a real call, unless the backend was chosen
    explicitly with $MSVSSM_SCAN_BACKEND. Weeks of GPU time must never run on a fallback by accident."""
    import os

    import torch

    from .ops.registry import ENV_VAR, get_backend
    from .train.run import cuda_unusable_reason

    if not torch.cuda.is_available():
        return cuda_unusable_reason() + " (a dry run of the configuration on the CPU: add --device cpu)"
    if os.environ.get(ENV_VAR):
        log.warning("scan backend chosen by $%s=%s, not checked here", ENV_VAR, os.environ[ENV_VAR])
        return ""
    cuda = get_backend("cuda")
    if not cuda.is_available():
        return (f"the cuda scan backend is not usable: {cuda.why_unavailable()}. Use the GPU environment of the "
                "README (make reproduce PROFILE=gpu builds .venv-gpu with the gpu extra; or pass "
                "GPU_PYTHON=/path/to/env/bin/python), or choose the pure-PyTorch scan on purpose with "
                f"{ENV_VAR}=chunked (several times slower)")
    return ""


def dry_run_profile(profile, args, device: str) -> int:
    """The profile's training configuration for two steps on small data of the profile's crop size.

    Without a DEAP root the data is the smoke-scale synthetic DEAP, cropped at the profile's size
    (seconds to make, where the DEAP-scale data takes half an hour): the dry run checks that the
    configuration runs and how fast, not what it learns."""
    from dataclasses import replace

    from .data.prepare import prepare_faces
    from .profiles import get_profile
    from .train import TrainConfig
    from .train.dry_run import dry_run, format_report

    data_profile = profile if args.deap_root else replace(get_profile("smoke"), crop_size=profile.crop_size)
    faces = prepare_faces(args.data, data_profile, deap_root=args.deap_root)
    cfg = TrainConfig.from_profile(profile.train_profile, data=str(faces), device=device).with_overrides(args.assignments)
    report = dry_run(cfg)
    print(format_report(report))
    return 0 if report["checkpoint_round_trip"] else 1


if __name__ == "__main__":
    sys.exit(main())

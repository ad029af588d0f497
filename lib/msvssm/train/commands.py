"""``msvssm train``, ``evaluate``, ``sweep`` and ``plan``: thin wrappers over the Python API."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_train(parser: argparse.ArgumentParser) -> None:
    parser.description = "Train a model on preprocessed faces (a validated config; resumable)."
    parser.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"), help="starting defaults")
    parser.add_argument("--data", required=True, help="preprocessed faces folder (manifest.csv) or an ImageFolder")
    parser.add_argument("--out", help="run folder (not needed with --dry-run)")
    parser.add_argument("--model", help="e.g. msvssm_nano, vssm_nano (msvssm info lists them)")
    parser.add_argument("--split", choices=("frame", "trial", "subject"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--config", help="a config.json to start from instead of the profile")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after its last epoch")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set lr=2e-3 --set ema=true (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--dry-run", action="store_true",
                        help="build the whole configuration, train 2 steps, score 1 validation batch, save and "
                             "restore a checkpoint, report speed and memory; writes no run (msvssm.train.dry_run)")

    def run(args: argparse.Namespace) -> int:
        from .config import ConfigError, TrainConfig
        from .run import train

        cfg = TrainConfig.load(args.config) if args.config else TrainConfig.from_profile(args.profile)
        direct = {k: getattr(args, k) for k in ("model", "split", "seed") if getattr(args, k) is not None}
        cfg = cfg.replace(data=args.data, out=args.out or "", **direct).with_overrides(args.assignments)
        if args.dry_run:
            from .dry_run import dry_run, format_report

            report = dry_run(cfg)
            print(format_report(report))
            return 0 if report["checkpoint_round_trip"] else 1
        if not args.out:
            raise ConfigError("--out is required (the run folder), except with --dry-run")
        out = train(cfg, resume=args.resume, progress=not args.no_progress)
        metrics = json.loads((Path(out) / "metrics.json").read_text(encoding="utf-8"))
        print(f"{out}: test accuracy {metrics['accuracy']:.4f}, weighted F1 {metrics['weighted_f1']:.4f} "
              f"({'synthetic data' if metrics.get('synthetic') else 'data: ' + cfg.data})")
        return 0

    parser.set_defaults(func=run)


def add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.description = "Score a run's best checkpoint on one split: metrics JSON, confusion and curves."
    parser.add_argument("run", help="run folder (config.json + best.pt)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where to score (auto: the GPU when torch sees one, else the CPU)")

    def run(args: argparse.Namespace) -> int:
        import torch

        from .run import RunError, cuda_unusable_reason, evaluate_run

        if args.device == "cuda" and not torch.cuda.is_available():
            raise RunError(f"--device cuda asked for, but {cuda_unusable_reason()}; score on the CPU with --device cpu")
        device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
        m = evaluate_run(args.run, split=args.split, device=device)
        print(f"scored on {device}")
        print(f"{args.run} [{args.split}]: accuracy {m['accuracy']:.4f}, weighted F1 {m['weighted_f1']:.4f}, n={m['n']}")
        for name, c in m["per_class"].items():
            print(f"  {name}: precision {c['precision']:.3f} recall {c['recall']:.3f} f1 {c['f1']:.3f} ({c['support']})")
        return 0

    parser.set_defaults(func=run)


def add_sweep(parser: argparse.ArgumentParser) -> None:
    parser.description = "Train models x seeds with shared settings; reuse finished runs; write a results table."
    parser.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    parser.add_argument("--data", required=True)
    parser.add_argument("--root", required=True, help="folder of the runs (the cache)")
    parser.add_argument("--models", nargs="+", required=True, help="model names, one row each")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--split", default="frame", choices=("frame", "trial", "subject"))
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--table", help="write the table to TABLE.csv / TABLE.md (default: ROOT/results)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once, each in its own process (cores split between them, one GPU "
                             "each); a failed run does not stop the others; exit status: the number that failed")
    _add_launcher_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        from .config import TrainConfig
        from .sweep import Sweep, format_mean_std

        base = TrainConfig.from_profile(args.profile).replace(data=args.data, split=args.split)
        base = base.with_overrides(args.assignments)
        sweep = Sweep(args.root, base)
        for model in args.models:
            sweep.add(model, model=model)
        from .sweep import SweepError

        failed = 0
        try:
            launcher = None if args.launcher == "process" else _launcher(args, max_parallel=args.jobs)
            sweep.run(args.seeds, jobs=args.jobs, launcher=launcher)
        except SweepError as err:
            print(f"msvssm sweep: {err}", file=sys.stderr)
            failed = len(err.failed)
        table = sweep.write_tables(args.table or Path(args.root) / "results", args.seeds)
        print(format_mean_std(table).to_markdown(index=False))
        return min(failed, 100)

    parser.set_defaults(func=run)


def add_plan(parser: argparse.ArgumentParser) -> None:
    parser.description = ("The course's training runs for a profile (msvssm.train.plan): list them with their state, "
                          "or train the missing ones here (--jobs) or on a cluster (--launcher slurm).")
    parser.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "cpu-cv", "gpu"))
    parser.add_argument("--data", required=True, help="preprocessed faces folder (make reproduce prepares it)")
    parser.add_argument("--root", help="folder of the runs (default: the data folder's parent's runs/, as the notebooks)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the profile's)")
    parser.add_argument("--other-seeds", default="", help="seeds of the trial and subject splits (default: the profile's)")
    parser.add_argument("--folds", type=int, default=None,
                        help="K folds of the trial and subject splits (default: the profile's: smoke and cpu 0, one "
                             "grouped split each; cpu-cv 3; gpu 5; the number of participants: leave-one-subject-out)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="change a field of every run's config (it changes the runs' keys)")
    parser.add_argument("--train", action="store_true", help="train the missing runs (default: only list them)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="runs at once (default: the profile's: smoke 1, cpu 2, gpu one per GPU); with "
                             "--launcher slurm: at most this many jobs running (0: no limit)")
    _add_launcher_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        from .plan import course_plan, default_jobs
        from .sweep import SweepError

        data = Path(args.data)
        root = Path(args.root) if args.root else data.parent / "runs"
        plan = course_plan(args.profile, data, root, seeds=args.seeds, other_seeds=args.other_seeds, folds=args.folds)
        plan.base = plan.base.with_overrides(args.assignments)
        jobs = default_jobs(args.profile) if args.jobs is None else args.jobs
        runs = plan.runs(jobs if args.launcher == "process" else 1)
        done = sum((Path(cfg.out) / "metrics.json").exists() for _, _, cfg, _ in runs)
        print(f"plan {args.profile}: {len(runs)} runs under {root} ({done} finished, {len(runs) - done} to train)")
        for name, seed, cfg, _ in runs:
            state = "done" if (Path(cfg.out) / "metrics.json").exists() else "to train"
            split = f"{cfg.split} {cfg.fold + 1}/{cfg.folds}" if cfg.folds else cfg.split
            print(f"  {state:8s}  {name:54s} seed {seed}  {cfg.model:18s} {split:11s} {Path(cfg.out).name}")
        if not args.train:
            return 0
        launcher = None if args.launcher == "process" else _launcher(args, max_parallel=args.jobs or 0)
        try:
            plan.train(jobs=jobs, launcher=launcher, progress=False)
        except SweepError as err:
            print(f"msvssm plan: {err}", file=sys.stderr)
            return min(len(err.failed), 100)
        return 0

    parser.set_defaults(func=run)


def _add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--launcher", choices=("process", "local", "slurm"), default="process",
                        help="process: --jobs processes here; slurm: one submitit job per run on a SLURM cluster; "
                             "local: submitit's local executor (the cluster extra: pip install 'msvssm[cluster]')")
    parser.add_argument("--partition", default="", help="SLURM partition (--launcher slurm)")
    parser.add_argument("--gpus-per-run", type=int, default=1, help="GPUs of each SLURM job")
    parser.add_argument("--cpus-per-run", type=int, default=8, help="CPU cores of each submitit job")
    parser.add_argument("--time-limit", type=int, default=24 * 60,
                        help="minutes per job; a run that hits it is requeued and resumes after its last epoch")


def _launcher(args: argparse.Namespace, max_parallel: int):
    from .sweep import Launcher

    return Launcher(cluster=args.launcher, partition=args.partition, gpus_per_run=args.gpus_per_run,
                    cpus_per_run=args.cpus_per_run, timeout_min=args.time_limit, max_parallel=max_parallel)

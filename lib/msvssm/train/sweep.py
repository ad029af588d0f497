"""Many runs: a grid of configurations x seeds, a run cache, and results tables (mean +- std).

    from msvssm.train.sweep import Sweep
    sweep = Sweep(root="runs", base=TrainConfig.from_profile("cpu", data=faces))
    sweep.add("VSSM", model="vssm_nano")
    sweep.add("MS-VSSM", model="msvssm_nano")
    table = sweep.run(seeds=[0, 1, 2])         # trains only what is missing; resumes unfinished runs
    sweep.write_tables("build/results/ablation")  # CSV and Markdown

Each run lives in ``root/<model>-<split>-s<seed>-<hash of its inputs>``: a run is found again by
*what it is computed from* (:mod:`msvssm.train.inputs`: the config, the data and split file by
content, the library code that trains it, the numeric libraries' versions), not by the name a
notebook gave it, so the ablation notebook reuses the runs the training notebook made, a
second ``make reproduce`` trains nothing, and data regenerated in place (or changed code)
trains again instead of reporting old numbers as new.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from ..utils import atomic_path, get_logger
from .config import TrainConfig
from .inputs import inputs_key, run_inputs
from .run import check_inputs_unchanged, is_complete, split_file_for, train

log = get_logger("sweep")

METRICS = ("accuracy", "weighted_f1")


def run_inputs_for(cfg: TrainConfig) -> dict[str, Any]:
    """What a run of ``cfg`` would be computed from (:mod:`msvssm.train.inputs`); makes its split file if missing."""
    return run_inputs(cfg, split_file_for(cfg))


def run_key(cfg: TrainConfig) -> str:
    """A short stable hash of what a run computes from: its config (no output folder, no speed knobs),
    the data and split file by content, the library code that trains it and the numeric libraries' versions."""
    return inputs_key(run_inputs_for(cfg))


def run_dir_for(root: str | os.PathLike, cfg: TrainConfig, key: str | None = None) -> Path:
    """The folder a sweep under ``root`` keeps the run of ``cfg`` in: ``<model>-<split>-s<seed>-<key>``, with
    ``-k<K>f<fold>`` after the split for a fold of a cross-validation (``key``: :func:`run_key`, computed here
    when not given)."""
    fold = f"-k{cfg.folds}f{cfg.fold}" if cfg.folds else ""
    return Path(root) / f"{cfg.model}-{cfg.split}{fold}-s{cfg.seed}-{key or run_key(cfg)}"


@dataclass
class Sweep:
    root: str | os.PathLike
    base: TrainConfig
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # row name -> config changes

    def add(self, name: str, **changes: Any) -> "Sweep":
        if name in self.rows:
            raise ValueError(f"sweep row {name!r} added twice")
        self.base.replace(**changes)  # validate now, not after hours of training
        self.rows[name] = changes
        return self

    def planned(self, seeds: Sequence[int], jobs: int = 1) -> list[tuple[str, int, TrainConfig, dict[str, Any]]]:
        """Every (row name, seed, config with its run folder, its inputs): the inputs computed once per run.

        With ``jobs`` > 1, a config that leaves ``threads`` at 0 (torch's default) gets its share of the
        cores (:func:`job_resources`) *before* it is keyed: on a CPU the thread count is an input."""
        out = []
        for name, changes in self.rows.items():
            for seed in seeds:
                cfg = self.base.replace(**changes, seed=seed)
                if jobs > 1 and not cfg.threads:
                    cfg = cfg.replace(threads=job_resources(jobs, 0)[0])
                inputs = run_inputs_for(cfg)
                folder = run_dir_for(self.root, cfg, inputs_key(inputs))
                out.append((name, seed, cfg.replace(out=str(folder)), inputs))
        return out

    def configs(self, seeds: Sequence[int]) -> list[tuple[str, int, TrainConfig]]:
        return [(name, seed, cfg) for name, seed, cfg, _ in self.planned(seeds)]

    def run(self, seeds: Sequence[int] = (0,), progress: bool = True, jobs: int = 1,
            launcher: "Launcher | None" = None) -> pd.DataFrame:
        """Train every (row, seed) not finished yet (resuming unfinished ones); returns the per-run table.

        A run folder is named by a hash of its inputs, so changed data or code gives a new folder
        and a new run; a finished folder whose saved inputs differ anyway (edited by hand, or made
        before runs recorded their inputs) is refused with what changed, never reused.

        ``jobs`` > 1 trains that many runs at once, each in a process of its own
        (:func:`run_parallel`): a failed run does not stop the others, and :class:`SweepError` says
        which failed once the rest are done. ``launcher`` (:class:`Launcher`) submits the runs through
        submitit instead: to a SLURM cluster, or to its local executor.
        """
        planned = self.planned(seeds, jobs=jobs if launcher is None else 1)
        train_planned(planned, self.root, jobs=jobs, launcher=launcher, progress=progress)
        return summaries(planned)

    def results(self, seeds: Sequence[int] = (0,)) -> pd.DataFrame:
        """One row per finished run of exactly these inputs: name, seed, test metrics, best epoch, wall seconds, folder.

        Needs the data (its content keys the runs) and makes a missing split file."""
        return summaries(self.planned(seeds))

    def write_tables(self, stem: str | os.PathLike, seeds: Sequence[int] = (0,)) -> pd.DataFrame:
        per_run = self.results(seeds)
        table = summarise(per_run)
        write_table(table, stem)
        write_table(per_run, f"{stem}_runs")
        return table


def summaries(planned: list[tuple[str, int, TrainConfig, dict[str, Any]]]) -> pd.DataFrame:
    """The per-run table (:func:`run_summary`) of the finished runs among ``planned`` (:meth:`Sweep.planned`'s rows)."""
    return pd.DataFrame([run_summary(cfg.out, name=name) for name, _, cfg, inputs in planned
                         if is_complete(cfg.out, inputs)])


def train_planned(planned: list[tuple[str, int, TrainConfig, dict[str, Any]]], root: str | os.PathLike, jobs: int = 1,
                  launcher: "Launcher | None" = None, progress: bool = True) -> None:
    """Train the runs of ``planned`` (:meth:`Sweep.planned`) that are not finished: one after another in this
    process, ``jobs`` at once in processes of their own, or through ``launcher``. A finished run whose saved
    inputs differ from ``planned``'s is refused (:func:`msvssm.train.run.check_inputs_unchanged`)."""
    finished = set()
    for _, _, cfg, inputs in planned:
        if (Path(cfg.out) / "metrics.json").exists():
            check_inputs_unchanged(Path(cfg.out), inputs, "reuse")
            finished.add(cfg.out)
    log.info("sweep: %d runs, %d already finished, %d to train", len(planned), len(finished),
             len(planned) - len(finished))
    todo = [(name, seed, cfg) for name, seed, cfg, _ in planned if cfg.out not in finished]
    if not todo:
        return
    if launcher is not None:
        run_submitit(todo, launcher, Path(root) / "submitit")
    elif jobs > 1 and len(todo) > 1:
        run_parallel(todo, jobs, Path(root) / "logs")
    else:
        for name, seed, cfg in todo:
            log.info("sweep: training %s seed %d -> %s", name, seed, cfg.out)
            train(cfg, resume=True, progress=progress)


class SweepError(RuntimeError):
    """Some runs of a sweep failed (the others finished); ``failed`` lists (row, seed, reason)."""

    def __init__(self, failed: list[tuple[str, int, str]], total: int):
        self.failed = failed
        super().__init__(f"{len(failed)} of {total} runs failed: " + "; ".join(
            f"{name} seed {seed}: {reason}" for name, seed, reason in failed))


def job_resources(jobs: int, index: int) -> tuple[int, dict[str, str]]:
    """(CPU threads, environment) of job ``index`` of ``jobs``: the cores split evenly, one GPU per job
    (round robin over the GPUs torch sees; CUDA_VISIBLE_DEVICES makes it the job's device 0)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = {}
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        env["CUDA_VISIBLE_DEVICES"] = str(index % torch.cuda.device_count())
    return max(1, cores // jobs), env


def run_parallel(todo: list[tuple[str, int, TrainConfig]], jobs: int, log_dir: Path, poll: float = 1.0) -> None:
    """Train ``todo`` (row name, seed, config with its run folder) ``jobs`` at a time, each run in its own
    process (``msvssm train --config ... --resume``), its output in ``log_dir/<run folder>.log``.

    One line per change: queued, running (epoch k of n, read from the run's history.csv), done, failed
    with the last line of its log. A run's threads are its config's ``threads`` when set, else the cores
    divided by ``jobs`` (:meth:`Sweep.planned` sets that share before keying the run, since on a CPU the
    thread count is one of a run's inputs: it changes the order of float sums). Raises :class:`SweepError` at the end if any
    run failed; the others are finished by then.
    """
    import subprocess
    import sys
    import time

    log_dir.mkdir(parents=True, exist_ok=True)
    queue = list(todo)
    running: dict[int, tuple[str, int, TrainConfig, subprocess.Popen, Any, str]] = {}
    failed: list[tuple[str, int, str]] = []
    slots = list(range(jobs))
    for name, seed, cfg in queue:
        log.info("sweep: queued %s seed %d", name, seed)
    while queue or running:
        while queue and slots:
            name, seed, cfg = queue.pop(0)
            slot = slots.pop(0)
            threads, env = job_resources(jobs, slot)
            cfg = cfg if cfg.threads else cfg.replace(threads=threads)
            folder = Path(cfg.out)
            cfg_file = log_dir / f"{folder.name}.json"
            cfg_file.write_text(json.dumps(cfg.to_dict(), indent=1), encoding="utf-8")
            log_file = log_dir / f"{folder.name}.log"
            handle = open(log_file, "w", encoding="utf-8")
            proc = subprocess.Popen(
                [sys.executable, "-m", "msvssm.cli", "train", "--config", str(cfg_file), "--data", cfg.data,
                 "--out", cfg.out, "--resume", "--no-progress"],
                stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **env})
            running[slot] = (name, seed, cfg, proc, handle, "")
            log.info("sweep: running %s seed %d (job %d, %d thread(s)%s) -> %s", name, seed, slot, cfg.threads,
                     f", GPU {env['CUDA_VISIBLE_DEVICES']}" if env else "", cfg.out)
        time.sleep(poll)
        for slot, (name, seed, cfg, proc, handle, shown) in list(running.items()):
            epochs = _epochs_done(Path(cfg.out))
            state = f"epoch {epochs} of {cfg.epochs}"
            if proc.poll() is None:
                if state != shown and epochs:
                    log.info("sweep: running %s seed %d: %s", name, seed, state)
                    running[slot] = (name, seed, cfg, proc, handle, state)
                continue
            handle.close()
            del running[slot]
            slots.append(slot)
            if proc.returncode == 0 and (Path(cfg.out) / "metrics.json").exists():
                metrics = json.loads((Path(cfg.out) / "metrics.json").read_text(encoding="utf-8"))
                log.info("sweep: done %s seed %d: test accuracy %.4f", name, seed, metrics["accuracy"])
            else:
                last = _last_line(log_dir / f"{Path(cfg.out).name}.log")
                reason = f"exit {proc.returncode}: {last}"
                log.error("sweep: failed %s seed %d (%s); the others go on", name, seed, reason)
                failed.append((name, seed, reason))
    if failed:
        raise SweepError(failed, len(todo))


@dataclass
class Launcher:
    """Where submitit sends a sweep's runs: ``cluster`` "slurm" (or "local": submitit's local executor, for
    laptops and tests), and the resources of each run."""

    cluster: str = "slurm"
    partition: str = ""
    gpus_per_run: int = 1
    cpus_per_run: int = 8
    timeout_min: int = 24 * 60
    max_parallel: int = 0  # 0: no limit (SLURM's array parallelism)


class TrainJob:
    """One run as a submitit job: ``train(cfg, resume=True)``; on preemption or time-out submitit calls
    :meth:`checkpoint`, which requeues the same job, and ``--resume`` continues after the last epoch."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    def __call__(self) -> str:
        return str(train(self.cfg, resume=True, progress=False))

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(TrainJob(self.cfg))


def submitit_executor(launcher: Launcher, folder: Path):
    """A submitit executor for ``launcher`` writing its logs under ``folder``."""
    from ..optional import require

    submitit = require("submitit", "cluster", "msvssm sweep --launcher")
    executor = submitit.AutoExecutor(folder=str(folder), cluster=launcher.cluster)
    params: dict[str, Any] = {"timeout_min": launcher.timeout_min, "cpus_per_task": launcher.cpus_per_run,
                              "gpus_per_node": launcher.gpus_per_run if launcher.cluster != "local" else 0,
                              "tasks_per_node": 1, "nodes": 1}
    if launcher.cluster == "slurm":
        params["slurm_partition"] = launcher.partition or None
        if launcher.max_parallel:
            params["slurm_array_parallelism"] = launcher.max_parallel
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def run_submitit(todo: list[tuple[str, int, TrainConfig]], launcher: Launcher, folder: Path) -> None:
    """Submit every run of ``todo`` as a job, log each as it is submitted, finishes or fails; wait for all;
    :class:`SweepError` at the end if any failed."""
    executor = submitit_executor(launcher, folder)
    jobs = []
    for name, seed, cfg in todo:
        job = executor.submit(TrainJob(cfg))
        log.info("sweep: submitted %s seed %d as job %s (%s) -> %s", name, seed, job.job_id, launcher.cluster, cfg.out)
        jobs.append((name, seed, cfg, job))
    failed = []
    for name, seed, cfg, job in jobs:
        try:
            job.result()
            log.info("sweep: done %s seed %d (job %s)", name, seed, job.job_id)
        except Exception as err:  # noqa: BLE001 - one failed job must not hide the others
            reason = " ".join(str(err).split())[-300:]
            log.error("sweep: failed %s seed %d (job %s): %s", name, seed, job.job_id, reason)
            failed.append((name, seed, reason))
    if failed:
        raise SweepError(failed, len(todo))


def _epochs_done(run: Path) -> int:
    try:
        return max(0, sum(1 for _ in open(run / "history.csv", encoding="utf-8")) - 1)
    except OSError:
        return 0


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def run_summary(run: str | os.PathLike, name: str = "") -> dict[str, Any]:
    run = Path(run)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    history = pd.read_csv(run / "history.csv")
    cfg = TrainConfig.load(run / "config.json")
    return {
        "name": name or cfg.model,
        "model": cfg.model,
        "split": cfg.split,
        "folds": cfg.folds,
        "fold": cfg.fold,
        "seed": cfg.seed,
        "accuracy": metrics["accuracy"],
        "weighted_f1": metrics["weighted_f1"],
        "best_epoch": metrics.get("best_epoch"),
        "epochs": cfg.epochs,
        "train_seconds": float(history["seconds"].sum()),
        "synthetic": metrics.get("synthetic"),
        "split_file": Path(metrics["split_file"]).name if metrics.get("split_file") else None,
        "run": str(run),
    }


def summarise(per_run: pd.DataFrame, by: Iterable[str] = ("name",), confidence: float = 0.95) -> pd.DataFrame:
    """Per row: seeds, mean and standard deviation (ddof=1; nan for one seed: undefined, not 0) and the t
    interval of the mean (``{metric}_ci_low`` / ``_ci_high``, ``confidence``; nan for one seed) of the metrics."""
    from ..stats import mean_interval

    if per_run.empty:
        return pd.DataFrame(columns=[*by, "seeds", *(f"{m}_{s}" for m in METRICS
                                                      for s in ("mean", "std", "ci_low", "ci_high"))])
    grouped = per_run.groupby(list(by), sort=False)
    table = grouped.agg(seeds=("seed", "count"),
                        **{f"{m}_{s}": (m, s) for m in METRICS for s in ("mean", "std")},
                        train_seconds=("train_seconds", "mean")).reset_index()
    for m in METRICS:
        bounds = [mean_interval(values, confidence)[1:] for _, values in grouped[m]]
        table[f"{m}_ci_low"] = [low for low, _ in bounds]
        table[f"{m}_ci_high"] = [high for _, high in bounds]
    return table


def format_mean_std(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """``accuracy`` and ``weighted_f1`` as 'mean ± std' strings, for Markdown; one seed has no spread:
    'value (1 seed)'."""
    return _format_metrics(table, lambda t, m, d: [f"{a:.{d}f} ± {s:.{d}f}" for a, s in zip(t[f"{m}_mean"], t[f"{m}_std"])],
                           digits)


def format_mean_ci(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``accuracy`` and ``weighted_f1`` as 'mean [low, high]' (the 95 % t interval over seeds), for Markdown;
    one seed: 'value (1 seed)'. With 3 seeds the interval is wide (t = 4.30): that is what 3 seeds know."""
    return _format_metrics(table, lambda t, m, d: [f"{a:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]" for a, lo, hi in
                                                   zip(t[f"{m}_mean"], t[f"{m}_ci_low"], t[f"{m}_ci_high"])], digits)


def _format_metrics(table: pd.DataFrame, cells, digits: int) -> pd.DataFrame:
    """Each metric of a :func:`summarise` table as one text column (``cells(table, metric, digits)``; rows of one
    seed read 'value (1 seed)'), its numeric columns dropped."""
    shown = table.copy()
    seeds = shown["seeds"] if "seeds" in shown else pd.Series(2, index=shown.index)
    for m in METRICS:
        if f"{m}_mean" in shown:
            shown[m] = [text if n > 1 else f"{a:.{digits}f} (1 seed)"
                        for text, a, n in zip(cells(shown, m, digits), shown[f"{m}_mean"], seeds)]
            shown = shown.drop(columns=[c for c in (f"{m}_mean", f"{m}_std", f"{m}_ci_low", f"{m}_ci_high")
                                        if c in shown])
    return shown


def write_table(table: pd.DataFrame, stem: str | os.PathLike) -> tuple[Path, Path]:
    stem = Path(stem)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    with atomic_path(md_path) as tmp:
        tmp.write_text(format_mean_std(table).to_markdown(index=False, floatfmt=".4g") + "\n", encoding="utf-8")
    return csv_path, md_path


def step_gains(table: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """For consecutive rows of a :func:`summarise` table: the gain in ``metric`` and whether it
    exceeds the seed-to-seed spread.

    The rule, stated so a reader can check it: a gain *exceeds the spread* when it is larger
    than the two rows' standard deviations added (their mean ± std bars do not overlap). With
    one seed there is no spread and the verdict is "one seed: unknown".
    """
    rows = []
    for (_, before), (_, after) in zip(table.iloc[:-1].iterrows(), table.iloc[1:].iterrows()):
        gain = after[f"{metric}_mean"] - before[f"{metric}_mean"]
        spread = after[f"{metric}_std"] + before[f"{metric}_std"]
        if min(before["seeds"], after["seeds"]) < 2:
            verdict = "one seed: unknown"
        elif abs(gain) > spread:
            verdict = "gain exceeds the spread" if gain > 0 else "loss exceeds the spread"
        else:
            verdict = "within the seed-to-seed spread"
        rows.append({"step": f"{before['name']} -> {after['name']}", "gain": gain, "std_sum": spread,
                     "verdict": verdict})
    return pd.DataFrame(rows)

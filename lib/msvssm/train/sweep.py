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
    """The folder a sweep under ``root`` keeps the run of ``cfg`` in: ``<model>-<split>-s<seed>-<key>``
    (``key``: :func:`run_key`, computed here when not given)."""
    return Path(root) / f"{cfg.model}-{cfg.split}-s{cfg.seed}-{key or run_key(cfg)}"


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

    def planned(self, seeds: Sequence[int]) -> list[tuple[str, int, TrainConfig, dict[str, Any]]]:
        """Every (row name, seed, config with its run folder, its inputs): the inputs computed once per run."""
        out = []
        for name, changes in self.rows.items():
            for seed in seeds:
                cfg = self.base.replace(**changes, seed=seed)
                inputs = run_inputs_for(cfg)
                folder = run_dir_for(self.root, cfg, inputs_key(inputs))
                out.append((name, seed, cfg.replace(out=str(folder)), inputs))
        return out

    def configs(self, seeds: Sequence[int]) -> list[tuple[str, int, TrainConfig]]:
        return [(name, seed, cfg) for name, seed, cfg, _ in self.planned(seeds)]

    def run(self, seeds: Sequence[int] = (0,), progress: bool = True) -> pd.DataFrame:
        """Train every (row, seed) not finished yet (resuming unfinished ones); returns the per-run table.

        A run folder is named by a hash of its inputs, so changed data or code gives a new folder
        and a new run; a finished folder whose saved inputs differ anyway (edited by hand, or made
        before runs recorded their inputs) is refused with what changed, never reused.
        """
        planned = self.planned(seeds)
        finished = set()
        for _, _, cfg, inputs in planned:
            if (Path(cfg.out) / "metrics.json").exists():
                check_inputs_unchanged(Path(cfg.out), inputs, "reuse")
                finished.add(cfg.out)
        log.info("sweep: %d runs, %d already finished, %d to train", len(planned), len(finished),
                 len(planned) - len(finished))
        for name, seed, cfg, _ in planned:
            if cfg.out not in finished:
                log.info("sweep: training %s seed %d -> %s", name, seed, cfg.out)
                train(cfg, resume=True, progress=progress)
        return self._summaries(planned)

    def results(self, seeds: Sequence[int] = (0,)) -> pd.DataFrame:
        """One row per finished run of exactly these inputs: name, seed, test metrics, best epoch, wall seconds, folder.

        Needs the data (its content keys the runs) and makes a missing split file."""
        return self._summaries(self.planned(seeds))

    @staticmethod
    def _summaries(planned) -> pd.DataFrame:
        return pd.DataFrame([run_summary(cfg.out, name=name) for name, _, cfg, inputs in planned
                             if is_complete(cfg.out, inputs)])

    def write_tables(self, stem: str | os.PathLike, seeds: Sequence[int] = (0,)) -> pd.DataFrame:
        per_run = self.results(seeds)
        table = summarise(per_run)
        write_table(table, stem)
        write_table(per_run, f"{stem}_runs")
        return table


def run_summary(run: str | os.PathLike, name: str = "") -> dict[str, Any]:
    run = Path(run)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    history = pd.read_csv(run / "history.csv")
    cfg = TrainConfig.load(run / "config.json")
    return {
        "name": name or cfg.model,
        "model": cfg.model,
        "split": cfg.split,
        "seed": cfg.seed,
        "accuracy": metrics["accuracy"],
        "weighted_f1": metrics["weighted_f1"],
        "best_epoch": metrics.get("best_epoch"),
        "epochs": cfg.epochs,
        "train_seconds": float(history["seconds"].sum()),
        "synthetic": metrics.get("synthetic"),
        "run": str(run),
    }


def summarise(per_run: pd.DataFrame, by: Iterable[str] = ("name",)) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1; 0 for a single seed) of the metrics per row."""
    if per_run.empty:
        return pd.DataFrame(columns=[*by, "seeds", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std"))])
    grouped = per_run.groupby(list(by), sort=False)
    table = grouped.agg(seeds=("seed", "count"),
                        **{f"{m}_{s}": (m, s) for m in METRICS for s in ("mean", "std")},
                        train_seconds=("train_seconds", "mean")).reset_index()
    return table.fillna({f"{m}_std": 0.0 for m in METRICS})


def format_mean_std(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """``accuracy`` and ``weighted_f1`` as 'mean ± std' strings, for Markdown; one seed has no spread:
    'value (1 seed)'."""
    shown = table.copy()
    seeds = shown["seeds"] if "seeds" in shown else pd.Series(2, index=shown.index)
    for m in METRICS:
        if f"{m}_mean" in shown:
            shown[m] = [f"{a:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{a:.{digits}f} (1 seed)"
                        for a, s, n in zip(shown[f"{m}_mean"], shown[f"{m}_std"], seeds)]
            shown = shown.drop(columns=[f"{m}_mean", f"{m}_std"])
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

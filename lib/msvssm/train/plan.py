"""The course's training runs, planned once: which runs notebooks 04-11 read, for a profile.

    from msvssm.train.plan import course_plan
    plan = course_plan("cpu", faces_dir, runs_root)
    plan.sweep("ablation").run(seeds=plan.seeds_for("ablation"))   # what notebook 08 does
    plan.train(jobs=2)                                              # what make reproduce does first

The notebooks ask this plan for their rows (there is no second list to keep in step), and
``make reproduce`` trains the whole plan first, several runs at once (:func:`Sweep.run` with
``jobs``), so that the notebooks then find every run in the sweep cache. A notebook run on its
own still trains what it needs, through the same sweep.

Parts (a run may belong to several: a run folder is keyed by its inputs, so it is trained once):

    training    MS-VSSM, the first seed: the course's run (notebooks 03-05, 07, 11)
    ablation    Table 3: VSSM, +SE-SS2D, +Layer Scale, +DSPP (= MS-VSSM) over the seeds (08; 11 reads VSSM)
    baselines   Tables 2/4: RepViT, DilateFormer, VSSM, MS-VSSM over the seeds (09)
    protocols   VSSM and MS-VSSM under the frame split (the seeds), and under the trial and subject splits (other
                seeds): one grouped split each (``folds`` 0: smoke, cpu), or grouped K-fold cross-validation
                (cpu-cv, gpu), where every video and every person is tested once, with a third row there: MS-VSSM
                with the paper's augmentation (when the profile's recipe has none) (10)
    chaos       MS-VSSM, first seed, with SS2D's scan composed of separate steps instead of the fused kernel: the
                same function to float rounding, trained again (08); CPU profiles only (on a GPU the scan is
                mamba-ssm's kernel either way, so the two rows would be one computation)

Seeds: smoke 0,1; cpu and gpu 0,1,2; the trial and subject splits' folds: seed 0.
Folds of the trial and subject splits: smoke and cpu none (one grouped split each), cpu-cv 3, gpu 5 (``folds`` = the
number of participants: leave-one-subject-out). cpu-cv is cpu with the folds: the same recipe, so the runs they share
(every frame-split run) are trained once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..models import ABLATION_FLAGS
from ..profiles import get_profile
from ..utils import get_logger
from .config import TrainConfig
from .sweep import Launcher, Sweep, summaries, train_planned

log = get_logger("plan")

PARTS = ("training", "ablation", "baselines", "protocols", "chaos")
# The parts each notebook reads (make reproduce trains those of the notebooks it runs).
NOTEBOOK_PARTS = {"03": ("training",), "04": ("training",), "05": ("training",), "07": ("training",),
                  "08": ("ablation", "chaos"), "09": ("baselines",), "10": ("protocols",), "11": ("training", "ablation")}
PROTOCOLS = ("frame", "trial", "subject")
AUGMENTED_ROW = "MS-VSSM + paper augmentation"


def parse_seeds(text: str | Sequence[int] | None, default: Sequence[int]) -> list[int]:
    """Seeds from a notebook parameter ("0,1,2"), a list, or the default when empty."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return list(default)
    if isinstance(text, str):
        try:
            return [int(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"seeds={text!r}: expected comma-separated integers, e.g. '0,1,2'") from None
    return [int(s) for s in text]


def default_seeds(profile: str) -> list[int]:
    return [0, 1] if profile == "smoke" else [0, 1, 2]


def default_other_seeds(profile: str) -> list[int]:
    """Seeds of the trial and subject splits: one, in every profile; their K folds are K runs per row already, and
    the spread between folds (different people) is what a grouped split is uncertain about first."""
    return [0]


def default_jobs(profile: str) -> int:
    """Runs trained at once by ``make reproduce``: the profile's ``jobs`` (0: one per GPU torch sees)."""
    jobs = get_profile(profile).jobs
    if jobs == 0:
        import torch

        jobs = torch.cuda.device_count() if torch.cuda.is_available() else 1
    return max(1, jobs)


@dataclass
class CoursePlan:
    profile: str
    faces: Path
    runs_root: Path
    seeds: list[int]
    other_seeds: list[int]
    base: TrainConfig
    folds: int = 0  # K folds of the trial and subject splits (cross-validation)
    split_seeds: dict[str, int] = field(default_factory=dict)  # filled by split_seed()
    trained_protocols: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ rows
    @property
    def full_model(self) -> str:
        return self.base.model  # msvssm_nano (smoke, cpu) or msvssm_tiny (gpu)

    @property
    def plain_model(self) -> str:
        return self.full_model.replace("msvssm", "vssm")

    def ablation_rows(self) -> dict[str, dict[str, Any]]:
        """Table 3's rows as config changes: VSSM is the plain model, the full row the MS-VSSM factory,
        the steps between it MS-VSSM with flags off (:data:`msvssm.models.ABLATION_FLAGS`)."""
        rows: dict[str, dict[str, Any]] = {}
        for name, flags in ABLATION_FLAGS.items():
            if name == "VSSM":
                rows[name] = dict(model=self.plain_model)
            elif all(flags.values()):
                rows[name] = dict(model=self.full_model)
            else:
                rows[name] = dict(model=self.full_model, model_kwargs=flags)
        return rows

    def baseline_models(self) -> dict[str, str]:
        """Tables 2/4's networks at the profile's size (the nano baselines stay within 25 % of MS-VSSM's parameters)."""
        size = "nano" if get_profile(self.profile).model_size == "nano" else "tiny"
        return {"RepViT": "repvit_nano" if size == "nano" else "repvit_m0_9", "DilateFormer": f"dilateformer_{size}",
                "VSSM": f"vssm_{size}", "MS-VSSM": f"msvssm_{size}"}

    def protocol_models(self) -> dict[str, str]:
        return {"VSSM": self.plain_model, "MS-VSSM": self.full_model}

    def protocol_rows(self, protocol: str) -> dict[str, dict[str, Any]]:
        """The rows of a protocol as config changes: VSSM and MS-VSSM; under a cross-validated grouped split also
        MS-VSSM with the paper's augmentation (flip, rotation, translation, colour jitter), unless the profile's recipe
        has it already (gpu: that row would be the MS-VSSM row). With one grouped split (``folds`` 0: cpu, smoke) there
        is no third row: its 2-3 test people could not tell the two apart (cpu-cv has it)."""
        rows: dict[str, dict[str, Any]] = {name: dict(model=model) for name, model in self.protocol_models().items()}
        if protocol != "frame" and self.folds_for(protocol) and self.base.augment != "paper":
            rows[AUGMENTED_ROW] = dict(model=self.full_model, augment="paper")
        return rows

    def folds_for(self, protocol: str) -> int:
        """K for the grouped protocols (0 for the frame split: one split, no cross-validation)."""
        return 0 if protocol == "frame" else self.folds

    def fold_indices(self, protocol: str) -> list[int]:
        return list(range(max(self.folds_for(protocol), 1)))

    def split_seed(self, protocol: str) -> int:
        """The split seed of a protocol: 0, except the smoke data's trial split (3 participants: a trial split
        can leave a class without training images, which training refuses; the first seed that trains every
        class is used, and notebook 10 says so). Found once, when first asked (it makes split files)."""
        if protocol not in self.split_seeds:
            from ..data.splits import first_seed_training_every_class

            small = self.profile == "smoke" and protocol == "trial"
            self.split_seeds[protocol] = (first_seed_training_every_class(self.faces, protocol, folds=self.folds_for(protocol))
                                          if small else 0)
        return self.split_seeds[protocol]

    def protocol_config(self, protocol: str, fold: int = 0) -> TrainConfig:
        """The base config under ``protocol``: its split seed, and for a grouped split the fold ``fold`` of K."""
        return self.base.replace(split=protocol, split_seed=self.split_seed(protocol), folds=self.folds_for(protocol),
                                 fold=fold)

    # ------------------------------------------------------------------ sweeps
    def sweep(self, part: str, protocol: str = "frame", rows: Sequence[str] | None = None, fold: int = 0) -> Sweep:
        """The sweep of one part of the plan (``protocol``: which split, and ``fold``: which of its folds, for
        ``protocols``); ``rows``: only these."""
        if part == "training":
            sweep = Sweep(self.runs_root, self.base).add("MS-VSSM", model=self.full_model)
        elif part == "ablation":
            sweep = Sweep(self.runs_root, self.base)
            for name, changes in self.ablation_rows().items():
                sweep.add(name, **changes)
        elif part == "baselines":
            sweep = Sweep(self.runs_root, self.base)
            for name, model in self.baseline_models().items():
                sweep.add(name, model=model)
        elif part == "chaos":
            sweep = (Sweep(self.runs_root, self.base).add("MS-VSSM (fused scan)", model=self.full_model)
                     .add("MS-VSSM (composed scan)", model=self.full_model, model_kwargs={"fused_scan": False}))
        elif part == "protocols":
            if protocol not in PROTOCOLS:
                raise ValueError(f"protocol={protocol!r}: choose one of {PROTOCOLS}")
            if fold not in self.fold_indices(protocol):
                raise ValueError(f"fold={fold}: the {protocol} split has folds {self.fold_indices(protocol)}")
            sweep = Sweep(self.runs_root, self.protocol_config(protocol, fold))
            for name, changes in self.protocol_rows(protocol).items():
                sweep.add(name, **changes)
        else:
            raise ValueError(f"part={part!r}: choose one of {PARTS}")
        if rows is not None:
            unknown = sorted(set(rows) - set(sweep.rows))
            if unknown:
                raise ValueError(f"{part} has no row(s) {unknown}; its rows: {list(sweep.rows)}")
            sweep.rows = {name: sweep.rows[name] for name in rows}
        return sweep

    def seeds_for(self, part: str, protocol: str = "frame") -> list[int]:
        if part in ("training", "chaos"):
            return self.seeds[:1]
        if part == "protocols" and protocol != "frame":
            return list(self.other_seeds)
        return list(self.seeds)

    def sweeps(self, parts: Sequence[str] | None = None) -> list[tuple[str, Sweep, list[int]]]:
        """Every (label, sweep, seeds) of the plan, in the notebooks' order (``parts``: only these parts)."""
        if parts is not None:
            unknown = sorted(set(parts) - set(PARTS))
            if unknown:
                raise ValueError(f"unknown part(s) {unknown}; the parts: {PARTS}")
            return [s for s in self.sweeps() if s[0].split("/")[0] in parts]
        out = [(part, self.sweep(part), self.seeds_for(part)) for part in ("training", "ablation", "baselines")]
        out += [(f"protocols/{p}" + (f"/fold{f}" if self.folds_for(p) else ""), self.sweep("protocols", p, fold=f),
                 self.seeds_for("protocols", p)) for p in self.trained_protocols for f in self.fold_indices(p)]
        if self.profile != "gpu":
            out.append(("chaos", self.sweep("chaos"), self.seeds_for("chaos")))
        return out

    def runs(self, jobs: int = 1, parts: Sequence[str] | None = None) -> list[tuple[str, int, TrainConfig, dict[str, Any]]]:
        """Every distinct run of the plan (row label, seed, config with its run folder, its inputs), the
        longest first (``jobs``: as :meth:`Sweep.planned`).

        A run shared by parts (MS-VSSM seed 0 is in four) is listed once. Longest first, so that two
        jobs do not end with one long run alone: MS-VSSM variants (the scan with SE, DSPP) first,
        the plain VSSM last (about 1.6x faster per run on the cpu profile)."""
        seen: dict[str, tuple[str, int, TrainConfig, dict[str, Any]]] = {}
        for label, sweep, seeds in self.sweeps(parts):
            for name, seed, cfg, inputs in sweep.planned(seeds, jobs=jobs):
                seen.setdefault(cfg.out, (f"{label}: {name}", seed, cfg, inputs))
        return sorted(seen.values(), key=_cost_rank)

    def protocol_results(self, protocol: str, jobs: int = 1, progress: bool = False) -> pd.DataFrame:
        """Train what is missing of ``protocol`` (every fold, ``jobs`` at once) and return its per-run table
        (:func:`msvssm.train.sweep.run_summary`'s columns, with ``folds`` and ``fold``)."""
        seeds = self.seeds_for("protocols", protocol)
        planned = [run for f in self.fold_indices(protocol)
                   for run in self.sweep("protocols", protocol, fold=f).planned(seeds, jobs=jobs)]
        train_planned(sorted(planned, key=_cost_rank), self.runs_root, jobs=jobs, progress=progress)
        return summaries(planned)

    def train(self, jobs: int = 1, launcher: Launcher | None = None, progress: bool = False,
              parts: Sequence[str] | None = None) -> None:
        """Train every run of the plan (``parts``: of these parts) not finished yet (``jobs`` at once, or through
        ``launcher``). Raises :class:`msvssm.train.sweep.SweepError` naming the failed runs once the others are done."""
        runs = self.runs(jobs if launcher is None else 1, parts)
        log.info("plan %s: %d runs (%s)", self.profile, len(runs),
                 f"{jobs} at once" if launcher is None else f"submitit, {launcher.cluster}")
        train_planned(runs, self.runs_root, jobs=jobs, launcher=launcher, progress=progress)


_FAMILY_RANK = {"msvssm": 0, "dilateformer": 1, "repvit": 1, "vssm": 2}


def _cost_rank(run: tuple) -> tuple:
    """Longest runs first: the composed scan (several times slower than the fused one), then the MS-VSSM variants
    (the scan with SE, DSPP), the baselines, the plain VSSM (about 1.6x faster per run on the cpu profile)."""
    cfg = run[2]
    return (-1 if cfg.model_kwargs.get("fused_scan") is False else _FAMILY_RANK.get(cfg.model.split("_")[0], 1),
            cfg.split != "frame")


def course_plan(profile: str, faces: str | os.PathLike, runs_root: str | os.PathLike,
                seeds: str | Sequence[int] | None = None, other_seeds: str | Sequence[int] | None = None,
                folds: int | None = None, **config_changes: Any) -> CoursePlan:
    """The plan of ``profile`` on the preprocessed ``faces``, its runs cached under ``runs_root``.

    ``seeds`` / ``other_seeds``: a notebook's parameters (empty: the profile's); ``folds``: K folds of the trial and
    subject splits (None or negative: the profile's; 0: one grouped split each, no cross-validation); ``config_changes``:
    fields of every run's config changed (e.g. ``device="cpu"`` for a test). Both folders are made absolute:
    a run's ``config.json`` keeps its data folder, and notebooks read it from another working directory."""
    faces, runs_root = Path(faces).resolve(), Path(runs_root).resolve()
    # cpu-cv trains with cpu's recipe: the same configs, so the same run folders (each run trained once for both)
    base = TrainConfig.from_profile(get_profile(profile).train_profile, data=str(faces), **config_changes)
    # The smoke data's 3 participants: a subject split puts one person on each side, and no smoke participant
    # shows all four classes, so the smoke profile trains the frame and trial splits only (notebook 10 says so).
    trained = ["frame", "trial"] if profile == "smoke" else list(PROTOCOLS)
    return CoursePlan(profile=profile, faces=faces, runs_root=runs_root,
                      seeds=parse_seeds(seeds, default_seeds(profile)),
                      other_seeds=parse_seeds(other_seeds, default_other_seeds(profile)),
                      base=base, trained_protocols=trained,
                      folds=get_profile(profile).folds if folds is None or int(folds) < 0 else int(folds))

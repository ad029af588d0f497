"""The course's runs, planned once (msvssm.train.plan): what each profile trains, that parts share runs, that the
notebooks ask the plan for their rows (no second list), and that make reproduce trains the plan first."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from msvssm.models import ABLATION_FLAGS
from msvssm.train.plan import course_plan, default_jobs, parse_seeds

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    from msvssm.data import make_quadrant_folder

    return make_quadrant_folder(tmp_path_factory.mktemp("plan") / "data", 6, 6, 40, 0)


def _rows(runs):
    return [(cfg.model, cfg.split, seed, json.dumps(cfg.model_kwargs, sort_keys=True)) for _, seed, cfg, _ in runs]


@pytest.mark.parametrize("profile, expected", [("smoke", 15), ("cpu", 23), ("cpu-cv", 37), ("gpu", 38)])
def test_each_profile_plans_the_runs_the_readme_counts(faces, profile, expected):
    plan = course_plan(profile, faces, faces.parent / "runs", device="cpu")
    runs = plan.runs()
    assert len(runs) == expected
    assert len({cfg.out for _, _, cfg, _ in runs}) == expected, "every run once"
    rows = _rows(runs)
    size = "nano" if profile != "gpu" else "tiny"
    if profile == "cpu-cv":  # cpu's recipe: cpu's frame-split runs are cpu-cv's (the same folders: trained once for both)
        frame = lambda plan_runs: {cfg.out for _, _, cfg, _ in plan_runs if cfg.split == "frame"}  # noqa: E731
        assert frame(course_plan("cpu", faces, faces.parent / "runs", device="cpu").runs()) == frame(runs)
    frame_seeds = [0, 1] if profile == "smoke" else [0, 1, 2]
    for seed in frame_seeds:  # Table 3 and Tables 2/4 over the seeds, on the frame split
        assert (f"msvssm_{size}", "frame", seed, "{}") in rows
        assert (f"vssm_{size}", "frame", seed, "{}") in rows
        assert (f"dilateformer_{size}", "frame", seed, "{}") in rows
    # the grouped splits, seed 0: one split each (smoke, cpu: VSSM and MS-VSSM), or K-fold cross-validation, every
    # fold of every row (cpu-cv, gpu; with MS-VSSM with the paper's augmentation where the recipe has none: cpu-cv)
    folds = {"smoke": 0, "cpu": 0, "cpu-cv": 3, "gpu": 5}[profile]
    grouped = [(cfg.split, cfg.folds, cfg.fold, cfg.model, cfg.augment) for _, _, cfg, _ in runs if cfg.split != "frame"]
    row_kinds = [(f"msvssm_{size}", plan.base.augment), (f"vssm_{size}", plan.base.augment)]
    row_kinds += [(f"msvssm_{size}", "paper")] if profile == "cpu-cv" else []
    for split in ("trial", "subject") if profile != "smoke" else ("trial",):
        for fold in range(max(folds, 1)):
            for model, augment in row_kinds:
                assert (split, folds, fold, model, augment) in grouped
    assert len(grouped) == len(row_kinds) * max(folds, 1) * (1 if profile == "smoke" else 2)
    assert all(seed == 0 for _, seed, cfg, _ in runs if cfg.split != "frame")
    assert not any(split == "subject" for _, split, _, _ in rows) or profile != "smoke"
    composed = (f"msvssm_{size}", "frame", 0, '{"fused_scan": false}')
    assert (composed in rows) == (profile != "gpu"), "the chaos row: CPU profiles only"


def test_the_grouped_protocols_are_cross_validated_and_a_fold_outside_k_is_refused(faces):
    plan = course_plan("cpu", faces, faces.parent / "runs", folds=4)
    assert plan.fold_indices("subject") == [0, 1, 2, 3] and plan.fold_indices("frame") == [0]
    one_split = course_plan("cpu-cv", faces, faces.parent / "runs", folds=0)
    assert one_split.fold_indices("subject") == [0], "0: one split"
    assert list(one_split.protocol_rows("subject")) == ["VSSM", "MS-VSSM"], "the augmentation arm needs the folds"
    assert course_plan("cpu-cv", faces, faces.parent / "runs", folds=-1).folds == 3, "negative: the profile's"
    configs = [cfg for f in range(4) for _, _, cfg in plan.sweep("protocols", "subject", fold=f).configs([0])]
    assert {(c.folds, c.fold) for c in configs} == {(4, f) for f in range(4)}
    assert all("-subject-k4f" in Path(c.out).name for c in configs), "the fold is in the run folder's name"
    with pytest.raises(ValueError, match="folds"):
        plan.sweep("protocols", "subject", fold=4)
    assert list(plan.protocol_rows("frame")) == ["VSSM", "MS-VSSM"]
    assert plan.protocol_rows("trial")["MS-VSSM + paper augmentation"]["augment"] == "paper"


def test_parts_share_their_runs_and_rows_come_from_the_library(faces):
    plan = course_plan("cpu", faces, faces.parent / "runs")
    folder = {part: {name: cfg.out for name, seed, cfg in plan.sweep(part).configs([0])}
              for part in ("training", "ablation", "baselines")}
    full = folder["training"]["MS-VSSM"]
    assert full == folder["ablation"]["VSSM+SE+LayerScale+DSPP"] == folder["baselines"]["MS-VSSM"]
    assert full == dict((n, c.out) for n, _, c in plan.sweep("protocols", "frame").configs([0]))["MS-VSSM"]
    assert folder["ablation"]["VSSM"] == folder["baselines"]["VSSM"]
    assert list(plan.ablation_rows()) == list(ABLATION_FLAGS)
    middle = [r for r in plan.ablation_rows().values() if "model_kwargs" in r]
    assert [r["model_kwargs"] for r in middle] == [f for f in ABLATION_FLAGS.values() if any(f.values()) and not all(f.values())]
    assert plan.sweep("ablation", rows=["VSSM"]).rows == {"VSSM": {"model": "vssm_nano"}}
    with pytest.raises(ValueError, match="no row"):
        plan.sweep("ablation", rows=["VSSM+DSPP"])
    with pytest.raises(ValueError, match="part="):
        plan.sweep("tables")


def test_the_cpu_plan_pins_one_thread_a_run_and_lists_the_longest_runs_first(faces):
    plan = course_plan("cpu", faces, faces.parent / "runs")
    runs = plan.runs(jobs=2)
    assert {cfg.threads for _, _, cfg, _ in runs} == {1}, "a run's numbers must not depend on what ran beside it"
    assert default_jobs("cpu") == 2 and default_jobs("smoke") == 1 and default_jobs("gpu") >= 1
    models = [cfg.model for _, _, cfg, _ in runs]
    assert models.index("vssm_nano") > max(i for i, m in enumerate(models) if m == "msvssm_nano")


def test_seeds_parse_from_notebook_parameters():
    assert parse_seeds("", [0, 1]) == [0, 1] and parse_seeds("3, 4", [0]) == [3, 4] and parse_seeds([5], [0]) == [5]
    with pytest.raises(ValueError, match="comma-separated"):
        parse_seeds("0;1", [0])


def test_no_notebook_keeps_a_second_list_of_runs():
    """Notebooks 03-11 ask the plan for their sweeps: none builds a Sweep or adds rows of its own."""
    import nbformat

    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(nb, 4).cells if c.cell_type == "code")
        assert not re.search(r"\bSweep\(|\.add\(\s*\"", code), f"{nb.name} declares runs outside msvssm.train.plan"
        if re.search(r"\.run\(seeds=", code):
            assert "course_plan(" in code, nb.name


def test_plan_train_hands_every_run_to_the_sweep_with_the_jobs(faces, monkeypatch):
    from msvssm.train import plan as plan_module

    seen = {}
    monkeypatch.setattr(plan_module, "train_planned",
                        lambda runs, root, jobs, launcher, progress: seen.update(runs=runs, jobs=jobs, root=root))
    plan = course_plan("cpu", faces, faces.parent / "runs")
    plan.train(jobs=2)
    assert seen["jobs"] == 2 and len(seen["runs"]) == 23 and seen["root"] == faces.parent / "runs"


def test_reproduce_trains_the_plan_before_the_notebooks(tmp_path, monkeypatch):
    from msvssm import reproduce

    calls = []
    monkeypatch.setattr("msvssm.data.prepare.prepare_faces", lambda *a, **k: tmp_path / "faces")
    monkeypatch.setattr(reproduce, "train_plan",
                        lambda profile, faces, root, jobs, parts: calls.append(("plan", jobs, tuple(parts))) or 0)
    monkeypatch.setattr(reproduce, "run_notebook", lambda nb, out, params: calls.append(("nb", nb.name)) or out / nb.name)
    monkeypatch.setattr("msvssm.results.collect", lambda *a, **k: tmp_path / "results.md")
    nbs = [str(tmp_path / "08_ablation.ipynb"), str(tmp_path / "09_baselines.ipynb")]
    assert reproduce.main(["--profile", "cpu", "--data", str(tmp_path), "--jobs", "3", *nbs]) == 0
    assert calls == [("plan", 3, ("ablation", "baselines", "chaos")), ("nb", "08_ablation.ipynb"),
                     ("nb", "09_baselines.ipynb")], "only the parts the notebooks about to run read"
    calls.clear()
    assert reproduce.main(["--profile", "cpu", "--data", str(tmp_path), "--jobs", "0", *nbs]) == 0
    assert calls[0] == ("nb", "08_ablation.ipynb"), "--jobs 0: the notebooks train what they need"
    calls.clear()
    assert reproduce.main(["--profile", "cpu", "--data", str(tmp_path), str(tmp_path / "01_data.ipynb")]) == 0
    assert calls == [("nb", "01_data.ipynb")], "a notebook that reads no run trains nothing first"


def test_the_cli_lists_the_plan_with_each_runs_state(faces, capsys):
    from msvssm.cli import main

    assert main(["plan", "--profile", "cpu-cv", "--data", str(faces), "--set", "device=cpu"]) == 0
    out = capsys.readouterr().out
    assert "plan cpu-cv: 37 runs" in out and "0 finished, 37 to train" in out
    assert out.count("to train ") == 37 and "ablation: VSSM+SE " in out and "protocols/subject/fold2: VSSM" in out
    assert "subject 3/3" in out


def test_a_sweep_of_several_jobs_keys_each_run_by_its_share_of_the_cores(faces, tmp_path):
    """threads=0 (torch's default) under --jobs N becomes each job's share of the cores before the run is keyed:
    on a CPU the thread count is an input (it changes the order of float sums)."""
    import torch

    from msvssm.train import TrainConfig
    from msvssm.train.sweep import Sweep, job_resources

    base = TrainConfig.from_profile("smoke", data=str(faces), device="cpu", threads=0)  # torch's default count
    sweep = Sweep(tmp_path, base).add("A", model="vssm_nano")
    (_, _, one, inputs_one), = sweep.planned([0])
    (_, _, two, inputs_two), = sweep.planned([0], jobs=2)
    assert one.threads == 0 and two.threads == job_resources(2, 0)[0]
    assert inputs_one["runtime"]["cpu_threads"] == torch.get_num_threads()
    assert inputs_two["runtime"]["cpu_threads"] == two.threads
    assert (one.out == two.out) == (torch.get_num_threads() == two.threads)


def test_parts_select_the_runs_of_the_notebooks_that_read_them(faces):
    from msvssm.train.plan import NOTEBOOK_PARTS, PARTS

    plan = course_plan("cpu-cv", faces, faces.parent / "runs")
    assert {p for parts in NOTEBOOK_PARTS.values() for p in parts} == set(PARTS)
    assert len(plan.runs(parts=["training"])) == 1 and len(plan.runs(parts=["chaos"])) == 2
    assert len(plan.runs(parts=["baselines"])) == 12 and len(plan.runs()) == 37
    assert len(plan.runs(parts=["protocols"])) == 6 + 2 * 3 * 3, "frame: 2 rows x 3 seeds; trial, subject: 3 rows x 3 folds"
    assert plan.runs()[0][2].model_kwargs == {"fused_scan": False}, "the slowest run (composed scan) starts first"
    with pytest.raises(ValueError, match="unknown part"):
        plan.runs(parts=["tables"])


def test_the_plan_keeps_absolute_folders_so_notebooks_in_another_directory_find_the_data(faces, monkeypatch):
    """make reproduce passes --data data (relative); the notebooks run in notebooks/ and read each run's config.json."""
    monkeypatch.chdir(faces.parent.parent)
    plan = course_plan("cpu", Path(faces.parent.name) / faces.name, Path(faces.parent.name) / "runs")
    assert Path(plan.base.data).is_absolute() and plan.runs_root.is_absolute()
    assert all(Path(cfg.out).is_absolute() and Path(cfg.data) == faces for _, _, cfg, _ in plan.runs())

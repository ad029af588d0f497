"""msvssm sweep --jobs N: runs trained at once in processes of their own, with the numbers of one at a time,
and a failed run that does not stop the others."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from msvssm.train.checkpoint import load_checkpoint
from msvssm.train.sweep import Sweep, SweepError

sys.path.insert(0, str(Path(__file__).parent))
from test_train import make_image_folder, tiny_config  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("sweep-parallel") / "data", participants=4, per_class=6)


def _sweep(folder: Path, root: Path) -> Sweep:
    base = tiny_config(folder, root / "unused", epochs=2, threads=1)  # threads fixed: the same sums either way
    return Sweep(root, base).add("A", model="vssm_nano").add("B", model="vssm_nano", lr=3e-3)


def test_two_jobs_give_the_numbers_of_one(folder, tmp_path, caplog):
    caplog.set_level("INFO")
    one = _sweep(folder, tmp_path / "one").run(seeds=[0], progress=False, jobs=1).set_index("name")
    two = _sweep(folder, tmp_path / "two").run(seeds=[0], progress=False, jobs=2).set_index("name")
    for column in ("accuracy", "weighted_f1", "best_epoch"):
        assert one[column].to_dict() == two[column].to_dict(), column
    for name in ("A", "B"):
        a = load_checkpoint(Path(one.loc[name, "run"]) / "last.pt")["model"]
        b = load_checkpoint(Path(two.loc[name, "run"]) / "last.pt")["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name}: weights differ"
        assert Path(one.loc[name, "run"]).name == Path(two.loc[name, "run"]).name  # same inputs, same key
    lines = caplog.text
    assert "sweep: queued A seed 0" in lines and "sweep: running B seed 0 (job" in lines and "sweep: done A seed 0" in lines
    assert (tmp_path / "two" / "logs").is_dir()
    # a second call finds both in the cache and starts no process
    caplog.clear()
    _sweep(folder, tmp_path / "two").run(seeds=[0], progress=False, jobs=2)
    assert "2 already finished, 0 to train" in caplog.text and "sweep: running" not in caplog.text


def test_a_failed_run_does_not_stop_the_others(folder, tmp_path):
    sweep = _sweep(folder, tmp_path / "runs").add("broken", model="vssm_nano", model_kwargs={"no_such_option": 1})
    with pytest.raises(SweepError, match="1 of 3 runs failed: broken seed 0") as info:
        sweep.run(seeds=[0], progress=False, jobs=2)
    assert "no_such_option" in info.value.failed[0][2]
    done = sweep.results(seeds=[0])
    assert sorted(done["name"]) == ["A", "B"]  # the others finished


def test_the_cli_exit_status_counts_the_failed_runs(folder, tmp_path, capsys):
    from msvssm.cli import main

    args = ["sweep", "--profile", "smoke", "--data", str(folder), "--root", str(tmp_path / "runs"), "--models",
            "vssm_nano", "msvssm_nano", "--jobs", "2", "--set", "image_size=32", "--set", "device=cpu",
            "--set", "threads=1", "--set", 'model_kwargs={"no_such_option": 1}']
    assert main(args) == 2  # both runs failed
    assert "2 of 2 runs failed" in capsys.readouterr().err

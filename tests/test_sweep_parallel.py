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


# ----------------------------------------------------------------------------- submitit (local executor)


def test_submitit_local_executor_gives_the_numbers_of_in_process_runs(folder, tmp_path):
    from msvssm.train.sweep import Launcher

    here = _sweep(folder, tmp_path / "here").run(seeds=[0], progress=False).set_index("name")
    there = _sweep(folder, tmp_path / "there").run(
        seeds=[0], progress=False, launcher=Launcher(cluster="local", cpus_per_run=1, timeout_min=10)).set_index("name")
    for column in ("accuracy", "weighted_f1", "best_epoch"):
        assert here[column].to_dict() == there[column].to_dict(), column
    assert any((tmp_path / "there" / "submitit").iterdir()), "submitit's logs are kept beside the runs"


def test_a_killed_and_resubmitted_job_finishes_like_an_uninterrupted_run(folder, tmp_path):
    """A requeue as on a cluster: the job is killed mid-run (SIGKILL, no checkpoint), submitted again, and
    --resume continues after the last finished epoch: same metrics and weights as a run never stopped."""
    import os
    import signal
    import time

    from msvssm.train import train
    from msvssm.train.sweep import Launcher, TrainJob, submitit_executor

    cfg = tiny_config(folder, tmp_path / "uninterrupted", epochs=6, threads=1)
    reference = train(cfg, progress=False)
    cfg = cfg.replace(out=str(tmp_path / "requeued"))
    executor = submitit_executor(Launcher(cluster="local", cpus_per_run=1, timeout_min=10), tmp_path / "logs")
    job = executor.submit(TrainJob(cfg))
    history = Path(cfg.out) / "history.csv"
    deadline = time.time() + 240
    while time.time() < deadline and not (history.exists() and len(history.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    assert not (Path(cfg.out) / "metrics.json").exists(), "the run finished before it could be killed"
    os.kill(job._process.pid, signal.SIGKILL)
    job._process.wait()
    epochs_done = len(history.read_text().splitlines()) - 1
    assert 1 <= epochs_done < 6
    again = executor.submit(TrainJob(cfg))
    again.result()
    a = json.loads((reference / "metrics.json").read_text())
    b = json.loads((Path(cfg.out) / "metrics.json").read_text())
    assert (a["accuracy"], a["weighted_f1"], a["confusion"]) == (b["accuracy"], b["weighted_f1"], b["confusion"])
    wa, wb = load_checkpoint(reference / "last.pt")["model"], load_checkpoint(Path(cfg.out) / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

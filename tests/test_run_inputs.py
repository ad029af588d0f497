"""Runs keyed by what they were computed from: data regenerated in place, changed code or a changed
split file is trained again or refused with what changed, never reused silently."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msvssm.train import RunError, TrainConfig, evaluate_run, train
from msvssm.train import inputs as run_inputs_module
from msvssm.train.inputs import changed_inputs, code_fingerprint, read_inputs, run_inputs, source_fingerprint
from msvssm.train.sweep import Sweep, run_dir_for, run_key

from test_train import make_image_folder, tiny_config


def regenerate_in_place(data: Path, seed: int) -> None:
    """What `make reproduce` after a generator fix does: the same file names, other pixels (and a new manifest)."""
    make_image_folder(data, participants=4, per_class=6, seed=seed)


@pytest.fixture()
def data(tmp_path) -> Path:
    return make_image_folder(tmp_path / "data", participants=4, per_class=6, seed=0)


def test_the_key_follows_the_content_of_the_data_not_its_path(data, tmp_path):
    cfg = tiny_config(data, tmp_path / "o", epochs=1)
    key = run_key(cfg)
    copy = tmp_path / "elsewhere"
    shutil.copytree(data, copy)
    assert run_key(cfg.replace(data=str(copy))) == key  # same content, another folder: the same run
    regenerate_in_place(data, seed=1)
    assert run_key(cfg) != key  # same folder and file names, other pixels: another run


def test_the_key_changes_when_only_crops_change(data, tmp_path):
    """The manifest can stay byte-identical while the crops change (a renderer fix): the crops count."""
    cfg = tiny_config(data, tmp_path / "o", epochs=1)
    manifest = (data / "manifest.csv").read_bytes()
    key = run_key(cfg)
    crop = data / pd.read_csv(data / "manifest.csv")["path"].iloc[0]
    from PIL import Image

    pixels = np.asarray(Image.open(crop)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(crop)
    assert (data / "manifest.csv").read_bytes() == manifest
    assert run_key(cfg) != key


def test_the_key_follows_the_split_file_and_the_code(data, tmp_path, monkeypatch):
    cfg = tiny_config(data, tmp_path / "o", epochs=1)
    key = run_key(cfg)
    assert run_key(cfg.replace(out=str(tmp_path / "other"), workers=0)) == key  # where it writes, decoders: no
    import torch

    same = cfg.threads or torch.get_num_threads()
    assert run_key(cfg.replace(threads=0)) == run_key(cfg.replace(threads=torch.get_num_threads()))  # 0: torch's default
    assert run_key(cfg.replace(threads=same)) == key
    assert run_key(cfg.replace(threads=same + 1)) != key  # another thread count sums in another order
    assert run_key(cfg.replace(lr=cfg.lr * 2)) != key
    monkeypatch.setattr(run_inputs_module, "code_fingerprint", lambda: {**code_fingerprint(), "ops": "edited"})
    assert run_key(cfg) != key


def test_comments_and_docstrings_do_not_change_the_code_fingerprint(tmp_path):
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('def f(x):\n    """Doc."""\n    return x + 1\n')
    b.write_text('def f(x):  # a comment\n    """Another doc, longer."""\n\n    return x + 1\n')
    c.write_text('def f(x):\n    """Doc."""\n    return x + 2\n')
    assert source_fingerprint(a) == source_fingerprint(b) != source_fingerprint(c)


def test_a_sweep_retrains_after_the_data_is_regenerated_in_place(data, tmp_path, monkeypatch):
    import msvssm.train.sweep as sweep_module

    trained = []
    real_train = sweep_module.train
    monkeypatch.setattr(sweep_module, "train", lambda cfg, **kw: trained.append(cfg.out) or real_train(cfg, **kw))
    base = tiny_config(data, tmp_path, epochs=1)
    sweep = Sweep(tmp_path / "runs", base).add("VSSM", model="vssm_nano")
    first = sweep.run(seeds=[0], progress=False)
    sweep.run(seeds=[0], progress=False)
    assert len(trained) == 1  # unchanged inputs: reused

    regenerate_in_place(data, seed=1)
    second = sweep.run(seeds=[0], progress=False)
    assert len(trained) == 2 and trained[0] != trained[1]  # new inputs: a new run in a new folder
    assert first["run"].iloc[0] != second["run"].iloc[0]
    saved = read_inputs(second["run"].iloc[0])
    assert saved["data"]["crops_sha256"] != read_inputs(first["run"].iloc[0])["data"]["crops_sha256"]
    # the old run is still on disk, but no table reports it any more
    assert list(sweep.results(seeds=[0])["run"]) == [second["run"].iloc[0]]


def test_a_finished_folder_with_other_inputs_is_refused_not_reused(data, tmp_path):
    """A folder named by the key but holding another run (edited, copied, or made before inputs.json)."""
    base = tiny_config(data, tmp_path, epochs=1)
    sweep = Sweep(tmp_path / "runs", base).add("VSSM", model="vssm_nano")
    run = Path(sweep.run(seeds=[0], progress=False)["run"].iloc[0])
    saved = json.loads((run / "inputs.json").read_text())
    saved["data"]["crops_sha256"] = "0" * 64
    (run / "inputs.json").write_text(json.dumps(saved))
    with pytest.raises(RunError, match=r"cannot reuse .*the face crops changed"):
        sweep.run(seeds=[0], progress=False)
    (run / "inputs.json").unlink()
    with pytest.raises(RunError, match="has no inputs.json"):
        sweep.run(seeds=[0], progress=False)
    assert sweep.results(seeds=[0]).empty


def test_resuming_on_regenerated_data_is_refused_with_what_changed(data, tmp_path):
    cfg = tiny_config(data, tmp_path / "run", epochs=1)
    train(cfg, progress=False)
    (tmp_path / "run" / "metrics.json").unlink()  # as if killed before the test evaluation
    regenerate_in_place(data, seed=1)
    with pytest.raises(RunError, match=r"cannot resume .*the face crops changed"):
        train(cfg, resume=True, progress=False)


def test_scoring_a_run_on_changed_data_is_refused(data, tmp_path):
    run = train(tiny_config(data, tmp_path / "run", epochs=1), progress=False)
    evaluate_run(run, split="val", figures=False)  # unchanged: fine
    regenerate_in_place(data, seed=1)
    with pytest.raises(RunError, match="trained on other data"):
        evaluate_run(run, split="val", figures=False)


def test_a_split_file_made_from_another_manifest_is_made_again(data, tmp_path):
    from msvssm.train.run import split_file_for

    cfg = tiny_config(data, tmp_path / "o")
    path = split_file_for(cfg)
    before = path.read_text()
    manifest = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    manifest = manifest.iloc[:-8]  # the regenerated data has fewer usable frames
    manifest.to_csv(data / "manifest.csv", index=False)
    after = split_file_for(cfg).read_text()
    assert after != before and len(after.splitlines()) == len(manifest) + 1


def test_changed_inputs_names_each_change(data, tmp_path):
    from msvssm.train.run import split_file_for

    cfg = tiny_config(data, tmp_path / "o")
    now = run_inputs(cfg, split_file_for(cfg))
    assert changed_inputs(now, now) == []
    old = json.loads(json.dumps(now))
    old["config"]["lr"] = 0.5
    old["code"]["ops"] = "x"
    old["versions"]["torch"] = "1.0"
    old["split"]["sha256"] = "y"
    text = "; ".join(changed_inputs(old, now))
    for phrase in ("lr: 0.5 ->", "library code that computes a run changed (msvssm: ops)", "torch 1.0 ->",
                   "split file frame_seed0.csv changed"):
        assert phrase in text, text
    assert changed_inputs(None, now) == ["the run folder has no inputs.json (made before runs recorded their inputs)"]


def test_run_dir_names_the_model_split_seed_and_key(data, tmp_path):
    cfg = tiny_config(data, tmp_path / "o", seed=2)
    assert run_dir_for(tmp_path, cfg).name == f"vssm_nano-frame-s2-{run_key(cfg)}"


def test_the_key_is_the_same_in_another_process_and_from_a_relative_path(data, tmp_path):
    import subprocess
    import sys

    cfg = tiny_config(data, tmp_path / "o")
    script = ("import sys; sys.path.insert(0, sys.argv[2]); from test_train import tiny_config; "
              "from msvssm.train.sweep import run_key; from pathlib import Path; "
              "print(run_key(tiny_config(Path(sys.argv[1]), Path('o'))))")
    tests_dir = str(Path(__file__).parent)
    relative = subprocess.run([sys.executable, "-c", script, "data", tests_dir], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.split()[-1]
    assert relative == run_key(cfg)


def test_the_label_order_and_the_device_are_inputs(data, tmp_path):
    from msvssm.train.run import split_file_for

    cfg = tiny_config(data, tmp_path / "o")
    key = run_key(cfg)
    inputs = run_inputs(cfg, split_file_for(cfg))
    import torch

    assert inputs["runtime"] == {"device": "cpu", "amp": "float32", "cpu_threads": cfg.threads or torch.get_num_threads()}
    classes = json.loads((data / "classes.json").read_text()) if (data / "classes.json").exists() else None
    (data / "classes.json").write_text(json.dumps(list(reversed(classes or ["HVHA", "HVLA", "LVHA", "LVLA"]))))
    assert run_key(cfg) != key
    cuda = json.loads(json.dumps(inputs))
    cuda["runtime"] = {"device": "cuda", "amp": "torch.bfloat16"}
    assert "the device, precision or CPU thread count changed" in "; ".join(changed_inputs(cuda, inputs))


def test_a_process_whose_library_changed_on_disk_refuses_to_key_runs(tmp_path):
    """A notebook kernel runs the code it imported: after an edit on disk its runs cannot be keyed by the new code."""
    from msvssm.train.inputs import CODE_PARTS, PACKAGE_ROOT, LibraryChangedError

    root = tmp_path / "msvssm"
    for part in CODE_PARTS:
        src = PACKAGE_ROOT / part
        if src.is_dir():
            shutil.copytree(src, root / part)
        else:
            (root / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / part)
    first = code_fingerprint(root)
    assert code_fingerprint(root) == first
    loop = root / "train" / "loop.py"
    loop.write_text(loop.read_text() + "\nEDITED = True\n")
    with pytest.raises(LibraryChangedError, match="restart the kernel|Restart the kernel"):
        code_fingerprint(root)

"""The package as a user gets it: ``pip install msvssm`` (the core) and its extras, from a built wheel.

* ``test_core_runs_without_optional_packages`` (fast): with dlib, OpenCV, scikit-image, captum,
  fvcore, papermill and mamba-ssm made unimportable, every module imports, ``msvssm --help``
  works and a model runs forward; features that need an extra fail with a message naming it.
* ``test_requirements_pin_every_declared_dependency`` (fast): requirements.txt (what ``make venv``
  installs) pins every package pyproject.toml declares, at the version of requirements-lock.txt.
* ``test_wheel_installs_into_a_fresh_venv`` (slow): builds the wheel, installs it non-editable into
  a new virtual environment with ``-c requirements-lock.txt``, then
  core only: exactly msvssm's requirements are installed (no dlib, OpenCV, scikit-image, captum,
  fvcore); ``msvssm --help``, a forward pass, one epoch of ``msvssm train``, and ``msvssm predict``
  failing with a message naming "msvssm[faces]";
  ``[faces]``: ``msvssm predict`` on assets/sample_face.jpg prints its table;
  ``[analysis]``: HOG features, captum saliency and fvcore FLOPs run; then ``pip check``.

  To keep it near a minute and a half, torch, torchvision and the packages they require (the CUDA
  build: about 5.5 GB) are not unpacked again: the new environment sees them through a ``.pth``
  file naming a folder of symlinks into this environment that holds exactly the dependency closure
  of torch and torchvision, nothing else. Everything else is installed by pip from the wheel's
  metadata, and the test checks that each linked distribution is required by msvssm's core, so the
  links cannot hide a dependency. ``MSVSSM_INSTALL_TEST_FULL=1`` installs torch into the new
  environment too (about 5 minutes more, 6 GB of disk).
"""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "lib" / "msvssm"
LOCK = REPO / "requirements-lock.txt"
SAMPLE_PHOTO = REPO / "assets" / "sample_face.jpg"

# Import names of the optional packages: none may be needed by the core.
OPTIONAL_MODULES = ("cv2", "dlib", "skimage", "captum", "fvcore", "papermill", "mamba_ssm", "submitit")
# Modules that are the faces feature itself (they require OpenCV when imported).
NEED_FACES_TO_IMPORT = {"msvssm.data.faces", "msvssm.data.video"}
# Linked into the test environment instead of installed (with the packages they require).
LINKED_ROOTS = ("torch", "torchvision")
NEVER_LINKED = {"pip", "setuptools", "wheel"}


def _modules() -> list[str]:
    names = []
    for path in sorted(LIB.rglob("*.py")):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return [n for n in names if n not in NEED_FACES_TO_IMPORT and not n.endswith("__main__")]


# ----------------------------------------------------------------------------- the core, in this environment

CORE_SCRIPT = r'''
import importlib, importlib.abc, sys

BLOCKED = set(BLOCKED_NAMES)


class Block(importlib.abc.MetaPathFinder):
    """Make the optional packages unimportable, as in an environment without the extras."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, Block())
assert not BLOCKED & {m.partition(".")[0] for m in sys.modules}

import numpy as np
import torch

from msvssm.models import build_model

model = build_model("msvssm_nano", num_classes=4, scan_backend="chunked").eval()
with torch.no_grad():
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4)

from msvssm.cli import build_parser

help_text = build_parser().format_help()
assert "predict" in help_text and "train" in help_text, help_text
for name in MODULES:
    importlib.import_module(name)
loaded = BLOCKED & {m.partition(".")[0] for m in sys.modules}
assert not loaded, f"importing msvssm loaded optional packages: {loaded}"

from msvssm.optional import MissingExtraError


def needs(extra, call):
    try:
        call()
    except MissingExtraError as err:
        assert f'"msvssm[{extra}]"' in str(err), str(err)
        print(f"{extra}: {err}")
    else:
        raise AssertionError(f"{call} ran without its extra {extra}")


import msvssm.classical, msvssm.flops, msvssm.inside, msvssm.reproduce
from pathlib import Path

needs("faces", lambda: importlib.import_module("msvssm.data.faces"))
needs("faces", lambda: importlib.import_module("msvssm.data.video"))
needs("analysis", lambda: msvssm.classical.hog_features(np.zeros((1, 16, 16), np.uint8)))
needs("analysis", lambda: msvssm.flops.count_flops(model, (3, 64, 64)))
needs("analysis", lambda: msvssm.inside.saliency_maps(model, torch.rand(1, 3, 64, 64), [0]))
needs("notebooks", lambda: msvssm.reproduce.run_notebook(Path("x.ipynb"), Path("."), {}))
print("core ok")
'''


def test_core_runs_without_optional_packages():
    """Models, the CLI and every module work with none of the extras' packages importable."""
    script = CORE_SCRIPT.replace("BLOCKED_NAMES", repr(OPTIONAL_MODULES)).replace("MODULES", repr(_modules()))
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "core ok" in proc.stdout


# ----------------------------------------------------------------------------- pins


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {line} is not a pin"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_requirements_pin_every_declared_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    assert {"faces", "analysis", "notebooks", "gpu", "test"} <= set(extras), f"extras: {sorted(extras)}"
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in ("faces", "analysis", "notebooks", "cluster", "test"):  # gpu and bench: installed separately
        declared += [Requirement(r) for r in extras[extra] if canonicalize_name(Requirement(r).name) != "msvssm"]
    pinned, locked = _pins(REPO / "requirements.txt"), _pins(LOCK)
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in pinned, f"requirements.txt does not pin {req.name} (pyproject.toml: {req})"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} does not meet {req}"
    for name, version in pinned.items():
        if name != "setuptools":  # pip freeze leaves it out of the lock
            assert locked.get(name) == version, f"requirements.txt: {name}=={version}, lock: {locked.get(name)}"
    core = {canonicalize_name(r.name) for r in declared[: len(project["dependencies"])]}
    assert not core & {"dlib-bin", "dlib", "opencv-python-headless", "scikit-image", "captum", "fvcore"}


# ----------------------------------------------------------------------------- a real install


def _closure(dists: dict[str, md.Distribution], roots: list[tuple[str, tuple[str, ...]]]) -> set[str]:
    """Names of ``roots`` and everything they require (markers evaluated here, extras followed)."""

    def wanted(req: Requirement, extra: str) -> bool:
        if req.marker is None:
            return extra == ""
        return req.marker.evaluate({"extra": extra}) and (extra == "" or not req.marker.evaluate({"extra": ""}))

    seen: set[tuple[str, str]] = set()
    todo = [(canonicalize_name(n), e) for n, extras in roots for e in ("", *extras)]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        assert name in dists, f"{name} is required but not installed"
        for req in map(Requirement, dists[name].requires or []):
            if wanted(req, extra):
                todo += [(canonicalize_name(req.name), e) for e in ("", *sorted(req.extras))]
    return {name for name, _ in seen}


def _by_name(paths: list[str]) -> dict[str, md.Distribution]:
    out: dict[str, md.Distribution] = {}
    for dist in md.distributions(path=paths):
        out.setdefault(canonicalize_name(dist.metadata["Name"]), dist)  # first on the path wins, as in import
    return out


def _link_torch(base: Path) -> set[str]:
    """``base``: symlinks to torch, torchvision and their requirements in this environment; their names."""
    here = _by_name(sys.path)
    locked = _pins(LOCK)
    names = _closure(here, [(n, ()) for n in LINKED_ROOTS]) - NEVER_LINKED
    for name in names:
        if locked.get(name) != here[name].version:
            pytest.skip(f"this environment has {name} {here[name].version}, the lock {locked.get(name)}: "
                        "run make venv (or MSVSSM_INSTALL_TEST_FULL=1)")
    owner: dict[str, set[str]] = {}  # top-level entry of site-packages -> the distributions with files there
    for name, dist in here.items():
        for f in dist.files or []:
            if f.parts[0] not in ("..", "__pycache__") and not f.parts[0].endswith(".pth"):
                owner.setdefault(f.parts[0], set()).add(name)
    site = {Path(here[n].locate_file("")) for n in names}
    assert len(site) == 1, site
    (site,) = site
    base.mkdir()
    for entry, owners in owner.items():
        if owners & names and (site / entry).exists():
            assert owners <= names, f"{entry} is shared by {owners - names} outside torch's requirements"
            (base / entry).symlink_to(site / entry)
    return names


def _run(cmd: list, *, env: dict, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    print(f"[{time.monotonic() - start:5.1f} s] {' '.join(map(str, cmd))[:160]} -> {proc.returncode}")
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc


# Run by the new environment's python, core only: a forward pass, a tiny data set, one epoch of
# training through the command line, then `msvssm predict`, which must ask for the faces extra.
CORE = r'''
import sys
from pathlib import Path

import torch

import msvssm
from msvssm.cli import main
from msvssm.data import make_quadrant_folder
from msvssm.models import build_model

assert Path(msvssm.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), msvssm.__file__
assert "numba" in msvssm.available_scan_backends(), msvssm.available_scan_backends()
model = build_model("msvssm_nano", num_classes=4, scan_backend="chunked").eval()
with torch.no_grad():
    out = model(torch.rand(2, 3, 64, 64))
assert out.shape == (2, 4) and torch.isfinite(out).all()

tmp, photo = Path(sys.argv[1]), sys.argv[2]
data, run = tmp / "data", tmp / "run"
make_quadrant_folder(data, participants=2, per_class=4)  # the library's toy folder: core only
assert main(["train", "--profile", "smoke", "--data", str(data), "--out", str(run), "--model", "vssm_nano",
             "--no-progress", "--set", "image_size=32", "--set", "epochs=1", "--set", "batch_size=8",
             "--set", "scan_backend=chunked"]) == 0
assert (run / "best.pt").exists() and (run / "metrics.json").exists() and (run / "confusion.png").exists()
optional = {"cv2", "dlib", "skimage", "captum", "fvcore"} & {m.partition(".")[0] for m in sys.modules}
assert not optional, f"the core imported {optional}"
assert main(["predict", photo, "--run", str(run)]) == 2  # the message goes to stderr; the test reads it
print("core ok")
'''


# With the analysis extra: the classical baseline's HOG (scikit-image), captum attributions, fvcore FLOPs.
ANALYSIS = r'''
import numpy as np
import torch

from msvssm.classical import hog_features
from msvssm.flops import count_flops
from msvssm.inside import saliency_maps
from msvssm.models import build_model

assert hog_features(np.zeros((2, 32, 32), np.uint8)).shape[0] == 2
model = build_model("vssm_nano", num_classes=4, scan_backend="chunked").eval()
assert saliency_maps(model, torch.rand(1, 3, 32, 32), [0]).shape == (1, 32, 32)
assert count_flops(model, (3, 32, 32))["flops"] > 0
print("analysis ok")
'''


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv(tmp_path):
    full = os.environ.get("MSVSSM_INSTALL_TEST_FULL", "") not in ("", "0")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "MSVSSM_SCAN_BACKEND")}
    env.update(MPLBACKEND="Agg", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    start = time.monotonic()

    # 1. The wheel, built from a copy of the sources (an in-tree build would write build/ into the checkout).
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "lib", src / "lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc", "*.nbi", "*.nbc"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", src, "-w", tmp_path / "dist"],
         env=env, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("msvssm-*.whl")

    # 2. A fresh environment (no pip of its own: this environment's pip installs into it).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], env=env, cwd=tmp_path)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     env=env, cwd=tmp_path).stdout.strip())
    linked: set[str] = set()
    if not full:
        linked = _link_torch(tmp_path / "torch-closure")
        (site / "_msvssm_test_torch.pth").write_text(str(tmp_path / "torch-closure") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile", "-c", LOCK]
    venv_env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}

    # 3. The core: models, training and the command line; no dlib, OpenCV, scikit-image, captum, fvcore.
    _run([*pip, wheel], env=env, cwd=tmp_path)
    dists = _by_name([str(site), str(tmp_path / "torch-closure")])
    core = _closure(dists, [("msvssm", ())])
    assert linked <= core, f"linked but not required by msvssm: {linked - core}"
    heavy = {"dlib-bin", "opencv-python-headless", "scikit-image", "captum", "fvcore"} & set(dists)
    assert not heavy, f"pip install msvssm (no extras) installed {sorted(heavy)}"
    assert set(dists) - core <= NEVER_LINKED, f"installed but not required: {set(dists) - core}"

    help_out = _run([bin_dir / "msvssm", "--help"], env=venv_env, cwd=tmp_path).stdout
    assert "predict" in help_out and "train" in help_out
    photo = tmp_path / SAMPLE_PHOTO.name
    shutil.copy2(SAMPLE_PHOTO, photo)
    (tmp_path / "core.py").write_text(CORE)
    core_run = _run([python, tmp_path / "core.py", tmp_path, photo], env=venv_env, cwd=tmp_path)
    assert "core ok" in core_run.stdout
    assert '"msvssm[faces]"' in core_run.stderr, core_run.stderr[-4000:]  # what predict said without the extra
    run = tmp_path / "run"

    # 4. The faces extra: msvssm predict on the sample photo, the results table printed to the end.
    _run([*pip, f"{wheel}[faces]"], env=env, cwd=tmp_path)
    pred = _run([bin_dir / "msvssm", "predict", photo, "--run", run, "--out", tmp_path / "pred"], env=venv_env,
                cwd=tmp_path)
    assert re.search(r"^\|[-:| ]+\|$", pred.stdout, re.M), pred.stdout  # a markdown table (pandas + tabulate)
    report = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(report["predictions"]) == 1 and not report["failures"], report
    assert report["predictions"][0]["label"] in report["classes"]

    # 5. The analysis extra: scikit-image, captum, fvcore.
    _run([*pip, f"{wheel}[analysis]"], env=env, cwd=tmp_path)
    (tmp_path / "analysis.py").write_text(ANALYSIS)
    assert "analysis ok" in _run([python, tmp_path / "analysis.py"], env=venv_env, cwd=tmp_path).stdout
    _run([sys.executable, "-m", "pip", "--python", python, "check"], env=env, cwd=tmp_path)
    print(f"install test: {time.monotonic() - start:.0f} s ({'full install' if full else 'torch linked'})")

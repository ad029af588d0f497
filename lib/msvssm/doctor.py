"""``msvssm info`` (alias ``msvssm doctor``): what this machine has, what it will run, and how to fix what is missing.

    msvssm info                        # the report, section by section
    msvssm info --profile gpu --strict # exit status 1 when the gpu profile cannot run here
    msvssm info --json                 # the same facts as one JSON object (bug reports, tests)

:func:`collect` gathers the facts (no printing): Python, msvssm, torch and CUDA, the NVIDIA
driver, each GPU, mamba-ssm, the scan backends ``auto`` picks, threads, the optional extras,
the data and run folders, the models. Each probe is wrapped, so one that fails is reported
(its error in place of its facts) and the rest still run. From the facts it derives the
problems, each with the command that fixes it, and what each profile needs
(:func:`derive`). :func:`format_report` turns the facts into text.

The report is quick (about 2-3 s on a CPU, most of it importing torch) and local: it never
downloads anything, imports no model code (timm) and runs ``nvidia-smi`` with a short timeout.
This module imports only the standard library at import time, so ``msvssm --help`` stays fast.
"""
from __future__ import annotations

import argparse
import ast
import csv
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

PACKAGE_DIR = Path(__file__).resolve().parent
REPO = PACKAGE_DIR.parents[1]  # the checkout root when running from a checkout (lib/msvssm)
PROFILE_NAMES = ("smoke", "cpu", "gpu")
NVIDIA_SMI_TIMEOUT_S = 5.0
MIN_PYTHON = (3, 10)
# Oldest Linux driver for each CUDA major version (NVIDIA's CUDA release notes, minor-version compatibility).
MIN_DRIVER = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}
# Optional modules the report imports (a broken build shows up); the others are only looked up.
IMPORTED_EXTRAS = ("dlib", "cv2")
LOOKED_UP_EXTRAS = ("skimage", "captum", "fvcore", "scipy", "papermill")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")

Facts = dict[str, Any]


# ----------------------------------------------------------------------------- helpers


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _dist_version(*names: str) -> str | None:
    """The installed version of the first distribution found among ``names`` (no import)."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _in_checkout() -> bool:
    return (REPO / ".git").exists() and (REPO / "pyproject.toml").is_file()


def _pip_extra(extra: str) -> str:
    """The command that installs ``extra``: from the checkout when there is one."""
    if _in_checkout():
        return f'pip install -e ".[{extra}]"  (or: make venv)'
    return f'pip install "msvssm[{extra}]"'


def _import_optional(module: str):
    """``msvssm.optional.require(module)``; a separate function so tests can make a module missing."""
    from .optional import require

    return require(module)


def _run_nvidia_smi(exe: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [exe, "--query-gpu=driver_version,name", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S,
    )


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


# ----------------------------------------------------------------------------- probes
# Each probe takes the options and the facts gathered so far and returns its own facts.


def probe_python(opts: dict, facts: Facts) -> Facts:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "ok": sys.version_info[:2] >= MIN_PYTHON,
        "requires": ">=" + ".".join(map(str, MIN_PYTHON)),
    }


def probe_msvssm(opts: dict, facts: Facts) -> Facts:
    from . import __version__

    out: Facts = {"version": __version__, "location": str(PACKAGE_DIR), "install": "not installed (imported from path)",
                  "checkout": str(REPO) if _in_checkout() else None, "git_commit": None}
    try:
        dist = importlib.metadata.distribution("msvssm")
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        editable = direct.get("dir_info", {}).get("editable", False)
        out["install"] = f"editable ({direct.get('url', '')})" if editable else f"installed ({dist.version})"
    except importlib.metadata.PackageNotFoundError:
        pass
    if out["checkout"]:
        from .utils import git_commit

        out["git_commit"] = git_commit()
    return out


def probe_torch(opts: dict, facts: Facts) -> Facts:
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
        count = torch.cuda.device_count() if available else 0
    out: Facts = {
        "version": torch.__version__,
        "location": str(Path(torch.__file__).parent),
        "cuda_build": torch.version.cuda,
        "cudnn": None,
        "cuda_available": available,
        "device_count": count,
        "cuda_unusable_reason": None,
        "cuda_warnings": sorted({str(w.message) for w in caught}),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception as exc:  # noqa: BLE001 - a broken cuDNN is a fact to report
        out["cudnn"] = f"error: {_error_text(exc)}"
    if not available:
        try:
            from .train import run as train_run

            reason = getattr(train_run, "cuda_unusable_reason", None)
            out["cuda_unusable_reason"] = reason() if reason else None
        except Exception as exc:  # noqa: BLE001
            out["cuda_unusable_reason"] = f"(could not ask msvssm.train.run: {_error_text(exc)})"
        if not out["cuda_unusable_reason"]:
            out["cuda_unusable_reason"] = ("this torch is a CPU-only build" if torch.version.cuda is None
                                           else "torch sees no usable GPU")
    return out


def probe_driver(opts: dict, facts: Facts) -> Facts:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"nvidia_smi": None, "driver_version": None, "gpus": [], "error": "nvidia-smi not found"}
    out: Facts = {"nvidia_smi": exe, "driver_version": None, "gpus": [], "error": None}
    try:
        proc = _run_nvidia_smi(exe)
    except subprocess.TimeoutExpired:
        out["error"] = f"nvidia-smi did not answer within {NVIDIA_SMI_TIMEOUT_S:.0f} s"
        return out
    if proc.returncode != 0:
        out["error"] = (proc.stdout + proc.stderr).strip() or f"nvidia-smi exited with status {proc.returncode}"
        return out
    for line in proc.stdout.strip().splitlines():
        driver, _, name = line.partition(",")
        out["driver_version"] = out["driver_version"] or driver.strip()
        out["gpus"].append(name.strip())
    return out


def probe_gpus(opts: dict, facts: Facts) -> Facts:
    import torch

    out: Facts = {"devices": [], "bf16_supported": None, "bf16_check": None}
    if not torch.cuda.is_available():
        return out
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out["devices"].append({
            "index": i,
            "name": p.name,
            "capability": f"{p.major}.{p.minor}",
            "memory_gib": round(p.total_memory / 2**30, 1),
            "multiprocessors": p.multi_processor_count,
            "bf16_native": (p.major, p.minor) >= (8, 0),
        })
    if "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters:
        out["bf16_supported"] = torch.cuda.is_bf16_supported(including_emulation=False)
        out["bf16_check"] = "torch.cuda.is_bf16_supported(including_emulation=False)"
    else:
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
        out["bf16_check"] = "torch.cuda.is_bf16_supported() (this torch may count emulation)"
    return out


def probe_mamba_ssm(opts: dict, facts: Facts) -> Facts:
    out: Facts = {
        "installed": importlib.util.find_spec("mamba_ssm") is not None,
        "version": _dist_version("mamba-ssm", "mamba_ssm"),
        "importable": None, "import_error": None, "cuda_available": None,
        "call_ok": None, "call_error": None, "max_abs_err": None, "source": None,
    }
    scan_cuda = importlib.import_module("msvssm.ops.scan_cuda")
    kernel_status = getattr(scan_cuda, "kernel_status", None)
    if callable(kernel_status):
        status = dict(kernel_status())
        out.update({k: v for k, v in status.items() if v is not None or k not in out})
        out["installed"] = bool(out["installed"] or status.get("dist_version") or status.get("importable"))
        out["version"] = out["version"] or status.get("dist_version")
        if not out["call_ok"] and str(out.get("call_error") or "").startswith("not attempted"):
            out["call_ok"] = None  # not a failure of the kernel: it was never called
        out["source"] = "msvssm.ops.scan_cuda.kernel_status()"
        return out
    from .ops.registry import get_backend

    be = get_backend("cuda")
    available = be.is_available()
    why = "" if available else be.why_unavailable()
    import torch

    out["cuda_available"] = torch.cuda.is_available()
    out["importable"] = available or not why.startswith("mamba_ssm does not import")
    if not out["importable"]:
        out["import_error"] = why
    out["call_error"] = "not attempted (this msvssm has no scan_cuda.kernel_status())"
    out["source"] = "msvssm.ops.registry"
    return out


def probe_scan_backends(opts: dict, facts: Facts) -> Facts:
    import torch

    from .ops.registry import AUTO_ORDER, ENV_VAR, backend_names, get_backend

    backends: Facts = {}
    for name in backend_names():
        try:
            be = get_backend(name)
            ok = bool(be.is_available())
            backends[name] = {"available": ok, "reason": "" if ok else be.why_unavailable(), "devices": list(be.devices)}
        except Exception as exc:  # noqa: BLE001 - one broken backend module is one line of the report
            backends[name] = {"available": False, "reason": f"does not load: {_error_text(exc)}", "devices": []}

    def pick(device: str) -> Facts:
        passed = []
        for name in AUTO_ORDER.get(device, ("reference",)):
            b = backends.get(name)
            if b is None:
                passed.append(f"{name}: not registered")
            elif device not in b["devices"]:
                passed.append(f"{name}: does not run on {device}")
            elif not b["available"]:
                passed.append(f"{name}: {b['reason']}")
            else:
                why = f"first available in {list(AUTO_ORDER.get(device, ()))}"
                return {"backend": name, "why": why + (f" ({'; '.join(passed)})" if passed else ""), "passed_over": passed}
        return {"backend": None, "why": "no backend runs here: " + "; ".join(passed), "passed_over": passed}

    auto = {"cpu": pick("cpu")}
    if torch.cuda.is_available():
        auto["cuda"] = pick("cuda")
    else:
        mamba = facts.get("mamba_ssm", {})
        would = "cuda" if mamba.get("importable") else "chunked"
        auto["cuda"] = {"backend": None, "why": "no CUDA here (torch.cuda.is_available() is False)",
                        "on_a_gpu": would, "passed_over": []}
    env = os.environ.get(ENV_VAR) or None
    env_ok = None
    if env and env != "auto":
        env_ok = bool(backends.get(env, {}).get("available"))
    return {"env_var": ENV_VAR, "env": env, "env_ok": env_ok, "auto": auto, "backends": backends}


def probe_threads(opts: dict, facts: Facts) -> Facts:
    import torch

    out: Facts = {
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "numba_version": None, "numba_threading_layer": None, "numba_threads": None, "numba_pool": None,
        "numba_thread_safe": None, "numba_error": None,
        "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    }
    try:
        import numba
    except Exception as exc:  # noqa: BLE001
        out["numba_error"] = _error_text(exc)
        return out
    from .ops import threads

    out["numba_version"] = numba.__version__
    out["numba_pool"] = numba.config.NUMBA_NUM_THREADS
    try:
        settings = threads.thread_settings()  # starts numba's pool, so the layer is known
        out["numba_threading_layer"] = settings.get("numba_threading_layer")
        out["numba_threads"] = settings.get("numba")
        out["numba_thread_safe"] = out["numba_threading_layer"] in threads.THREAD_SAFE_LAYERS
    except Exception as exc:  # noqa: BLE001 - no threading layer loads, for example
        out["numba_error"] = _error_text(exc)
    out["torch_threads"] = torch.get_num_threads()
    return out


def probe_extras(opts: dict, facts: Facts) -> Facts:
    from .optional import OPTIONAL, MissingExtraError

    out: Facts = {}
    for module in IMPORTED_EXTRAS:
        dist, extra = OPTIONAL[module]
        entry: Facts = {"distribution": dist, "extra": extra, "installed": False, "version": None, "error": None,
                        "checked": "imported"}
        try:
            mod = _import_optional(module)
            entry["installed"] = True
            entry["version"] = getattr(mod, "__version__", None) or _dist_version(dist)
        except MissingExtraError as exc:
            entry["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - installed but broken (a missing system library...)
            entry["installed"] = _dist_version(dist) is not None
            entry["error"] = f"installed but does not import: {_error_text(exc)}"
        out[module] = entry
    for module in LOOKED_UP_EXTRAS:
        dist, extra = OPTIONAL[module]
        found = importlib.util.find_spec(module) is not None
        out[module] = {"distribution": dist, "extra": extra, "installed": found,
                       "version": _dist_version(dist, module) if found else None, "error": None, "checked": "found"}
    return out


def _count_manifest(path: Path) -> tuple[int, int]:
    """(rows, usable images) of a manifest.csv; usable = status ``ok`` when there is a status column."""
    rows = ok = 0
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        has_status = "status" in (reader.fieldnames or [])
        for row in reader:
            rows += 1
            ok += (row.get("status") == "ok") if has_status else 1
    return rows, ok


def _count_runs(root: Path, max_depth: int = 6) -> tuple[int, int]:
    """(run folders: config.json, finished runs: metrics.json) under ``root``."""
    runs = finished = 0
    base = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        if len(Path(dirpath).parts) - base >= max_depth:
            dirnames[:] = []
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if "config.json" in filenames:
            runs += 1
            finished += "metrics.json" in filenames
    return runs, finished


def _profile_faces_names() -> dict[str, str]:
    from .data.prepare import faces_root
    from .profiles import get_profile

    return {name: faces_root("", get_profile(name)).name for name in PROFILE_NAMES}


def probe_data(opts: dict, facts: Facts) -> Facts:
    data = Path(opts["data"])
    out: Facts = {"path": str(data), "exists": data.is_dir(), "faces": [], "synthetic": [], "profiles": {}}
    expected = _profile_faces_names()
    if out["exists"]:
        candidates = [data] + sorted(p for p in data.iterdir() if p.is_dir())
        for folder in candidates:
            if (folder / "manifest.csv").is_file():
                entry: Facts = {"name": folder.name, "path": str(folder)}
                try:
                    entry["rows"], entry["images"] = _count_manifest(folder / "manifest.csv")
                except Exception as exc:  # noqa: BLE001 - a broken manifest is a finding, not a crash
                    entry["rows"] = entry["images"] = None
                    entry["error"] = _error_text(exc)
                entry["profiles"] = [p for p, n in expected.items() if n == folder.name]
                entry["splits"] = len(list((folder / "splits").glob("*.csv"))) if (folder / "splits").is_dir() else 0
                if (folder / "runs").is_dir():
                    entry["cached_runs"], entry["cached_finished"] = _count_runs(folder / "runs")
                out["faces"].append(entry)
            if (folder / "synth_meta.json").is_file():
                entry = {"name": folder.name, "path": str(folder)}
                try:
                    meta = json.loads((folder / "synth_meta.json").read_text(encoding="utf-8"))
                    params = meta.get("params", {})
                    entry.update(scale=meta.get("scale"), participants=params.get("n_participants"),
                                 trials=params.get("n_trials"))
                except Exception as exc:  # noqa: BLE001
                    entry["error"] = _error_text(exc)
                entry["videos"] = len(list((folder / "face_video").glob("*/*.avi")))
                out["synthetic"].append(entry)
    by_name = {f["name"]: f for f in out["faces"]}
    for profile, name in expected.items():
        f = by_name.get(name)
        out["profiles"][profile] = {"faces": name, "ready": bool(f and f.get("images"))}
    return out


def probe_runs(opts: dict, facts: Facts) -> Facts:
    runs = Path(opts["runs"])
    out: Facts = {"path": str(runs), "exists": runs.is_dir(), "runs": 0, "finished": 0}
    if out["exists"]:
        out["runs"], out["finished"] = _count_runs(runs)
    return out


def _model_names_from_source() -> list[str]:
    """Names registered with ``@register_model`` in the model files, read without importing them (timm is slow)."""
    registry = ast.parse((PACKAGE_DIR / "models" / "registry.py").read_text(encoding="utf-8"))
    modules: tuple[str, ...] = ()
    for node in registry.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign)
                                                                      else None)
        if isinstance(target, ast.Name) and target.id == "MODEL_MODULES":
            modules = ast.literal_eval(node.value)
    names = []
    for module in modules:
        path = PACKAGE_DIR.joinpath(*module.split(".")[1:]).with_suffix(".py")
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and any(
                (isinstance(d, ast.Name) and d.id == "register_model")
                or (isinstance(d, ast.Attribute) and d.attr == "register_model") for d in node.decorator_list
            ):
                names.append(node.name)
    return sorted(names)


def probe_models(opts: dict, facts: Facts) -> Facts:
    if "msvssm.models" in sys.modules:  # already imported: ask the registry itself
        from .models import list_models

        return {"names": list_models(), "source": "msvssm.list_models()"}
    return {"names": _model_names_from_source(), "source": "the model files (not imported)"}


PROBES: dict[str, Callable[[dict, Facts], Facts]] = {
    "python": probe_python,
    "msvssm": probe_msvssm,
    "torch": probe_torch,
    "driver": probe_driver,
    "gpus": probe_gpus,
    "mamba_ssm": probe_mamba_ssm,
    "scan_backends": probe_scan_backends,
    "threads": probe_threads,
    "extras": probe_extras,
    "data": probe_data,
    "runs": probe_runs,
    "models": probe_models,
}


# ----------------------------------------------------------------------------- derived: problems and profiles


def _issue(section: str, level: str, problem: str, fix: str, profiles: tuple[str, ...] = PROFILE_NAMES) -> Facts:
    """``level``: ``required`` (the profiles named cannot run), ``recommended`` (they run, slower or less) or ``note``."""
    return {"section": section, "level": level, "profiles": list(profiles), "problem": problem, "fix": fix}


def _cuda_problem(torch_f: Facts, driver: Facts) -> tuple[str, str]:
    """(short reason, fix) for a torch that sees no usable GPU."""
    version = str(torch_f.get("version", "")).split("+")[0]
    cuda = torch_f.get("cuda_build")
    if cuda is None:
        return ("this torch is a CPU-only build",
                f'pip install --force-reinstall "torch=={version}"  (a CUDA build: PyPI\'s Linux wheels; README, GPU)')
    visible = torch_f.get("cuda_visible_devices")
    if visible is not None and visible.strip() in ("", "-1"):
        return (f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU", "unset CUDA_VISIBLE_DEVICES")
    if not driver.get("nvidia_smi"):
        return ("no NVIDIA driver: nvidia-smi not found",
                "install the NVIDIA driver (it brings nvidia-smi); in a container: docker run --gpus all ...")
    if driver.get("error"):
        return (f"nvidia-smi fails: {driver['error'].splitlines()[0]}",
                "nvidia-smi's message says why (driver not loaded: reinstall the driver or reboot)")
    need = MIN_DRIVER.get(str(cuda).split(".")[0])
    have = driver.get("driver_version")
    if need and have and _version_tuple(have) < _version_tuple(need):
        return (f"driver {have} is older than CUDA {cuda} needs (>= {need})",
                f"update the NVIDIA driver to >= {need}, or install torch {version} built for the CUDA your driver "
                f"has: pip install --force-reinstall torch=={version} --index-url "
                "https://download.pytorch.org/whl/cu12X  (a cu12X that PyTorch lists for this version)")
    return ("torch sees no usable GPU", "check `nvidia-smi` and the warnings above; README, GPU section")


def derive(facts: Facts) -> Facts:
    """Problems (each with its fix), what each profile needs and the summary line, from the facts alone."""
    issues: list[Facts] = []
    py, torch_f, driver = facts.get("python", {}), facts.get("torch", {}), facts.get("driver", {})
    gpus, mamba, scan = facts.get("gpus", {}), facts.get("mamba_ssm", {}), facts.get("scan_backends", {})
    threads_f, extras, data, runs = facts.get("threads", {}), facts.get("extras", {}), facts.get("data", {}), \
        facts.get("runs", {})
    checkout = bool(facts.get("msvssm", {}).get("checkout"))

    for name in PROBES:
        err = facts.get(name, {}).get("probe_error")
        if err:
            required = name in ("python", "torch", "scan_backends")
            issues.append(_issue(name, "required" if required else "note", f"the {name} probe failed: {err}",
                                 "msvssm info --json > doctor.json  (and attach it to a bug report)"))
    if py and not py.get("ok", True):
        issues.append(_issue("python", "required", f"Python {py.get('version')} is older than {py.get('requires')}",
                             "install Python 3.11 and make the venv again: make venv PYTHON=python3.11"))

    cuda_ok = bool(torch_f.get("cuda_available"))
    cuda_reason = None
    if torch_f and not torch_f.get("probe_error") and not cuda_ok:
        cuda_reason, fix = _cuda_problem(torch_f, driver)
        issues.append(_issue("torch", "required", f"no usable CUDA: {cuda_reason}", fix, ("gpu",)))
    elif not torch_f or torch_f.get("probe_error"):
        cuda_reason = "torch could not be checked"
    for dev in gpus.get("devices", []):
        if not dev.get("bf16_native"):
            issues.append(_issue("gpus", "recommended", f"GPU {dev['index']} ({dev['name']}, compute capability "
                                 f"{dev['capability']}) has no native bf16: mixed precision should use fp16",
                                 "msvssm train ... --set amp=fp16", ("gpu",)))

    gpu_fix = ('pip install -e ".[gpu]" --no-build-isolation' if checkout
               else 'pip install "msvssm[gpu]" --no-build-isolation')
    rebuild = ("MAMBA_KEEP_CUDA_BUILD=TRUE pip install --force-reinstall --no-build-isolation --no-cache-dir "
               "\"mamba-ssm>=2.2.2,<2.4\"")
    # On a GPU the gpu profile needs the kernel (make reproduce PROFILE=gpu refuses without it), unless a
    # backend was chosen on purpose with $MSVSSM_SCAN_BACKEND; elsewhere it is a note.
    mamba_level = ("required" if not scan.get("env") else "recommended") if cuda_ok else "note"
    if mamba and not mamba.get("probe_error"):
        if not mamba.get("installed") and not mamba.get("importable"):
            issues.append(_issue("mamba_ssm", mamba_level, "mamba-ssm is not installed: on a GPU the scan runs "
                                 "'chunked' (slower) instead of mamba-ssm's CUDA kernel", gpu_fix, ("gpu",)))
        elif mamba.get("importable") is False:
            issues.append(_issue("mamba_ssm", mamba_level, f"mamba-ssm does not import: {mamba.get('import_error')}",
                                 f"rebuild it against this torch: {rebuild}", ("gpu",)))
        elif mamba.get("extension") is False:
            issues.append(_issue("mamba_ssm", mamba_level, "mamba-ssm imports but its compiled selective_scan_cuda "
                                 "module is missing (a source build without MAMBA_KEEP_CUDA_BUILD=TRUE)",
                                 f"MAMBA_KEEP_CUDA_BUILD=TRUE {rebuild}", ("gpu",)))
        elif mamba.get("call_ok") is False:
            issues.append(_issue("mamba_ssm", mamba_level, f"mamba-ssm's kernel fails a tiny call: "
                                 f"{mamba.get('call_error')}", f"rebuild it against this torch: {rebuild}", ("gpu",)))

    auto = scan.get("auto", {})
    backends = scan.get("backends", {})
    if scan and not scan.get("probe_error"):
        if not auto.get("cpu", {}).get("backend"):
            issues.append(_issue("scan_backends", "required", "no selective-scan backend runs on the CPU",
                                 "make venv  (reinstall the core)"))
        elif "numba" in backends and not backends["numba"]["available"]:
            issues.append(_issue("scan_backends", "recommended", f"the numba backend is unavailable "
                                 f"({backends['numba']['reason']}): the CPU scan runs '{auto['cpu']['backend']}', slower",
                                 "pip install numba  (a core dependency; or: make venv)", ("smoke", "cpu")))
        if scan.get("env") and scan.get("env") != "auto" and not scan.get("env_ok"):
            env = scan["env"]
            reason = backends.get(env, {}).get("reason") or "not a backend name"
            issues.append(_issue("scan_backends", "required", f"${scan['env_var']}={env} asks for a backend that "
                                 f"cannot run here ({reason})", f"unset {scan['env_var']}"))
        if cuda_ok and not auto.get("cuda", {}).get("backend"):
            issues.append(_issue("scan_backends", "required", "no selective-scan backend runs on the GPU",
                                 "make venv  (reinstall the core)", ("gpu",)))

    if threads_f and not threads_f.get("probe_error"):
        if threads_f.get("numba_error"):
            issues.append(_issue("threads", "recommended", f"numba: {threads_f['numba_error']}",
                                 "pip install --force-reinstall numba  (or: make venv)", ("smoke", "cpu")))
        elif threads_f.get("numba_thread_safe") is False:
            issues.append(_issue("threads", "note", f"numba's threading layer is {threads_f['numba_threading_layer']}: "
                                 "scan kernels launched from several Python threads take turns",
                                 "pip install tbb  (a thread-safe layer; optional)"))
        aff, tt = threads_f.get("affinity"), threads_f.get("torch_threads")
        if aff and tt and tt > aff:
            issues.append(_issue("threads", "note", f"torch uses {tt} threads but this process may run on {aff} "
                                 "CPUs: oversubscribed", f"export OMP_NUM_THREADS={aff}  (or: --set threads={aff})"))

    for module, e in extras.items():
        if not isinstance(e, dict) or e.get("probe_error"):
            continue
        label = {"cv2": "OpenCV", "dlib": "dlib"}.get(module, e["distribution"])
        needed_by = {"faces": "msvssm synth-deap, preprocess, predict and make reproduce",
                     "analysis": "the classical baselines, inside-the-model plots, FLOP counts",
                     "notebooks": "the notebooks (make reproduce)"}.get(e["extra"], e["extra"])
        if e.get("installed") and e.get("error"):
            issues.append(_issue("extras", "recommended", f"{label}: {e['error']}",
                                 f"pip install --force-reinstall {e['distribution']}"))
        elif not e.get("installed"):
            level = "recommended" if module in IMPORTED_EXTRAS else "note"
            issues.append(_issue("extras", level, f"{label} ({e['distribution']}) is not installed: needed by "
                                 f"{needed_by}", _pip_extra(e["extra"])))

    make_vars = ""
    if data.get("path") and Path(data["path"]) != Path("data"):
        make_vars += f" DATA={data['path']}"
    if data and not data.get("probe_error"):
        for profile, p in data.get("profiles", {}).items():
            if not p.get("ready") and profile != "smoke":
                where = "the data folder does not exist" if not data.get("exists") else f"no {p['faces']}/manifest.csv"
                cmd = "make reproduce" + ("" if profile == "cpu" else f" PROFILE={profile}") + make_vars
                issues.append(_issue("data", "note", f"the {profile} profile's faces are not prepared ({where} "
                                     f"under {data['path']})", cmd, (profile,)))
        for f in data.get("faces", []):
            if f.get("error"):
                issues.append(_issue("data", "note", f"{f['path']}/manifest.csv does not read: {f['error']}",
                                     "delete the folder and run make reproduce again" + make_vars))
            elif f.get("images") == 0:
                issues.append(_issue("data", "note", f"{f['path']} lists no usable face crop",
                                     "see its summary.json (dlib found no faces?)"))
    if runs and not runs.get("probe_error") and not runs.get("exists"):
        build_var = "" if Path(runs["path"]) == Path("build") else f" BUILD={runs['path']}"
        issues.append(_issue("runs", "note", f"no run folder {runs['path']} yet",
                             f"make reproduce{make_vars}{build_var}  (or one run: msvssm train --data FACES --out "
                             f"{runs['path']}/first)"))

    profiles: Facts = {}
    for profile in PROFILE_NAMES:
        blocking = [i["problem"] for i in issues if i["level"] == "required" and profile in i["profiles"]]
        profiles[profile] = {"ready": not blocking, "missing": blocking}
    facts["issues"] = issues
    facts["profiles"] = profiles
    facts["summary"] = _summary(facts, cuda_reason)
    return facts


def _summary(facts: Facts, cuda_reason: str | None) -> str:
    profiles = facts["profiles"]
    scan_f = facts.get("scan_backends", {})
    scan = scan_f.get("auto", {})
    env = scan_f.get("env") if scan_f.get("env") not in (None, "auto") else None
    data_profiles = facts.get("data", {}).get("profiles", {})
    faces = {f["name"]: f for f in facts.get("data", {}).get("faces", [])}

    def data_note(profile: str) -> str:
        p = data_profiles.get(profile)
        if not p:
            return ""
        if p.get("ready"):
            return f"data {p['faces']} ({faces.get(p['faces'], {}).get('images')} images)"
        return "data not prepared: " + ("make reproduce" if profile == "cpu" else f"make reproduce PROFILE={profile}")

    parts = []
    for profile, device in (("cpu", "cpu"), ("gpu", "cuda")):
        p = profiles[profile]
        if p["ready"]:
            chosen = f"{env} (${scan_f.get('env_var')})" if env else scan.get(device, {}).get("backend")
            details = [f"scan {chosen}", data_note(profile)]
            parts.append(f"{profile} profile ready ({', '.join(d for d in details if d)})")
        elif profile == "gpu" and cuda_reason:
            parts.append(f"gpu profile: not runnable here ({cuda_reason})")
        else:
            parts.append(f"{profile} profile: not runnable here ({'; '.join(p['missing'])})")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- collect / exit code


def collect(data: str | os.PathLike = "data", runs: str | os.PathLike = "build") -> Facts:
    """Every fact of the report as a JSON-able dict (nothing printed).

    A probe that raises leaves ``{"probe_error": "...", "traceback": "..."}`` in its place.
    ``issues``, ``profiles`` and ``summary`` are derived from the facts (:func:`derive`).
    """
    t0 = time.perf_counter()
    opts = {"data": str(data), "runs": str(runs)}
    facts: Facts = {"doctor": {"version": 1}}
    timings: dict[str, float] = {}
    for name, probe in PROBES.items():
        t = time.perf_counter()
        try:
            facts[name] = probe(opts, facts)
        except Exception as exc:  # noqa: BLE001 - one broken probe must not hide the others
            facts[name] = {"probe_error": _error_text(exc),
                           "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
        timings[name] = round(time.perf_counter() - t, 3)
    try:
        derive(facts)
    except Exception as exc:  # noqa: BLE001
        facts.setdefault("issues", [])
        facts["profiles"] = {p: {"ready": False, "missing": [f"the report failed: {_error_text(exc)}"]}
                             for p in PROFILE_NAMES}
        facts["summary"] = f"the report could not be completed: {_error_text(exc)}"
    facts["doctor"]["seconds"] = round(time.perf_counter() - t0, 2)
    facts["doctor"]["probe_seconds"] = timings
    return facts


def exit_code(facts: Facts, profile: str = "cpu", strict: bool = False) -> int:
    """0, or 1 when ``strict`` and something required for ``profile`` is missing."""
    if not strict:
        return 0
    return 0 if facts.get("profiles", {}).get(profile, {}).get("ready") else 1


# ----------------------------------------------------------------------------- text


def _yn(v: Any) -> str:
    return {True: "yes", False: "no", None: "unknown"}.get(v, str(v))


def format_report(facts: Facts, profile: str = "cpu") -> str:
    """The facts as a readable report: one section per probe, each problem with its fix, then the summary."""
    lines: list[str] = []
    issues = facts.get("issues", [])

    def add(key: str, value: Any = None, indent: int = 2) -> None:
        text = key if value is None else f"{key}: {value}"
        lines.append(textwrap.fill(text, width=110, initial_indent=" " * indent,
                                   subsequent_indent=" " * (indent + 4), break_on_hyphens=False,
                                   break_long_words=False))

    def section(title: str, name: str, body: Callable[[Facts], None]) -> None:
        lines.append("")
        lines.append(title)
        f = facts.get(name, {})
        if f.get("probe_error"):
            add("this check failed", f["probe_error"])
        else:
            try:
                body(f)
            except Exception as exc:  # noqa: BLE001 - the facts of a half-run probe: show what is there
                add("(could not format this section)", _error_text(exc))
        for i in issues:
            if i["section"] == name and not i["problem"].startswith(f"the {name} probe failed"):
                mark = {"required": "!!", "recommended": "! ", "note": "- "}[i["level"]]
                scope = "" if set(i["profiles"]) == set(PROFILE_NAMES) else f" [{', '.join(i['profiles'])} profile]"
                add(f"{mark} {i['problem']}{scope}")
                add(f"fix: {i['fix']}", indent=7)

    def python(f: Facts) -> None:
        add("version", f"{f['version']} ({f['implementation']}), {f['platform']}")
        add("executable", f["executable"])

    def msvssm(f: Facts) -> None:
        add("version", f["version"])
        add("imported from", f["location"])
        add("install", f["install"])
        if f.get("checkout"):
            add("git commit", f.get("git_commit"))

    def torch_s(f: Facts) -> None:
        add("version", f"{f['version']} ({f['location']})")
        add("CUDA build", f["cuda_build"] or "CPU-only build")
        add("cuDNN", f["cudnn"] if f["cudnn"] is not None else "none")
        add("CUDA usable", f"yes, {f['device_count']} device(s)" if f["cuda_available"] else "no")
        if not f["cuda_available"] and f.get("cuda_unusable_reason"):
            add("why", f["cuda_unusable_reason"], indent=4)
        for w in f.get("cuda_warnings", []):
            add("torch warned", w, indent=4)

    def driver(f: Facts) -> None:
        if not f.get("nvidia_smi"):
            add("driver", "nvidia-smi not found")
        elif f.get("error"):
            add("driver", f"nvidia-smi failed: {f['error']}")
        else:
            add("driver", f"{f['driver_version']} (nvidia-smi sees: {', '.join(f['gpus']) or 'no GPU'})")

    def gpus(f: Facts) -> None:
        if not f.get("devices"):
            add("GPUs", "none visible to torch")
            return
        for d in f["devices"]:
            add(f"GPU {d['index']}", f"{d['name']}, compute capability {d['capability']}, {d['memory_gib']} GiB, "
                f"native bf16: {_yn(d['bf16_native'])}")
        add("bf16", f"{_yn(f['bf16_supported'])} ({f['bf16_check']})")

    def mamba(f: Facts) -> None:
        add("installed", f"yes, {f.get('version') or 'version unknown'}" if f.get("installed") else "no")
        if f.get("installed") or f.get("importable"):
            add("imports", _yn(f.get("importable")))
        if f.get("extension") is not None:
            add("compiled selective_scan_cuda", _yn(f["extension"]))
        call = f.get("call_ok")
        if call is None:
            why = str(f.get("call_error") or "").removeprefix("not attempted").strip(" :") or "not attempted"
            add("kernel call", f"not run ({why})")
        else:
            err = f" (max abs error {f['max_abs_err']:.2e} against the reference)" if isinstance(
                f.get("max_abs_err"), (int, float)) else ""
            add("kernel call", ("works" + err) if call else f"fails: {f.get('call_error')}")

    def scan(f: Facts) -> None:
        for dev, a in f["auto"].items():
            label = f"auto for {dev} tensors"
            if a.get("backend"):
                add(label, f"{a['backend']} ({a['why']})")
            else:
                extra = f"; on a GPU it would pick {a['on_a_gpu']}" if a.get("on_a_gpu") else ""
                add(label, f"none: {a['why']}{extra}")
        if f.get("env"):
            add(f"${f['env_var']}", f"{f['env']} (overrides auto)")
        for name, b in f["backends"].items():
            add(f"{name:<9}", ("available" if b["available"] else f"unavailable: {b['reason']}")
                + f" [{', '.join(b['devices'])}]", indent=4)

    def threads(f: Facts) -> None:
        add("CPUs", f"{f['cpu_count']} (this process may use {f['affinity']})")
        add("torch threads", f"{f['torch_threads']} intra-op, {f['torch_interop_threads']} inter-op")
        if f.get("numba_version"):
            layer = f.get("numba_threading_layer")
            safe = {True: "thread-safe", False: "not thread-safe", None: "?"}[f.get("numba_thread_safe")]
            add("numba", f"{f['numba_version']}, threading layer {layer} ({safe}), kernels use "
                f"{f['numba_threads']} of a pool of {f['numba_pool']} threads")
        else:
            add("numba", "does not import")
        if f.get("env"):
            add("environment", ", ".join(f"{k}={v}" for k, v in f["env"].items()))

    def extras(f: Facts) -> None:
        for module in IMPORTED_EXTRAS:
            e = f.get(module)
            if e:
                label = {"cv2": "OpenCV", "dlib": "dlib"}[module]
                add(f"{label:<7}", e["version"] if e["installed"] and not e["error"] else
                    ("broken" if e["installed"] else f"not installed (extra '{e['extra']}')"))
        others = [f"{e['distribution']} {e['version'] or ''}".strip() if e["installed"]
                  else f"{e['distribution']} missing" for m, e in f.items() if m not in IMPORTED_EXTRAS]
        if others:
            add("others", ", ".join(others))

    def data(f: Facts) -> None:
        add("folder", f"{f['path']}" + ("" if f["exists"] else " (does not exist)"))
        for d in f.get("faces", []):
            tags = f" [{', '.join(d['profiles'])} profile]" if d.get("profiles") else ""
            runs = f", {d['cached_runs']} cached runs ({d['cached_finished']} finished)" if "cached_runs" in d else ""
            counts = (f"{d['images']} images ({d['rows']} manifest rows), {d.get('splits', 0)} split files{runs}"
                      if d.get("rows") is not None else f"unreadable: {d.get('error')}")
            add(f"faces {d['name']}{tags}", counts, indent=4)
        for s in f.get("synthetic", []):
            add(f"synthetic DEAP {s['name']}", f"scale {s.get('scale')}, {s.get('participants')} participants x "
                f"{s.get('trials')} trials, {s['videos']} videos", indent=4)
        if f["exists"] and not f.get("faces") and not f.get("synthetic"):
            add("(no prepared faces or synthetic DEAP here)", indent=4)

    def runs(f: Facts) -> None:
        if not f["exists"]:
            add("folder", f"{f['path']} (does not exist)")
        else:
            add("folder", f"{f['path']}: {f['runs']} run folders, {f['finished']} finished")

    def models(f: Facts) -> None:
        add(f"{len(f['names'])} models", ", ".join(f["names"]))

    lines.append(f"msvssm doctor  ({facts.get('doctor', {}).get('seconds', '?')} s)")
    section("Python", "python", python)
    section("msvssm", "msvssm", msvssm)
    section("torch", "torch", torch_s)
    section("NVIDIA driver", "driver", driver)
    section("GPUs", "gpus", gpus)
    section("mamba-ssm (the cuda scan backend)", "mamba_ssm", mamba)
    section("Selective-scan backends", "scan_backends", scan)
    section("Threads", "threads", threads)
    section("Optional extras", "extras", extras)
    section("Data", "data", data)
    section("Runs", "runs", runs)
    section("Models", "models", models)
    asked = facts.get("profiles", {}).get(profile, {})
    lines.append("")
    n_req = sum(1 for i in issues if i["level"] == "required" and profile in i["profiles"])
    lines.append(f"Summary: {facts.get('summary', '?')}")
    if profile not in ("cpu", "gpu") or not asked.get("ready"):
        lines.append(f"  the {profile} profile: " + ("ready" if asked.get("ready") else
                                                    f"{n_req} required thing(s) missing (see !! above)"))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- command line


def add_cli(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Check this machine: Python, torch and CUDA, GPUs, mamba-ssm, scan backends, threads, "
                          "optional extras, data and runs; each missing piece with the command that fixes it.")
    parser.add_argument("--data", default="data", help="data folder to look into (default: data)")
    parser.add_argument("--runs", default="build", help="folder of training runs to count (default: build)")
    parser.add_argument("--profile", default="cpu", choices=PROFILE_NAMES,
                        help="the profile you mean to run (what --strict checks; default: cpu)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when something the profile needs is missing")
    parser.add_argument("--json", action="store_true", help="print the facts as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    logger = logging.getLogger("msvssm")
    level = logger.level
    if not getattr(args, "verbose", False):  # the probes' INFO logs (numba's layer...) would clutter the report
        logger.setLevel(logging.WARNING)
    try:
        facts = collect(data=args.data, runs=args.runs)
    finally:
        logger.setLevel(level)
    if args.json:
        print(json.dumps(facts, indent=2, default=str))
    else:
        print(format_report(facts, profile=args.profile), end="")
    return exit_code(facts, profile=args.profile, strict=args.strict)

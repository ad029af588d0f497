"""``msvssm info`` / ``msvssm doctor`` (msvssm.doctor): facts, fixes, JSON, exit codes. CPU only."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from msvssm import doctor
from msvssm.cli import main
from msvssm.optional import MissingExtraError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what the report says on a machine without CUDA")

SECTIONS = ("Python", "msvssm", "torch", "NVIDIA driver", "GPUs", "mamba-ssm", "Selective-scan backends", "Threads",
            "Optional extras", "Data", "Runs", "Models", "Summary:")


def write_manifest(folder: Path, statuses: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["participant", "trial", "label", "status", "path"])
        for i, status in enumerate(statuses):
            w.writerow([1, i, "HVHA", status, f"images/HVHA/{i}.png" if status == "ok" else ""])
    return folder


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, Path]:
    """A data folder with cpu-profile faces (3 rows, 2 usable), one synthetic DEAP; a runs folder with 2 runs, 1 done."""
    root = tmp_path_factory.mktemp("doctor")
    data = root / "data"
    write_manifest(data / "faces-synth-default-128", ["ok", "no_face", "ok"])
    synth = data / "synth-deap-default"
    (synth / "face_video" / "s01").mkdir(parents=True)
    (synth / "face_video" / "s01" / "s01_trial01.avi").write_bytes(b"")
    (synth / "synth_meta.json").write_text(json.dumps({"scale": "default", "params": {"n_participants": 1,
                                                                                       "n_trials": 1}}))
    runs = root / "runs"
    for name, done in (("a", True), ("sweep/b", False)):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text("{}")
        if done:
            (runs / name / "metrics.json").write_text("{}")
    return data, runs


@pytest.fixture(scope="module")
def facts(tree) -> dict:
    data, runs = tree
    return doctor.collect(data=data, runs=runs)


@no_cuda
def test_no_cuda_is_reported_with_a_reason_and_a_fix(facts):
    t = facts["torch"]
    assert t["cuda_available"] is False and t["cuda_unusable_reason"]
    assert t["cuda_build"] == torch.version.cuda
    assert facts["driver"]["driver_version"] is None or facts["driver"]["nvidia_smi"]
    cuda_issue = [i for i in facts["issues"] if i["section"] == "torch" and i["level"] == "required"]
    assert cuda_issue and cuda_issue[0]["profiles"] == ["gpu"] and cuda_issue[0]["fix"]
    assert facts["profiles"]["cpu"]["ready"] and not facts["profiles"]["gpu"]["ready"]
    assert "gpu profile: not runnable here" in facts["summary"] and "cpu profile ready" in facts["summary"]


@no_cuda
def test_auto_backends_for_cpu_and_cuda(facts):
    auto = facts["scan_backends"]["auto"]
    assert auto["cpu"]["backend"] in ("numba", "chunked")
    assert auto["cuda"]["backend"] is None and "no CUDA" in auto["cuda"]["why"]
    backends = facts["scan_backends"]["backends"]
    assert {"reference", "chunked", "numba", "cuda"} <= set(backends)
    assert backends["cuda"]["available"] is False and backends["cuda"]["reason"]
    assert backends["reference"]["available"] is True


def test_threads(facts):
    th = facts["threads"]
    assert th["torch_threads"] >= 1 and th["torch_interop_threads"] >= 1 and th["cpu_count"] >= 1
    assert th["numba_version"] and th["numba_threading_layer"] in ("tbb", "omp", "workqueue")
    assert th["numba_thread_safe"] == (th["numba_threading_layer"] in ("tbb", "omp"))


def test_mamba_probe_before_and_after_kernel_status(facts, tree, monkeypatch):
    m = facts["mamba_ssm"]
    assert set(m) >= {"installed", "importable", "call_ok", "source"}
    if not torch.cuda.is_available():
        assert not m["call_ok"]
    # an msvssm without scan_cuda.kernel_status(): the registry's answer
    import msvssm.ops.scan_cuda as scan_cuda

    monkeypatch.delattr(scan_cuda, "kernel_status", raising=False)
    fallback = doctor.probe_mamba_ssm({"data": "", "runs": ""}, {})
    assert fallback["source"] == "msvssm.ops.registry"
    assert fallback["importable"] == m["importable"] and fallback["call_ok"] is None


def test_data_and_runs_are_counted(facts, tree):
    data, runs = tree
    d = facts["data"]
    assert d["exists"] and d["path"] == str(data)
    (faces,) = d["faces"]
    assert (faces["name"], faces["rows"], faces["images"], faces["profiles"]) == ("faces-synth-default-128", 3, 2, ["cpu"])
    (synth,) = d["synthetic"]
    assert (synth["scale"], synth["videos"]) == ("default", 1)
    assert d["profiles"]["cpu"]["ready"] and not d["profiles"]["gpu"]["ready"]
    assert (facts["runs"]["runs"], facts["runs"]["finished"]) == (2, 1)
    gpu_data = [i for i in facts["issues"] if i["section"] == "data" and i["profiles"] == ["gpu"]]
    assert gpu_data and gpu_data[0]["fix"].startswith("make reproduce PROFILE=gpu DATA=")
    text = doctor.format_report(facts)
    assert "2 images (3 manifest rows)" in text and "2 run folders, 1 finished" in text


def test_missing_folders_name_the_command_that_makes_them(tmp_path):
    facts = doctor.collect(data=tmp_path / "nodata", runs=tmp_path / "noruns")
    assert not facts["data"]["exists"] and not facts["runs"]["exists"]
    fixes = [i["fix"] for i in facts["issues"] if i["section"] in ("data", "runs")]
    assert any(f.startswith(f"make reproduce DATA={tmp_path / 'nodata'}") for f in fixes)
    assert any("BUILD=" in f and "msvssm train" in f for f in fixes)
    text = doctor.format_report(facts)
    assert "(does not exist)" in text and "fix: make reproduce" in text


def test_missing_dlib_gives_the_pip_command(tree, monkeypatch):
    real = doctor._import_optional

    def fake(module):
        if module == "dlib":
            raise MissingExtraError("dlib", "faces")
        return real(module)

    monkeypatch.setattr(doctor, "_import_optional", fake)
    data, runs = tree
    facts = doctor.collect(data=data, runs=runs)
    assert facts["extras"]["dlib"]["installed"] is False
    assert facts["extras"]["cv2"]["installed"] is True
    (issue,) = [i for i in facts["issues"] if i["problem"].startswith("dlib")]
    assert "pip install" in issue["fix"] and "[faces]" in issue["fix"]
    text = doctor.format_report(facts)
    assert "dlib   : not installed (extra 'faces')" in text
    assert 'pip install -e ".[faces]"' in text or 'pip install "msvssm[faces]"' in text


def test_a_probe_that_raises_is_reported_not_fatal(tree, monkeypatch):
    def boom(opts, facts):
        raise RuntimeError("the threads probe blew up")

    monkeypatch.setitem(doctor.PROBES, "threads", boom)
    data, runs = tree
    facts = doctor.collect(data=data, runs=runs)
    assert facts["threads"]["probe_error"] == "RuntimeError: the threads probe blew up"
    assert "Traceback" in facts["threads"]["traceback"]
    assert facts["scan_backends"]["auto"]["cpu"]["backend"]  # the others still ran
    assert any("threads probe failed" in i["problem"] for i in facts["issues"])
    text = doctor.format_report(facts)
    assert "this check failed: RuntimeError: the threads probe blew up" in text
    assert all(s in text for s in SECTIONS)


def test_every_probe_failing_still_gives_a_report(monkeypatch):
    def boom(opts, facts):
        raise ValueError("no")

    for name in list(doctor.PROBES):
        monkeypatch.setitem(doctor.PROBES, name, boom)
    facts = doctor.collect()
    json.dumps(facts)
    assert not facts["profiles"]["cpu"]["ready"] and not facts["profiles"]["gpu"]["ready"]
    assert doctor.exit_code(facts, "cpu", strict=True) == 1 and doctor.exit_code(facts, "cpu") == 0
    assert "this check failed: ValueError: no" in doctor.format_report(facts)


def _fake_facts(**overrides) -> dict:
    facts = {
        "torch": {"version": "2.14.1+cpu", "cuda_build": None, "cuda_available": False, "cuda_visible_devices": None},
        "driver": {"nvidia_smi": None, "driver_version": None, "gpus": [], "error": "nvidia-smi not found"},
        "msvssm": {"checkout": None},
    }
    for k, v in overrides.items():
        facts[k] = {**facts.get(k, {}), **v}
    return doctor.derive(facts)


@pytest.mark.parametrize("overrides, problem, fix", [
    ({}, "CPU-only build", 'pip install --force-reinstall "torch==2.14.1"'),
    ({"torch": {"version": "2.14.1+cu130", "cuda_build": "13.0", "cuda_visible_devices": ""}},
     "CUDA_VISIBLE_DEVICES", "unset CUDA_VISIBLE_DEVICES"),
    ({"torch": {"version": "2.14.1+cu130", "cuda_build": "13.0"},
      "driver": {"nvidia_smi": "/usr/bin/nvidia-smi", "driver_version": "535.104.05", "error": None}},
     "driver 535.104.05 is older than CUDA 13.0 needs", "update the NVIDIA driver to >= 580"),
    ({"torch": {"version": "2.14.1+cu130", "cuda_build": "13.0"}}, "nvidia-smi not found", "install the NVIDIA driver"),
])
def test_why_cuda_is_unusable_and_the_fix(overrides, problem, fix):
    facts = _fake_facts(**overrides)
    (issue,) = [i for i in facts["issues"] if i["section"] == "torch"]
    assert problem in issue["problem"] and fix in issue["fix"] and issue["profiles"] == ["gpu"]
    assert problem in facts["summary"]


def test_gpu_facts_on_a_machine_with_cuda_but_a_broken_mamba():
    gpu = {"index": 0, "name": "Tesla T4", "capability": "7.5", "memory_gib": 15.6, "bf16_native": False}
    facts = _fake_facts(
        torch={"cuda_build": "13.0", "cuda_available": True, "device_count": 1},
        gpus={"devices": [gpu], "bf16_supported": False, "bf16_check": "x"},
        mamba_ssm={"installed": True, "importable": True, "extension": True, "call_ok": False,
                   "call_error": "no kernel image is available"},
        scan_backends={"env_var": "MSVSSM_SCAN_BACKEND", "env": None, "auto": {"cpu": {"backend": "numba"},
                       "cuda": {"backend": "chunked"}}, "backends": {}},
    )
    # make reproduce PROFILE=gpu refuses a GPU without mamba-ssm's kernel: the doctor says the same
    assert not facts["profiles"]["gpu"]["ready"]
    by_section = {i["section"]: i for i in facts["issues"]}
    assert "no native bf16" in by_section["gpus"]["problem"] and "amp=fp16" in by_section["gpus"]["fix"]
    assert by_section["mamba_ssm"]["level"] == "required" and "--no-build-isolation" in by_section["mamba_ssm"]["fix"]
    # unless the scan backend was chosen on purpose
    chosen = _fake_facts(
        torch={"cuda_build": "13.0", "cuda_available": True, "device_count": 1},
        gpus={"devices": [gpu], "bf16_supported": False, "bf16_check": "x"},
        mamba_ssm={"installed": True, "importable": True, "extension": True, "call_ok": False,
                   "call_error": "no kernel image is available"},
        scan_backends={"env_var": "MSVSSM_SCAN_BACKEND", "env": "chunked", "env_ok": True,
                       "auto": {"cpu": {"backend": "numba"}, "cuda": {"backend": "chunked"}}, "backends": {}},
    )
    assert chosen["profiles"]["gpu"]["ready"] and "gpu profile ready (scan chunked" in chosen["summary"]


def test_static_model_list_matches_the_registry():
    from msvssm.models import list_models

    assert doctor._model_names_from_source() == list_models()


def test_cli_info_prints_every_section(tree, capsys):
    data, runs = tree
    assert main(["info", "--data", str(data), "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert all(s in out for s in SECTIONS)
    assert "auto for cpu tensors" in out and "msvssm_nano" in out


def test_cli_json_parses_with_every_key(tree, capsys):
    data, runs = tree
    assert main(["doctor", "--json", "--data", str(data), "--runs", str(runs)]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert set(doctor.PROBES) | {"issues", "profiles", "summary", "doctor"} <= set(facts)
    assert facts["data"]["faces"][0]["rows"] == 3
    assert facts["threads"]["numba_threading_layer"] and facts["scan_backends"]["auto"]["cpu"]["backend"]


@no_cuda
def test_cli_strict_exit_codes(tree, capsys):
    data, runs = tree
    args = ["info", "--data", str(data), "--runs", str(runs), "--strict"]
    assert main([*args, "--profile", "gpu"]) == 1
    assert "the gpu profile: 1 required thing(s) missing" in capsys.readouterr().out
    assert main([*args, "--profile", "cpu"]) == 0
    assert main(["info", "--data", str(data), "--runs", str(runs), "--profile", "gpu"]) == 0  # not strict


def _fake_nvidia_smi(tmp_path: Path, monkeypatch, script: str) -> None:
    exe = tmp_path / "bin" / "nvidia-smi"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text("#!/bin/sh\n" + script + "\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{exe.parent}:/usr/bin:/bin")


def test_driver_probe_reads_nvidia_smi(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, monkeypatch, 'echo "580.82.07, NVIDIA H200"; echo "580.82.07, NVIDIA H200"')
    d = doctor.probe_driver({}, {})
    assert (d["driver_version"], d["gpus"], d["error"]) == ("580.82.07", ["NVIDIA H200"] * 2, None)
    _fake_nvidia_smi(tmp_path, monkeypatch, 'echo "NVIDIA-SMI has failed because it could not communicate"; exit 9')
    d = doctor.probe_driver({}, {})
    assert d["driver_version"] is None and "could not communicate" in d["error"]
    _fake_nvidia_smi(tmp_path, monkeypatch, "exec sleep 5")
    monkeypatch.setattr(doctor, "NVIDIA_SMI_TIMEOUT_S", 0.2)
    d = doctor.probe_driver({}, {})
    assert "did not answer" in d["error"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert doctor.probe_driver({}, {})["error"] == "nvidia-smi not found"


def test_gpu_probe_reports_native_bf16_by_capability(monkeypatch):
    from types import SimpleNamespace

    props = [SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=16 * 2**30, multi_processor_count=40),
             SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=141 * 2**30, multi_processor_count=132)]
    calls = []

    def is_bf16_supported(including_emulation: bool = True):
        calls.append(including_emulation)
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    g = doctor.probe_gpus({}, {})
    assert [(d["capability"], d["bf16_native"], d["memory_gib"]) for d in g["devices"]] == [("7.5", False, 16.0),
                                                                                           ("9.0", True, 141.0)]
    assert calls == [False] and g["bf16_supported"] is False and "including_emulation=False" in g["bf16_check"]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)  # an older torch: no such parameter
    assert "may count emulation" in doctor.probe_gpus({}, {})["bf16_check"]

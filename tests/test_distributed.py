"""DDP on CPU: two processes launched by torchrun (gloo) train the same weights as one process
with the same global batch. Real processes, real process group, loopback only."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from msvssm.train import train
from msvssm.train.checkpoint import load_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from test_train import make_image_folder, tiny_config  # noqa: E402

pytestmark = pytest.mark.slow


def fixed_split(data: Path, n_train: int) -> None:
    """A split with exactly ``n_train`` training images (so every global batch is full on 1 and 2 processes)."""
    frame = pd.read_csv(data / "manifest.csv", dtype=str)
    order = np.random.default_rng(0).permutation(len(frame))
    side = np.array(["val"] * len(frame), dtype=object)
    side[order[:n_train]] = "train"
    side[order[n_train + 15 :]] = "test"  # 15 validation images: an odd count, uneven across 2 ranks
    frame["split"] = side
    (data / "splits").mkdir(exist_ok=True)
    frame[["path", "participant", "trial", "label", "split"]].to_csv(data / "splits" / "frame_seed0.csv", index=False)


def train_with_torchrun(cfg, cfg_path: Path, processes: int) -> dict:
    """``torchrun --nproc_per_node=processes msvssm train`` on ``cfg`` (written to ``cfg_path``); its record.json."""
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m",
         "msvssm.cli", "train", "--config", str(cfg_path), "--data", cfg.data, "--out", cfg.out, "--no-progress"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((Path(cfg.out) / "record.json").read_text())


def test_two_processes_train_the_same_weights_as_one(tmp_path):
    data = make_image_folder(tmp_path / "data", participants=4, per_class=6)  # 96 images
    fixed_split(data, n_train=64)
    single = train(tiny_config(data, tmp_path / "one", batch_size=16, epochs=2, threads=1), progress=False)

    cfg = tiny_config(data, tmp_path / "two", batch_size=16, epochs=2, threads=1)  # the global batch: 8 per process
    record = train_with_torchrun(cfg, tmp_path / "two.json", processes=2)
    assert record["world_size"] == 2 and record["batch_per_process"] == 8

    a = load_checkpoint(single / "last.pt")["model"]
    b = load_checkpoint(Path(cfg.out) / "last.pt")["model"]
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, worst  # same updates; only the order of float sums differs
    # every sample is scored once: the two runs report the same test counts
    ma = json.loads((single / "metrics.json").read_text())
    mb = json.loads((Path(cfg.out) / "metrics.json").read_text())
    assert ma["n"] == mb["n"] == 17
    assert ma["confusion"] == mb["confusion"]
    # validation during training is scored by both ranks and gathered: every sample once, same scores
    ha, hb = pd.read_csv(single / "history.csv"), pd.read_csv(Path(cfg.out) / "history.csv")
    for column in ("val_accuracy", "val_weighted_f1", "val_loss"):
        np.testing.assert_allclose(ha[column], hb[column], rtol=1e-4, err_msg=column)


def _collectives_worker(rank: int, init_file: str, backend: str, results) -> None:
    """One rank: the epoch statistics, the gathered predictions and a barrier, as a run uses them."""
    import torch.distributed as torch_dist

    from msvssm.train.distributed import DistContext, all_gather_predictions

    torch_dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        ctx = DistContext(rank=rank, local_rank=rank, world_size=2, backend=backend)
        try:
            means = ctx.mean_dict({"loss": float(rank), "accuracy": 1.0})
            logits, labels = all_gather_predictions(torch.full((rank + 1, 4), float(rank)),
                                                    torch.full((rank + 1,), rank), ctx)
            ctx.barrier()
            results[rank] = ("ok", means, labels.tolist(), logits.shape[0])
        except Exception as err:  # noqa: BLE001 - reported to the test
            results[rank] = ("error", f"{type(err).__name__}: {err}")
    finally:
        torch_dist.destroy_process_group()


def run_collectives(tmp_path: Path, backend: str) -> dict:
    import torch.multiprocessing as mp

    results = mp.Manager().dict()
    mp.spawn(_collectives_worker, args=(str(tmp_path / f"init-{backend.replace(':', '_').replace(',', '_')}"),
                                        backend, results), nprocs=2, join=True)
    return dict(results)


def test_collectives_work_under_the_gpu_backend_string(tmp_path):
    """The backend a GPU run uses maps CUDA to NCCL; here NCCL's device map is stood in by gloo for
    ``cuda:`` (no GPU in CI). Epoch statistics, gathered predictions and barriers are CPU work and must
    still run: under a plain ``cuda:...`` group, as ``nccl`` alone was, they fail."""
    from msvssm.train.distributed import process_group_backend

    backend = process_group_backend(use_cuda=True, gpu_backend="gloo")
    assert backend == "cpu:gloo,cuda:gloo" and process_group_backend(True) == "cpu:gloo,cuda:nccl"
    results = run_collectives(tmp_path, backend)
    for rank in (0, 1):
        status, means, labels, n = results[rank]
        assert status == "ok", results[rank]
        assert means == {"accuracy": 1.0, "loss": 0.5}
        assert labels == [0, 1, 1] and n == 3  # every rank's rows, once
    # The control: NCCL's device map alone (what the GPU path used before) cannot carry these CPU tensors.
    failed = run_collectives(tmp_path, "cuda:gloo")
    assert all(failed[r][0] == "error" for r in (0, 1)), failed
    assert "cpu" in failed[0][1].lower(), failed[0][1]


def test_a_gpu_run_asks_for_the_mixed_backend_and_one_gpu_per_process(monkeypatch):
    """init_distributed on a (pretend) 1-GPU machine: the mixed backend string, and a clear error for a
    second process that would have no GPU of its own (instead of set_device(1) failing deep in CUDA)."""
    import torch.distributed as torch_dist

    from msvssm.train import distributed

    asked = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: asked.setdefault("device", i))
    monkeypatch.setattr(torch_dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch_dist, "init_process_group", lambda backend: asked.setdefault("backend", backend))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    ctx = distributed.init_distributed()
    assert asked == {"device": 0, "backend": "cpu:gloo,cuda:nccl"} and ctx.backend == "cpu:gloo,cuda:nccl"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(RuntimeError, match="no GPU of its own"):
        distributed.init_distributed()


def test_batch_size_is_the_global_batch():
    """N processes split the global batch: steps per epoch, lr and EMA per step are the recipe's on any N."""
    from msvssm.train.run import RunError, batch_per_process

    cfg = tiny_config(Path("."), Path("."), batch_size=16)
    assert [batch_per_process(cfg, n) for n in (1, 2, 4)] == [16, 8, 4]
    with pytest.raises(RunError, match="divide evenly"):
        batch_per_process(cfg, 3)
    with pytest.raises(RunError, match="odd"):
        batch_per_process(cfg.replace(mixup=0.2), 16)

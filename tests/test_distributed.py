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


def test_two_processes_train_the_same_weights_as_one(tmp_path):
    data = make_image_folder(tmp_path / "data", participants=4, per_class=6)  # 96 images
    fixed_split(data, n_train=64)
    single = train(tiny_config(data, tmp_path / "one", batch_size=16, epochs=2, threads=1), progress=False)

    cfg = tiny_config(data, tmp_path / "two", batch_size=8, epochs=2, threads=1)  # 8 per process x 2 = 16
    cfg_path = tmp_path / "two.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "msvssm.cli",
         "train", "--config", str(cfg_path), "--data", cfg.data, "--out", cfg.out, "--no-progress"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((Path(cfg.out) / "record.json").read_text())
    assert record["world_size"] == 2

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

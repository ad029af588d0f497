"""The learning-rate range test: the learning rate rises geometrically, the test stops when the loss blows up,
it leaves the caller's random state alone, and the suggestion is the steepest fall of the smoothed loss."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from msvssm.lr_range import lr_range_test, suggestion

sys.path.insert(0, str(Path(__file__).parent))
from test_train import make_image_folder, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("lr-range") / "data", participants=4, per_class=6)


def test_the_learning_rate_rises_geometrically_and_a_blow_up_stops_the_test(folder, tmp_path):
    cfg = tiny_config(folder, tmp_path / "unused", batch_size=8)
    before = torch.random.get_rng_state()
    table = lr_range_test(cfg, lr_min=1e-4, lr_max=1e3, steps=40)
    assert torch.equal(torch.random.get_rng_state(), before), "the caller's random state is left alone"
    ratios = table["lr"].iloc[1:].to_numpy() / table["lr"].iloc[:-1].to_numpy()
    assert np.allclose(ratios, (1e3 / 1e-4) ** (1 / 39))
    assert len(table) < 40, "a learning rate of hundreds blows the loss up and stops the test early"
    assert table["lr"].iloc[0] == pytest.approx(1e-4)
    again = lr_range_test(cfg, lr_min=1e-4, lr_max=1e3, steps=40)
    pd.testing.assert_frame_equal(table, again)  # seeded: the same curve twice
    with pytest.raises(ValueError):
        lr_range_test(cfg, lr_min=1e-2, lr_max=1e-3)


def test_suggestion_is_the_steepest_fall_before_the_minimum():
    lr = np.geomspace(1e-5, 1.0, 11)
    smoothed = np.array([2.0, 2.0, 1.99, 1.9, 1.5, 0.9, 0.7, 0.65, 0.64, 0.9, 3.0])
    table = pd.DataFrame({"lr": lr, "loss": smoothed, "smoothed": smoothed})
    assert suggestion(table) == pytest.approx(lr[4])

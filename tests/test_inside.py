"""msvssm.inside: effective receptive fields, saliency, errors per participant, the sample photo."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from msvssm import exercises, inside
from msvssm.models import build_model

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- geometry of the centre


def test_rf_centre_matches_a_real_conv_stack():
    """Back-propagate from one output cell through 5 stride-2 3x3 convs (padding 1): the touched input
    pixels are centred on 32 * index, as rf_centre says, not on the middle of the cell's 32-px block."""
    stack = nn.Sequential(*(nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False) for _ in range(5)))
    for conv in stack:
        nn.init.constant_(conv.weight, 1.0)
    x = torch.zeros(1, 1, 160, 160, requires_grad=True)
    out = stack(x)  # (1, 1, 5, 5)
    for i in (1, 2, 3):
        (grad,) = torch.autograd.grad(out[0, 0, i, i], x, retain_graph=True)
        rows = torch.nonzero(grad[0, 0].abs().sum(1)).flatten()
        assert (rows.min() + rows.max()).item() / 2 == inside.rf_centre(i) == 32 * i
        assert rows.max() - rows.min() + 1 <= 63  # the stack's theoretical receptive field


@pytest.mark.parametrize("image_size,expected", [(32, 64), (64, 128), (100, 256), (224, 448)])
def test_erf_input_size_is_large_and_centres_the_middle_cell(image_size, expected):
    size = inside.erf_input_size(image_size)
    assert size == expected
    side = exercises.true_stage_sizes(size)[-1]
    assert side % 2 == 0
    assert abs(inside.rf_centre(inside.feature_centre(side, side)[0]) - (size - 1) / 2) <= 0.5


# ----------------------------------------------------------------------------- numbers from a map


def test_centre_square_side_and_mass_outside_centre():
    delta = np.zeros((9, 9))
    delta[4, 4] = 1.0
    assert inside.centre_square_side(delta, 0.5) == 1
    assert inside.centre_square_side(delta, 1.0) == 1
    assert inside.mass_outside_centre(delta) == pytest.approx(0.0)
    flat = np.ones((9, 9))
    assert inside.centre_square_side(flat, 0.5) == 7  # 49 / 81 >= 0.5 > 25 / 81
    assert inside.centre_square_side(flat, 1.0) == 9
    assert inside.mass_outside_centre(np.ones((64, 64))) == pytest.approx(0.75)  # central quarter of the area
    corner = np.zeros((16, 16))
    corner[0, 0] = 1.0
    assert inside.mass_outside_centre(corner) == 1.0
    assert inside.centre_square_side(corner, 0.5) >= 16
    with pytest.raises(ValueError):
        inside.centre_square_side(np.zeros((4, 4)))


def test_erf_summary_and_power_scale():
    yy, xx = np.mgrid[0:33, 0:33]
    blob = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 20.0)
    s = inside.erf_summary(blob)
    assert (s["peak_row"], s["peak_col"]) == (16, 16)
    assert s["peak_offset_px"] == 0 and s["mass_centre_offset_px"] < 1e-9
    assert s["side50_px"] < 15 and s["outside_centre_share"] < 0.05
    scaled = inside.power_scale(blob)
    assert scaled.max() == pytest.approx(1.0) and scaled.min() >= 0
    assert scaled[16, 0] > blob[16, 0] / blob.max()  # x ** 0.25 lifts the tails


# ----------------------------------------------------------------------------- ERF of real models


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_input_gradient_map_shape_and_reduce():
    torch.manual_seed(0)
    model = build_model("vssm_nano", num_classes=4).eval()
    x = _images(2, 64)
    relu = inside.input_gradient_map(model, x)
    absolute = inside.input_gradient_map(model, x, reduce="abs")
    assert relu.shape == absolute.shape == (64, 64)
    assert np.isfinite(relu).all() and (relu >= 0).all() and relu.sum() > 0
    assert (absolute >= relu - 1e-12).all()  # |g| >= relu(g), per channel and summed
    assert x.grad is None  # the caller's tensor is left alone
    with pytest.raises(ValueError):
        inside.input_gradient_map(model, x, reduce="square")


def test_untrained_msvssm_erf_is_centred_and_local_vssm_reaches_further():
    """At initialisation Layer Scale (1e-5) mutes MS-VSSM's scan: its ERF is the convolutions' box of
    about 63 px, centred; the plain VSSM (no Layer Scale) already reaches the whole image."""
    x = _images(2, 128)
    torch.manual_seed(0)
    ms = inside.effective_receptive_field(build_model("msvssm_nano", num_classes=4).eval(), x)
    torch.manual_seed(0)
    plain = inside.effective_receptive_field(build_model("vssm_nano", num_classes=4).eval(), x)
    for erf in (ms, plain):
        assert erf.shape == (128, 128) and np.isfinite(erf).all() and erf.sum() > 0
    s_ms, s_plain = inside.erf_summary(ms), inside.erf_summary(plain)
    assert s_ms["mass_centre_offset_px"] < 4, s_ms
    assert abs(s_ms["peak_row"] - 63.5) < 32 and abs(s_ms["peak_col"] - 63.5) < 32, s_ms  # inside the conv box
    assert s_ms["outside_centre_share"] < 0.1, s_ms
    assert s_plain["outside_centre_share"] > s_ms["outside_centre_share"] + 0.2, (s_plain, s_ms)
    with pytest.raises(ValueError):
        inside.effective_receptive_field(build_model("msvssm_nano", num_classes=4).eval(), x[:0])


# ----------------------------------------------------------------------------- saliency


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_saliency_maps_are_finite_maps_of_the_image_size(method):
    torch.manual_seed(0)
    model = build_model("msvssm_nano", num_classes=4).eval()
    x = _images(3, 32)
    maps = inside.saliency_maps(model, x, [0, 1, 2], method=method, n_steps=4)
    assert maps.shape == (3, 32, 32)
    assert np.isfinite(maps).all() and (maps >= 0).all()
    assert (maps.reshape(3, -1).max(1) > 0).all()
    shown = inside.normalise_per_image(maps)
    assert shown.min() >= 0 and shown.max() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        inside.saliency_maps(model, x, [0, 1, 2], method="gradcam")


def test_saliency_depends_on_the_target():
    torch.manual_seed(0)
    model = build_model("vssm_nano", num_classes=4).eval()
    x = _images(1, 32)
    a, b = (inside.saliency_maps(model, x, [t]) for t in (0, 3))
    assert not np.allclose(a, b)


# ----------------------------------------------------------------------------- errors per participant


def _fake_synthetic_faces(tmp_path: Path, seed: int = 3) -> Path:
    from msvssm.data.synth import resolve_params

    synth = tmp_path / "synth"
    synth.mkdir()
    (synth / "synth_meta.json").write_text(json.dumps({"seed": seed, "params": resolve_params("tiny")}))
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "preprocess_config.json").write_text(json.dumps({"root": str(synth), "params": {"size": 64}}))
    return faces


def test_participant_expressivity_recomputes_the_generator_draw(tmp_path):
    from msvssm.data.synth import make_participant, resolve_params

    table = inside.participant_expressivity(_fake_synthetic_faces(tmp_path))
    params = resolve_params("tiny")
    assert list(table["participant"]) == list(range(1, params["n_participants"] + 1))
    for row in table.itertuples():
        assert row.expressivity == make_participant(3, row.participant, params).expressivity
        assert row.weak == (row.expressivity < inside.WEAK_EXPRESSIVITY)
    assert inside.participant_expressivity(tmp_path) is None  # no preprocess_config.json: not synthetic


def test_weak_expressers_are_drawn_below_the_threshold():
    from msvssm.data.synth import make_participant, resolve_params

    params = resolve_params("default")
    values = np.array([make_participant(seed, p, params).expressivity for seed in range(4) for p in range(1, 13)])
    assert ((values < 0.4) | (values >= 0.55)).all()  # two separate ranges: the threshold 0.45 splits them
    assert (values < inside.WEAK_EXPRESSIVITY).any() and (values > inside.WEAK_EXPRESSIVITY).any()


def test_error_rates_by_participant_and_pooled_rate():
    preds = pd.DataFrame({"participant": [1, 1, 1, 1, 2, 2, 3], "correct": [True, True, True, False, False, True, False]})
    expr = pd.DataFrame({"participant": [1, 2, 3], "expressivity": [1.0, 0.3, 0.2], "weak": [False, True, True]})
    table = inside.error_rates_by_participant(preds, expr).set_index("participant")
    assert table.loc[1, "images"] == 4 and table.loc[1, "errors"] == 1
    assert table["error_rate"].to_dict() == {1: 0.25, 2: 0.5, 3: 1.0}
    assert table.loc[3, "weak"]
    assert inside.pooled_error_rate(preds, [2, 3]) == pytest.approx(2 / 3)  # pooled, not (0.5 + 1) / 2
    assert math.isnan(inside.pooled_error_rate(preds, [9]))


# ----------------------------------------------------------------------------- the sample photo


def _faces_found(path: Path) -> int:
    import cv2

    from msvssm.data.faces import create_detector, detect_faces

    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return len(detect_faces(create_detector(), rgb))


def test_make_sample_photo_is_small_and_dlib_finds_the_face(tmp_path):
    path = inside.make_sample_photo(tmp_path / "face.jpg")
    assert path.stat().st_size < 60_000
    assert _faces_found(path) == 1


def test_committed_sample_photo_is_the_generated_one():
    asset = REPO / "assets" / "sample_face.jpg"
    assert asset.exists(), "assets/sample_face.jpg is missing: python tools/make_sample_photo.py"
    assert asset.stat().st_size < 60_000
    assert _faces_found(asset) == 1
    from PIL import Image

    with Image.open(asset) as im:
        committed = np.asarray(im.convert("RGB"), dtype=float)
    fresh = inside.render_sample_face()[..., ::-1].astype(float)  # BGR -> RGB, before JPEG
    assert committed.shape == fresh.shape
    assert np.abs(committed - fresh).mean() < 3  # the same picture up to JPEG loss


# ----------------------------------------------------------------------------- figures


@pytest.fixture
def plt():
    """pyplot on the Agg backend; the figures a test draws are closed after it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    before = set(pyplot.get_fignums())
    yield pyplot
    for num in set(pyplot.get_fignums()) - before:
        pyplot.close(num)


def _image_axes(fig) -> list:
    """The axes of ``fig`` that show at least one image, in drawing order (row-major for subplots)."""
    return [ax for ax in fig.axes if ax.images]


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_plot_erf_maps_shows_each_power_scaled_map_with_its_numbers(plt):
    rng = np.random.default_rng(0)
    maps = {"MS-VSSM": rng.random((16, 12)), "VSSM": rng.random((16, 12)) ** 3, "RepViT": rng.random((16, 12))}
    fig = inside.plot_erf_maps(maps, title="t", power=0.5, ncols=2)
    assert fig.get_suptitle() == "t"
    shown = _image_axes(fig)
    assert len(shown) == 3  # one panel per map; the 4th cell of the 2x2 grid is empty and hidden
    grid = [ax for ax in fig.axes if ax.get_subplotspec() is not None]
    assert len(grid) == 4 and [ax.axison for ax in grid] == [True, True, True, False]
    assert len(fig.axes) == 5  # 4 grid cells and the colour bar
    for ax, (name, erf) in zip(shown, maps.items()):
        (im,) = ax.images
        np.testing.assert_allclose(im.get_array(), inside.power_scale(erf, 0.5))  # the map given, scaled
        assert im.get_clim() == (0, 1)
        s = inside.erf_summary(erf)
        title = ax.get_title()
        assert title.startswith(name + "\n")
        assert f"{s['side50_px']}x{s['side50_px']} px" in title
        assert f"{s['outside_centre_share']:.0%} outside" in title
        (marker,) = ax.collections  # the centre, at the middle of the (h, w) map
        np.testing.assert_allclose(marker.get_offsets(), [[(12 - 1) / 2, (16 - 1) / 2]])
    assert "^0.5" in fig.axes[-1].get_ylabel()  # the colour bar names the power
    default = inside.plot_erf_maps({"a": maps["VSSM"]})
    assert default.get_suptitle().startswith("Effective receptive field")
    assert len(_image_axes(default)) == 1


def test_plot_saliency_shows_faces_then_one_overlay_row_per_method(plt):
    rng = np.random.default_rng(1)
    faces = torch.from_numpy(rng.integers(0, 256, (3, 3, 16, 16), dtype=np.uint8))
    maps = {"Saliency": rng.random((3, 16, 16)), "Integrated gradients": rng.random((3, 16, 16))}
    fig = inside.plot_saliency(faces, maps, ["HVHA", "LVLA", "HVLA"], title="why")
    assert fig.get_suptitle() == "why"
    axes = np.array(fig.axes).reshape(3, 3)  # rows: face, then each method; one column per image
    rgb = faces.numpy().transpose(0, 2, 3, 1)
    for j, caption in enumerate(["HVHA", "LVLA", "HVLA"]):
        (face,) = axes[0, j].images
        np.testing.assert_array_equal(face.get_array(), rgb[j])
        assert axes[0, j].get_title() == caption
        for i, m in enumerate(maps.values(), start=1):
            grey, overlay = axes[i, j].images
            np.testing.assert_allclose(grey.get_array(), rgb[j].mean(axis=2))
            np.testing.assert_allclose(overlay.get_array(), inside.normalise_per_image(m)[j])
            assert 0 < overlay.get_alpha() < 1
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["face", "Saliency", "Integrated gradients"]


def _error_table(with_expressivity: bool = True) -> pd.DataFrame:
    table = pd.DataFrame({"participant": [1, 2, 3], "images": [10, 5, 8], "errors": [1, 3, 2],
                          "error_rate": [0.1, 0.6, 0.25], "expressivity": [1.0, 0.2, 0.8],
                          "weak": [False, True, False]})
    return table if with_expressivity else table.drop(columns=["expressivity", "weak"])


def test_plot_error_vs_expressivity_places_each_participant(plt):
    fig = inside.plot_error_vs_expressivity(_error_table(), title="errors")
    (ax,) = fig.axes
    assert ax.get_title() == "errors"
    expressive, weak = ax.collections  # one scatter per group, in this order
    np.testing.assert_allclose(expressive.get_offsets(), [[1.0, 0.1], [0.8, 0.25]])
    np.testing.assert_allclose(weak.get_offsets(), [[0.2, 0.6]])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith("expressive") and legend[1].startswith("weak expresser")
    assert sorted(_texts(ax)) == ["s01", "s02", "s03"]
    (threshold,) = ax.lines
    assert threshold.get_xdata()[0] == inside.WEAK_EXPRESSIVITY
    assert "expressivity" in ax.get_xlabel() and ax.get_ylabel() == "test error rate"


def test_plot_error_vs_expressivity_without_expressivity_draws_one_bar_per_participant(plt):
    fig = inside.plot_error_vs_expressivity(_error_table(with_expressivity=False))
    (ax,) = fig.axes
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.1, 0.6, 0.25])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["s01", "s02", "s03"]
    assert not ax.collections and ax.get_legend() is None


def _save_faces(folder: Path, n: int) -> list[np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(2)
    pixels = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(n)]
    for k, arr in enumerate(pixels):
        Image.fromarray(arr).save(folder / f"f{k}.png")
    return pixels


def test_plot_misclassified_shows_one_titled_panel_per_row(tmp_path, plt):
    pixels = _save_faces(tmp_path, 7)
    rows = pd.DataFrame({"path": [f"f{k}.png" for k in range(7)], "participant": [2, 3, 2, 1, 1, 3, 2],
                         "label": ["HVHA"] * 7, "pred": ["LVLA"] * 6 + ["HVLA"],
                         "p_LVLA": [0.7, 0.6, 0.5, 0.9, 0.8, 0.55, 0.1], "p_HVLA": [0.1] * 6 + [0.65]})
    fig = inside.plot_misclassified(tmp_path, rows, title="wrong", ncols=4)
    assert fig.get_suptitle() == "wrong"
    assert len(fig.axes) == 8  # 2 rows of 4
    shown = _image_axes(fig)
    assert shown == fig.axes[:7]  # one panel per misclassified row, in order; the last cell is empty
    for ax, arr, row in zip(shown, pixels, rows.itertuples()):
        np.testing.assert_array_equal(ax.images[0].get_array(), arr)
        p = getattr(row, f"p_{row.pred}")
        assert ax.get_title() == f"s{row.participant:02d} true {row.label}\npred {row.pred} ({p:.2f})"
    assert fig.axes[-1].get_title() == "" and not _texts(fig.axes[-1])


def test_plot_misclassified_says_so_when_nothing_is_misclassified(tmp_path, plt):
    rows = pd.DataFrame(columns=["path", "participant", "label", "pred", "p_LVLA"])
    fig = inside.plot_misclassified(tmp_path, rows)
    assert not _image_axes(fig)
    texts = [t for ax in fig.axes for t in _texts(ax)]
    assert len(texts) == 1 and "no misclassified" in texts[0]


def test_plot_prediction_bars_are_the_probabilities(tmp_path, plt):
    from matplotlib.colors import to_rgba

    (pixels,) = _save_faces(tmp_path, 1)
    probabilities = {"HVHA": 0.2, "HVLA": 0.05, "LVHA": 0.7, "LVLA": 0.05}
    fig = inside.plot_prediction(tmp_path / "f0.png", probabilities, title="s01")
    assert fig.get_suptitle() == "s01"
    image_ax, bar_ax = fig.axes
    np.testing.assert_array_equal(image_ax.images[0].get_array(), pixels)
    bars = bar_ax.patches
    assert [b.get_width() for b in bars] == pytest.approx(list(probabilities.values()))
    assert [t.get_text() for t in bar_ax.get_yticklabels()] == list(probabilities)
    assert [b.get_y() + b.get_height() / 2 for b in bars] == pytest.approx([0, 1, 2, 3])
    green = [name for name, bar in zip(probabilities, bars) if bar.get_facecolor() == to_rgba("tab:green")]
    assert green == ["LVHA"]  # the most likely class stands out
    assert [t.strip() for t in _texts(bar_ax)] == ["0.20", "0.05", "0.70", "0.05"]


def test_map_rank_similarity_sees_identical_shuffled_and_mismatched_maps():
    from msvssm.inside import map_rank_similarity

    rng = np.random.default_rng(0)
    maps = rng.random((3, 8, 8))
    assert np.allclose(map_rank_similarity(maps, maps), 1.0)
    assert np.allclose(map_rank_similarity(maps, 2 * maps + 1), 1.0)  # ranks, not values
    shuffled = np.stack([rng.permutation(m.ravel()).reshape(8, 8) for m in maps])
    assert np.abs(map_rank_similarity(maps, shuffled)).max() < 0.5
    with pytest.raises(ValueError, match="one shape"):
        map_rank_similarity(maps, maps[:2])


def test_expressivity_test_reads_the_direction_and_needs_three_people():
    from msvssm.inside import expressivity_test

    table = pd.DataFrame({"expressivity": [0.2, 0.5, 0.8, 1.1, 1.2], "error_rate": [0.6, 0.4, 0.3, 0.1, 0.05]})
    result = expressivity_test(table)
    assert result["people"] == 5 and result["rho"] == pytest.approx(-1.0) and result["p"] < 0.05
    assert np.isnan(expressivity_test(table.head(2))["rho"])

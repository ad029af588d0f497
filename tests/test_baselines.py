"""Baselines: RepViT (timm), DilateFormer (ours), and the classical HOG + logistic-regression floor."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from msvssm.models import build_model, list_models
from msvssm.models.dilateformer import MultiScaleDilatedAttention
from msvssm.models.repvit import fuse

# Trained in the tests (forward + backward at 64 and 112). The larger sizes are the same
# classes at other widths/depths; on a 2-core CPU they are only run forward (below).
TRAINED = ["repvit_nano", "repvit_m0_9", "dilateformer_nano", "dilateformer_tiny"]
LARGER = ["repvit_m1_0", "repvit_m1_1", "repvit_m1_5", "dilateformer_small", "dilateformer_base"]
BASELINES = TRAINED + LARGER


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_baseline_is_registered():
    assert set(BASELINES) <= set(list_models())


@pytest.mark.parametrize("name", TRAINED)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=4).train()
    for size in (64, 112):
        model.zero_grad(set_to_none=True)
        logits = model(torch.randn(2, 3, size, size))  # (2, 4)
        assert logits.shape == (2, 4)
        assert torch.isfinite(logits).all()
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, f"{name} at {size}: no gradient for {missing[:5]}"
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", LARGER)
def test_larger_sizes_forward_at_64_and_112(name):
    model = build_model(name, num_classes=4).eval()
    with torch.no_grad():
        for size in (64, 112):
            logits = model(torch.randn(1, 3, size, size))
            assert logits.shape == (1, 4) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["repvit_nano", "repvit_m0_9"])
def test_repvit_fused_equals_unfused_in_eval(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=4)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    for _ in range(2):  # move the BatchNorm statistics away from their init
        model(torch.randn(4, 3, 64, 64))
    model.eval()
    fused = fuse(model)
    assert n_params(fused) < n_params(model)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)


def naive_msda(attn: MultiScaleDilatedAttention, x: torch.Tensor) -> torch.Tensor:
    """MSDA by a loop over pixels and heads: x (1, h, w, c) -> (1, h, w, c)."""
    _, h, w, c = x.shape
    qkv = attn.qkv(x.permute(0, 3, 1, 2))[0]  # (3c, h, w)
    q, k, v = qkv[:c], qkv[c : 2 * c], qkv[2 * c :]  # (c, h, w) each; heads in order, grouped by dilation
    e, heads = attn.head_dim, attn.num_heads
    per_group = heads // len(attn.dilations)
    out = torch.zeros(h, w, c)
    for head in range(heads):
        r = attn.dilations[head // per_group]
        ch = slice(head * e, (head + 1) * e)
        for i in range(h):
            for j in range(w):
                logits, values = [], []
                for a in (-1, 0, 1):
                    for b in (-1, 0, 1):
                        y, xx = i + a * r, j + b * r
                        inside = 0 <= y < h and 0 <= xx < w
                        key = k[ch, y, xx] if inside else torch.zeros(e)  # zero padding, not masked
                        val = v[ch, y, xx] if inside else torch.zeros(e)
                        logits.append((q[ch, i, j] * key).sum() / math.sqrt(e))
                        values.append(val)
                weights = torch.softmax(torch.stack(logits), dim=0)
                out[i, j, ch] = (weights[:, None] * torch.stack(values)).sum(0)
    return attn.proj(out)[None]


def test_msda_matches_a_per_pixel_loop():
    torch.manual_seed(0)
    attn = MultiScaleDilatedAttention(dim=12, num_heads=6, dilations=(1, 2, 3)).eval()
    x = torch.randn(1, 5, 7, 12)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), naive_msda(attn, x), rtol=1e-5, atol=1e-5)


def test_dilateformer_any_input_size():
    model = build_model("dilateformer_nano", num_classes=3).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 96, 160)).shape == (1, 3, 5, 36 * 8)
        assert model(torch.randn(1, 3, 100, 72)).shape == (1, 3)


# Counted with the official models/dilateformer.py (JIAOJIAYUASD/dilateformer) at 1000 classes.
DILATEFORMER_OFFICIAL_PARAMS = {
    "dilateformer_tiny": 17_238_744, "dilateformer_small": 24_057_504, "dilateformer_base": 47_432_376
}


@pytest.mark.parametrize("name", sorted(DILATEFORMER_OFFICIAL_PARAMS))
def test_dilateformer_parameter_count_is_the_official_codes(name):
    assert n_params(build_model(name, num_classes=1000)) == DILATEFORMER_OFFICIAL_PARAMS[name]


def test_dilateformer_stem_is_the_published_one():
    """conv-BN-GELU x3 then a bare conv (no norm after it), at the official indices proj.0 ... proj.9."""
    from torch import nn

    stem = build_model("dilateformer_tiny", num_classes=1000).patch_embed.proj
    assert [type(m) for m in stem] == [nn.Conv2d, nn.BatchNorm2d, nn.GELU] * 3 + [nn.Conv2d]
    convs = [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.bias) for m in stem[::3]]
    assert convs == [
        (3, 16, (3, 3), (1, 1), (1, 1), None),
        (16, 32, (3, 3), (2, 2), (1, 1), None),
        (32, 64, (3, 3), (1, 1), (1, 1), None),
        (64, 72, (3, 3), (2, 2), (1, 1), None),
    ]
    assert [stem[i].num_features for i in (1, 4, 7)] == [16, 32, 64]


@pytest.mark.parametrize(
    "name, published",
    [("repvit_m0_9", 5.1e6), ("dilateformer_tiny", 17.2e6), ("dilateformer_small", 24.1e6), ("dilateformer_base", 47.4e6)],
)
def test_published_parameter_counts(name, published):
    model = build_model(name, num_classes=1000)
    if name.startswith("repvit"):
        model = fuse(model, inplace=True)  # RepViT publishes the fused count
    assert abs(n_params(model) / published - 1) < 0.03


def test_published_flops_at_224():
    from msvssm.flops import count_flops

    assert abs(count_flops(build_model("dilateformer_tiny", num_classes=1000))["flops"] / 3.2e9 - 1) < 0.03
    m09 = fuse(build_model("repvit_m0_9", num_classes=1000), inplace=True)
    assert abs(count_flops(m09)["flops"] / 0.8e9 - 1) < 0.03


@pytest.mark.parametrize("name", ["repvit_nano", "dilateformer_nano"])
def test_cpu_variants_are_the_size_of_msvssm_nano(name):
    reference = n_params(build_model("msvssm_nano", num_classes=4))
    assert abs(n_params(build_model(name, num_classes=4)) / reference - 1) < 0.25


# ----------------------------------------------------------------------------- the classical floor


def synthetic_faces(n_videos_per_class: int = 6, frames: int = 8, size: int = 48, seed: int = 0):
    """Cartoon faces whose mouth (valence) and eyes (arousal) depend on the class; one 'video' = one
    face position, scale and background, its frames differ by jitter and noise. Returns images
    (n, size, size) uint8, labels (n,) and video ids (n,)."""
    import cv2

    rng = np.random.default_rng(seed)
    images, labels, videos = [], [], []
    for label in range(4):
        happy, aroused = label in (0, 1), label in (0, 2)
        for v in range(n_videos_per_class):
            cx, cy, s, bg = rng.integers(20, 28), rng.integers(20, 28), rng.integers(14, 18), rng.integers(40, 120)
            for _ in range(frames):
                img = np.full((size, size), bg, np.uint8)
                dx, dy = rng.integers(-2, 3, size=2)
                x0, y0 = int(cx + dx), int(cy + dy)
                cv2.ellipse(img, (x0, y0), (int(s * 0.8), int(s)), 0, 0, 360, 200, -1)
                eye_h = 3 if aroused else 1
                for ex in (-1, 1):
                    cv2.ellipse(img, (x0 + ex * s // 3, y0 - s // 4), (3, eye_h), 0, 0, 360, 30, -1)
                start, end = (0, 180) if happy else (180, 360)
                cv2.ellipse(img, (x0, y0 + s // 3 + (0 if happy else 4)), (s // 3, 3), 0, start, end, 30, 2)
                noisy = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
                images.append(noisy)
                labels.append(label)
                videos.append(label * 100 + v)
    return np.stack(images), np.array(labels), np.array(videos)


def test_classical_floor_beats_the_majority_on_a_frame_split():
    from msvssm.classical import ClassicalBaseline, majority_baseline

    images, labels, _ = synthetic_faces()
    labels[: len(labels) // 8] = 0  # an unbalanced set: the majority is not 25 %
    order = np.random.default_rng(1).permutation(len(labels))  # the frame split: frames at random
    tr, va, te = np.split(order, [int(0.6 * len(order)), int(0.8 * len(order))])
    names = ["HVHA", "HVLA", "LVHA", "LVLA"]
    floor = ClassicalBaseline("hog").fit(images[tr], labels[tr], val=(images[va], labels[va]))
    scores = floor.evaluate(images[te], labels[te], names)
    chance = majority_baseline(labels[tr], labels[te], names)
    assert floor.C_ in floor.C_grid
    assert set(scores) == set(chance) >= {"accuracy", "weighted_f1", "per_class", "confusion"}
    assert scores["n"] == len(te)
    assert scores["accuracy"] > chance["accuracy"] + 0.2
    assert scores["weighted_f1"] > chance["weighted_f1"]


def test_floor_predictions_score_every_test_image_of_each_fold_once(tmp_path):
    """Over the K files of a cross-validation, each image is on the test side of exactly one fold; the constant
    guess answers the most frequent training label of its own fold; floors_on_split is the same table scored."""
    from msvssm.classical import floor_predictions, floors_on_split
    from msvssm.data import make_quadrant_folder, read_classes
    from msvssm.data.splits import make_splits, read_split

    data = make_quadrant_folder(tmp_path / "data", 6, 6, 40, 0)
    files = make_splits(data, "subject", folds=3)
    table = floor_predictions(data, files)
    assert set(table["floor"]) == {"HOG + logistic", "constant guess"}
    for floor, rows in table.groupby("floor"):
        assert rows["path"].is_unique and len(rows) == len(read_split(files[0])), f"{floor}: every image once"
    for f in files:
        split = read_split(f)
        train = split.loc[split["split"] == "train", "label"]
        guess = table[(table["split_file"] == f.name) & (table["floor"] == "constant guess")]["pred"]
        assert set(guess) == {train.value_counts().sort_index().idxmax()}
        scored = floors_on_split(data, f, read_classes(data))
        rows = table[(table["split_file"] == f.name)]
        for floor in scored:
            assert scored[floor]["accuracy"] == pytest.approx(rows.loc[rows["floor"] == floor, "correct"].mean())


def test_classical_floor_with_string_labels_and_pixels():
    from msvssm.classical import ClassicalBaseline, extract_features

    images, labels, _ = synthetic_faces(n_videos_per_class=2, frames=4)
    names = np.array(["HVHA", "HVLA", "LVHA", "LVLA"])[labels]
    assert extract_features(images[:3], "hog").shape == (3, 1764)  # 64x64: 7*7 blocks * 2*2 cells * 9 bins
    assert extract_features(images[:3], "pixels").shape == (3, 1024)
    floor = ClassicalBaseline("pixels").fit(images, names)
    assert set(floor.predict(images[:5])) <= set(names)
    scores = floor.evaluate(images, names)
    assert scores["class_names"] == ["HVHA", "HVLA", "LVHA", "LVLA"]
    with pytest.raises(ValueError, match="unknown feature"):
        ClassicalBaseline("sift")

"""Pretrained starts: VMamba's official names -> ours, timm RepViT files, our own run checkpoints."""
from __future__ import annotations

import pytest
import torch

from msvssm.models import build_model
from msvssm.models.pretrained import (
    load_pretrained,
    ours_to_vmamba,
    to_vmamba_state_dict,
    vmamba_to_ours,
)


def fake_official(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A VMamba-layout state dict for ``model``'s configuration, random values (the inverse map)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) for k, v in to_vmamba_state_dict(model).items()}


def test_official_names_and_shapes_of_tiny():
    model = build_model("vssm_tiny", num_classes=1000)
    sd = to_vmamba_state_dict(model)
    expected = {
        "patch_embed.0.weight": (48, 3, 3, 3),
        "patch_embed.2.weight": (48,),
        "patch_embed.5.weight": (96, 48, 3, 3),
        "patch_embed.7.bias": (96,),
        "layers.0.blocks.0.norm.weight": (96,),
        "layers.0.blocks.0.op.in_proj.weight": (96, 96),
        "layers.0.blocks.0.op.conv2d.weight": (96, 1, 3, 3),
        "layers.0.blocks.0.op.x_proj_weight": (4, 8, 96),
        "layers.0.blocks.0.op.dt_projs_weight": (4, 96, 6),
        "layers.0.blocks.0.op.dt_projs_bias": (4, 96),
        "layers.0.blocks.0.op.A_logs": (384, 1),
        "layers.0.blocks.0.op.Ds": (384,),
        "layers.0.blocks.0.op.out_norm.weight": (96,),
        "layers.0.blocks.0.op.out_proj.weight": (96, 96),
        "layers.0.blocks.1.norm2.bias": (96,),
        "layers.0.blocks.1.mlp.fc1.weight": (384, 96),
        "layers.0.blocks.1.mlp.fc2.bias": (96,),
        "layers.0.downsample.1.weight": (192, 96, 3, 3),
        "layers.0.downsample.3.weight": (192,),
        "layers.2.blocks.7.op.A_logs": (1536, 1),
        "classifier.norm.weight": (768,),
        "classifier.head.weight": (1000, 768),
    }
    for name, shape in expected.items():
        assert tuple(sd[name].shape) == shape, name
    assert "layers.0.blocks.0.op.conv2d.bias" not in sd
    assert not any(k.startswith("layers.3.downsample") for k in sd)  # none after stage 4
    # every parameter of plain VSSM has an official name, and the map is a bijection
    assert len(sd) == len(model.state_dict())
    assert all(vmamba_to_ours(ours_to_vmamba(k)) == k for k in model.state_dict())


def test_official_checkpoint_round_trip_tiny(tmp_path):
    model = build_model("vssm_tiny", num_classes=1000)
    official = fake_official(model)
    path = tmp_path / "vssm_tiny_official.pth"
    torch.save({"model": official, "epoch": 299, "max_accuracy": 82.6}, path)
    report = load_pretrained(model, path)
    assert report.source == "vmamba"
    assert report.new == [] and report.dropped == {}
    assert len(report.loaded) == len(official)
    mine = model.state_dict()
    for name, value in official.items():
        assert torch.equal(mine[vmamba_to_ours(name)], value), name


def test_official_into_msvssm_new_parts_and_new_head(tmp_path):
    source = build_model("vssm_nano", num_classes=1000)
    official = fake_official(source, seed=1)
    official["layers.0.blocks.0.op.conv2d.bias"] = torch.zeros(32)  # a bias this layout never uses
    path = tmp_path / "nano.pth"
    torch.save({"model": official}, path)
    model = build_model("msvssm_nano", num_classes=4, pretrained=path)
    report = model.pretrained_report
    assert set(report.dropped) == {"classifier.head.weight", "classifier.head.bias", "layers.0.blocks.0.op.conv2d.bias"}
    assert {"head.weight", "head.bias"} <= set(report.new)
    assert any(".op.path_se." in n for n in report.new)
    assert any(".op.layer_scale.gamma" in n for n in report.new)
    assert any(".dspp." in n for n in report.new)
    assert all(n.startswith("head.") or ".path_se." in n or "layer_scale" in n or ".dspp." in n for n in report.new)
    mine = model.state_dict()
    for name, value in official.items():
        ours = vmamba_to_ours(name)
        if ours in report.loaded:
            assert torch.equal(mine[ours], value), name
    assert len(report.loaded) == len(official) - 3
    assert "loaded" in report.summary()


def test_linear_stored_as_1x1_conv_is_accepted(tmp_path):
    model = build_model("vssm_nano", num_classes=4)
    official = fake_official(model)
    w = official["layers.1.blocks.0.op.in_proj.weight"]
    official["layers.1.blocks.0.op.in_proj.weight"] = w[:, :, None, None]  # VMamba's Linear2d as a conv
    report = load_pretrained(model, {"model": official})
    assert torch.equal(model.stages[1].blocks[0].op.in_proj.weight, w)
    assert report.dropped == {}


def test_shape_mismatch_is_refused_with_both_shapes():
    official = fake_official(build_model("vssm_nano", num_classes=4))
    model = build_model("vssm_nano", num_classes=4, dims=48)
    with pytest.raises(ValueError, match=r"stem\.conv1\.weight.*\(16, 3, 3, 3\).*\(24, 3, 3, 3\)"):
        load_pretrained(model, {"model": official})


def test_untrusted_pickle_is_refused_with_advice(tmp_path):
    path = tmp_path / "with_config.pth"
    torch.save({"model": {}, "config": _Config()}, path)
    with pytest.raises(ValueError, match="weights_only=False"):
        load_pretrained(build_model("vssm_nano"), path)


class _Config:  # stands for VMamba's yacs config stored in its checkpoints
    pass


def test_nothing_matching_is_refused():
    with pytest.raises(ValueError, match="no parameter"):
        load_pretrained(build_model("vssm_nano"), {"foo.weight": torch.zeros(3)})


def test_own_run_checkpoint_fine_tunes_from_previous_run(tmp_path):
    torch.manual_seed(0)
    first = build_model("msvssm_nano", num_classes=4)
    path = tmp_path / "run.pt"
    torch.save({"model": first.state_dict(), "epoch": 3, "metrics": {"accuracy": 0.5}}, path)
    second = build_model("msvssm_nano", num_classes=4, pretrained=path)
    assert second.pretrained_report.source == "msvssm"
    assert second.pretrained_report.new == [] and second.pretrained_report.dropped == {}
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), k


def test_timm_repvit_checkpoint(tmp_path):
    """A timm-format RepViT file (distilled: two heads, 1000 classes) into a 4-class single-head model."""
    from safetensors.torch import save_file
    from timm.models.repvit import RepVit

    from msvssm.models.repvit import NANO

    timm_model = RepVit(**NANO, num_classes=1000, distillation=True)
    sd = {k: v.contiguous() for k, v in timm_model.state_dict().items()}
    for suffix, saver in ((".pth", torch.save), (".safetensors", save_file)):
        path = tmp_path / f"repvit{suffix}"
        saver(sd, str(path))
        model = build_model("repvit_nano", num_classes=4, pretrained=path)
        report = model.pretrained_report
        assert report.source == "timm"
        assert all(k.startswith("head.") for k in report.new)
        assert any(k.startswith("head.head_dist.") for k in report.dropped)
        assert torch.equal(model.stem.conv1.c.weight, sd["stem.conv1.c.weight"])
    same_head = build_model("repvit_nano", num_classes=1000, pretrained=tmp_path / "repvit.pth")
    assert torch.equal(same_head.head.head.l.weight, sd["head.head.l.weight"])

import itertools

import pytest
import torch

import msvssm
from msvssm.models import ABLATION_FLAGS, SIZES, SS2D, LayerScale, build_model, list_models

FLAG_NAMES = ("path_se", "layer_scale", "dspp")
FLAG_COMBOS = [dict(zip(FLAG_NAMES, bits)) for bits in itertools.product([False, True], repeat=3)]
# 64x64 gives stage 4 a 2x2 map: with L = 1 the state never decays, so A would get no gradient.
INPUT_FOR_SIZE = {"nano": 64, "tiny": 64, "small": 64, "base": 64}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_registry_has_every_size_and_family():
    names = set(list_models())
    for size in ("nano", "tiny", "small", "base"):
        assert {f"vssm_{size}", f"msvssm_{size}"} <= names


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'vssm_huge'.*available"):
        build_model("vssm_huge")


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("flags", FLAG_COMBOS, ids=lambda f: "+".join(k for k, v in f.items() if v) or "none")
def test_every_size_and_flag_combo_trains(size, flags):
    torch.manual_seed(0)
    model = build_model(f"vssm_{size}", num_classes=4, drop_path_rate=0.0, **flags)
    x = torch.randn(2, 3, INPUT_FOR_SIZE[size], INPUT_FOR_SIZE[size])
    logits = model(x)
    assert logits.shape == (2, 4)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    no_grad = [
        name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)
    ]
    assert not no_grad, f"parameters without gradient: {no_grad[:10]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("size", list(SIZES))
def test_each_flag_adds_parameters(size):
    base = n_params(build_model(f"vssm_{size}"))
    for flag in FLAG_NAMES:
        assert n_params(build_model(f"vssm_{size}", **{flag: True})) > base, flag
    assert n_params(build_model(f"msvssm_{size}")) > base


def test_msvssm_factory_turns_on_all_three_options_and_flags_turn_them_off():
    full = build_model("msvssm_nano")
    assert full.flags == ABLATION_FLAGS["VSSM+SE+LayerScale+DSPP"]
    plain = build_model("msvssm_nano", path_se=False, layer_scale=False, dspp=False)
    assert n_params(plain) == n_params(build_model("vssm_nano"))
    assert all(isinstance(s.dspp, torch.nn.Identity) for s in plain.stages)
    block = plain.stages[0].blocks[0].op
    assert isinstance(block.path_se, torch.nn.Identity) and isinstance(block.layer_scale, torch.nn.Identity)


@pytest.mark.parametrize("init", [1e-5, 0.1])
def test_layer_scale_starts_at_its_init_value(init):
    model = build_model("vssm_nano", layer_scale=True, layer_scale_init=init)
    scales = [m for m in model.modules() if isinstance(m, LayerScale)]
    assert len(scales) == sum(SIZES["nano"]["depths"])
    ss2ds = [m for m in model.modules() if isinstance(m, SS2D)]
    for m, ss2d in zip(scales, ss2ds):
        assert torch.all(m.gamma == torch.tensor(init, dtype=m.gamma.dtype))
        assert m.gamma.shape == (ss2d.d_inner,)  # per channel of the d_inner features


def capture_inputs(module, store, key):
    return module.register_forward_hook(lambda mod, inp, out: store.update({key: (inp[0].detach(), out.detach())}))


def test_layer_scale_sits_after_se_and_norm_and_feeds_out_proj():
    torch.manual_seed(0)
    ss2d = SS2D(16, path_se=True, se_reduction=4, layer_scale=True, layer_scale_init=0.3)
    seen = {}
    hooks = [capture_inputs(ss2d.out_norm, seen, "norm"), capture_inputs(ss2d.layer_scale, seen, "scale"),
             capture_inputs(ss2d.out_proj, seen, "proj")]
    ss2d(torch.randn(2, 5, 6, 16))
    for h in hooks:
        h.remove()
    torch.testing.assert_close(seen["scale"][0], seen["norm"][1])  # Λ takes the LayerNorm's output
    torch.testing.assert_close(seen["scale"][1], 0.3 * seen["norm"][1])  # F ⊙ Λ
    torch.testing.assert_close(seen["proj"][0], seen["scale"][1])  # and feeds out_proj
    assert seen["proj"][0].shape[-1] == ss2d.d_inner


def test_se_acts_on_each_direction_on_the_grid_before_the_merge():
    torch.manual_seed(0)
    ss2d = SS2D(16, ssm_ratio=2.0, path_se=True, se_reduction=4)
    seen = {}
    hooks = [capture_inputs(ss2d.path_se, seen, "se"), capture_inputs(ss2d.out_norm, seen, "norm")]

    def recording_merge(y):
        seen["merge_in"] = y.detach()
        return SS2D.merge(y)

    ss2d.merge = recording_merge  # the instance attribute shadows the method for this module only
    ss2d(torch.randn(2, 5, 6, 16))
    for h in hooks:
        h.remove()
    y, gated = seen["se"]
    assert torch.equal(seen["merge_in"], gated)  # the SE output is what gets merged...
    torch.testing.assert_close(seen["norm"][0], gated.sum(dim=1).permute(0, 2, 3, 1))  # ...and normalised
    assert y.shape == (2, 4, ss2d.d_inner, 5, 6)  # (b, K, d, h, w): per direction, on the 2D grid
    se = ss2d.path_se
    for k in range(4):  # hand-computed SE with direction k's own weights
        s = y[:, k].mean(dim=(-2, -1))  # (b, d)
        w = torch.sigmoid(torch.relu(s @ se.fc1_weight[k].T + se.fc1_bias[k]) @ se.fc2_weight[k].T + se.fc2_bias[k])
        torch.testing.assert_close(gated[:, k], y[:, k] * w[:, :, None, None])
    # the four directions have independent weights
    assert not torch.allclose(se.fc1_weight[0], se.fc1_weight[1])


def test_ss2d_follows_vmamba_v2_initialisation_and_has_no_biases():
    torch.manual_seed(0)
    ss2d = SS2D(96, d_state=4, ssm_ratio=2.0)
    assert ss2d.d_inner == 192 and ss2d.dt_rank == 6  # dt_rank = ceil(C / 16), from C not d_inner
    assert ss2d.in_proj.bias is None and ss2d.out_proj.bias is None and ss2d.conv2d.bias is None
    assert ss2d.conv2d.groups == ss2d.d_inner  # depthwise
    assert ss2d.x_proj_weight.shape == (4, 6 + 2 * 4, 192)
    assert ss2d.dt_projs_weight.shape == (4, 192, 6) and ss2d.dt_projs_weight.abs().max() <= 6**-0.5
    torch.testing.assert_close(ss2d.A_logs, torch.log(torch.arange(1.0, 5.0)).repeat(4 * 192, 1))
    torch.testing.assert_close(ss2d.Ds, torch.ones(4 * 192))
    dt = torch.nn.functional.softplus(ss2d.dt_projs_bias)
    assert dt.shape == (4, 192) and dt.min() >= 1e-4 * 0.999 and dt.max() <= 0.1 * 1.001
    assert dt.min() < 3e-3 and dt.max() > 3e-2  # log-uniform over [1e-3, 1e-1], not a constant


def test_vssm_tiny_matches_vmamba_t_parameter_count():
    # VMamba-T (s1l8), 1000 classes, 224x224: 30.2M parameters published.
    assert abs(n_params(build_model("vssm_tiny", num_classes=1000)) - 30.2e6) / 30.2e6 < 0.01


@pytest.mark.parametrize("hw", [(64, 64), (112, 112), (50, 70), (33, 97)])
def test_any_input_size_and_channel_count(hw):
    model = build_model("msvssm_nano", num_classes=7, in_chans=1).eval()
    x = torch.randn(1, 1, *hw)
    feats = model.forward_features(x)
    expect = lambda s: -(-s // 32)  # noqa: E731  ceil(s/32): stride-2 convs with padding 1
    assert feats.shape == (1, expect(hw[0]), expect(hw[1]), model.num_features)
    assert model.forward_head(feats).shape == (1, 7)
    assert model.forward_head(feats, pre_logits=True).shape == (1, model.num_features)


def test_wrong_image_shape_is_a_clear_error():
    model = build_model("vssm_nano")
    with pytest.raises(ValueError, match=r"expected images shaped \(batch, 3, height, width\).*channels last"):
        model(torch.randn(2, 64, 64, 3))
    with pytest.raises(ValueError, match="got \\(3, 64, 64\\)"):
        model(torch.randn(3, 64, 64))


def test_drop_path_rate_is_settable_and_linear():
    model = build_model("vssm_nano", drop_path_rate=0.3)
    blocks = [b for s in model.stages for b in s.blocks]
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in blocks]  # rate 0 is nn.Identity
    n = len(blocks)
    assert rates == pytest.approx([0.3 * i / (n - 1) for i in range(n)])  # linspace(0, 0.3, n)
    assert isinstance(blocks[0].drop_path, torch.nn.Identity)


def test_feature_extractor_without_head():
    model = build_model("vssm_nano", num_classes=0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, model.num_features)


@pytest.mark.parametrize("backend", [b for b in msvssm.available_scan_backends("cpu") if b != "reference"])
def test_model_agrees_across_scan_backends(backend):
    torch.manual_seed(0)
    model = build_model("msvssm_nano", drop_path_rate=0.0, layer_scale_init=0.5)
    x = torch.randn(2, 3, 64, 64)

    def run(name):
        model.zero_grad()
        model.set_scan_backend(name)
        out = model(x)
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    ref_out, ref_grads = run("reference")
    out, grads = run(backend)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-3, atol=1e-5)


def test_unavailable_backend_in_a_model_is_an_error():
    model = build_model("vssm_nano", scan_backend="no_such_backend")
    with pytest.raises(ValueError, match="unknown selective-scan backend"):
        model(torch.randn(1, 3, 32, 32))


def test_under_bf16_autocast_the_scan_merge_and_out_norm_stay_float32(monkeypatch):
    import msvssm.models.ss2d as ss2d_module

    torch.manual_seed(0)
    model = build_model("msvssm_nano", drop_path_rate=0.0, layer_scale_init=0.5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model.forward_features(x)
    op = model.stages[1].blocks[0].op
    seen = {}
    hooks = [capture_inputs(getattr(op, name), seen, name) for name in ("in_proj", "path_se", "out_norm", "out_proj")]
    real_scan = ss2d_module.cross_selective_scan

    def recording_scan(u, *args, **kwargs):
        y = real_scan(u, *args, **kwargs)
        seen.setdefault("scan", (u.dtype, torch.is_autocast_enabled("cpu"), y.dtype))
        return y

    monkeypatch.setattr(ss2d_module, "cross_selective_scan", recording_scan)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_features(x)
    for h in hooks:
        h.remove()
    assert seen["in_proj"][1].dtype == torch.bfloat16  # in_proj (and conv, x_proj) in the autocast dtype
    assert seen["scan"] == (torch.float32, False, torch.float32)  # the scan: float32 in and out, autocast off
    assert seen["path_se"][0].dtype == seen["path_se"][1].dtype == torch.float32  # SE in float32
    assert seen["out_norm"][0].dtype == torch.float32  # merge output, entering out_norm
    assert seen["out_norm"][1].dtype == torch.float32
    assert seen["out_proj"][1].dtype == torch.bfloat16  # out_proj back in the autocast dtype
    assert torch.isfinite(out).all()
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.03, rel


def test_no_weight_decay_gives_timm_the_right_groups():
    from timm.optim import create_optimizer_v2

    model = build_model("msvssm_nano")
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    wd_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert id(p) not in wd_of  # in one group only
            wd_of[id(p)] = group["weight_decay"]
    names = dict(model.named_parameters())
    assert set(wd_of) == {id(p) for p in names.values()}  # every parameter in a group
    wd = {name: wd_of[id(p)] for name, p in names.items()}
    norms = {n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    leaf = lambda name: name.rsplit(".", 1)[-1]  # noqa: E731
    no_decay = [n for n in wd if leaf(n) in ("A_logs", "Ds", "gamma", "bias", "dt_projs_bias", "fc1_bias", "fc2_bias")
                or n.rsplit(".", 1)[0] in norms]
    assert {leaf(n) for n in no_decay} >= {"A_logs", "Ds", "gamma", "bias", "dt_projs_bias", "fc1_bias", "fc2_bias", "weight"}
    assert all(wd[n] == 0.0 for n in no_decay), [n for n in no_decay if wd[n] != 0.0][:5]
    decay = set(wd) - set(no_decay)  # conv and linear weights, x_proj, dt_proj, SE weights
    assert all(wd[n] == 0.05 for n in decay), [n for n in decay if wd[n] != 0.05][:5]
    assert {"stages.0.blocks.0.op.in_proj.weight", "stages.0.blocks.0.op.x_proj_weight", "stem.conv1.weight",
            "stages.0.dspp.fuse.weight", "stages.0.blocks.0.op.path_se.fc1_weight", "head.weight"} <= decay
    assert model.stages[0].blocks[0].op.A_logs.ndim == 2  # why timm's ndim <= 1 rule alone is not enough


# DSPP's pooled branch i: reduce (1x1) -> avgpool k_i (radius k_i // 2) -> conv3x3 dilation r_i (taps at
# -r_i, 0, +r_i: radius r_i) -> align (1x1). Footprint radius = k_i // 2 + r_i = 1 + 1, 2 + 2, 3 + 3.
DSPP_FOOTPRINT_RADII = [3 // 2 + 1, 5 // 2 + 2, 7 // 2 + 3]


def test_dspp_impulse_footprints_and_constant_global_branch():
    from msvssm.models import DSPP

    torch.manual_seed(0)
    dspp = DSPP(16)
    size, centre = 25, 12
    zeros = torch.zeros(1, 16, size, size)
    impulse = zeros.clone()
    impulse[0, :, centre, centre] = 1.0
    with torch.no_grad():
        base = dspp.branches(dspp.reduce(zeros))
        hit = dspp.branches(dspp.reduce(impulse))
    g = hit[0]
    assert torch.equal(g, g[:, :, :1, :1].expand_as(g))  # global branch: constant over space
    for radius, b0, b1 in zip(DSPP_FOOTPRINT_RADII, base[1:], hit[1:]):
        changed = (b1 - b0).abs().sum(dim=(0, 1)) > 0  # (h, w)
        expected = torch.zeros(size, size, dtype=torch.bool)
        expected[centre - radius: centre + radius + 1, centre - radius: centre + radius + 1] = True
        assert torch.equal(changed, expected), radius


def test_dspp_global_branch_convolves_before_broadcasting_with_the_same_result():
    from msvssm.models import DSPP

    torch.manual_seed(0)
    dspp = DSPP(32)
    x0 = torch.randn(2, 8, 7, 9)
    with torch.no_grad():
        old = dspp.align[0](dspp.global_branch(x0.mean(dim=(2, 3), keepdim=True)).expand_as(x0))  # broadcast, then align
        new = dspp.branches(x0)[0]
    torch.testing.assert_close(new, old)


def test_dspp_residual_flag_adds_the_input():
    from msvssm.models import DSPP

    torch.manual_seed(0)
    added, replaced = DSPP(16, residual=True), DSPP(16, residual=False)
    replaced.load_state_dict(added.state_dict())
    x = torch.randn(2, 6, 7, 16)
    torch.testing.assert_close(added(x) - replaced(x), x)


def test_dspp_of_each_stage_sees_that_stages_resolution_after_the_downsample():
    model = build_model("msvssm_nano", drop_path_rate=0.0)
    shapes = []
    hooks = [s.dspp.register_forward_pre_hook(lambda m, inp: shapes.append(tuple(inp[0].shape))) for s in model.stages]
    model(torch.randn(2, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert shapes == [(2, 16 >> i, 16 >> i, model.dims[i]) for i in range(4)]  # H/4/2^i, stage i's width
    assert all(list(s._modules) == ["dspp", "blocks", "downsample"] for s in model.stages)


@pytest.mark.parametrize("name", ["vssm_nano", "vssm_tiny", "vssm_small", "vssm_base",
                                  "msvssm_nano", "msvssm_tiny", "msvssm_small", "msvssm_base"])
def test_each_factory_is_an_explicit_registered_function(name):
    import inspect

    import msvssm.models.msvssm as zoo
    from msvssm.models.registry import get_factory

    factory = get_factory(name)
    assert factory is getattr(zoo, name) and factory.__qualname__ == name  # a def you can jump to
    assert inspect.signature(factory).parameters["num_classes"].default == 4


def test_reset_and_get_classifier():
    model = build_model("msvssm_nano")
    assert model.get_classifier() is model.head and model.head.out_features == 4
    model.reset_classifier(7)
    assert model.get_classifier().out_features == 7 and model.num_classes == 7
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), torch.nn.Identity)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, model.num_features)


@pytest.mark.parametrize("hw", [(64, 64), (50, 70)])
def test_forward_intermediates_per_stage_resolution_and_forward_unchanged(hw):
    torch.manual_seed(0)
    model = build_model("msvssm_nano", drop_path_rate=0.0).eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        outs = model.forward_intermediates(x)
        down = lambda s, i: -(-s // (4 * 2**i))  # noqa: E731  ceil(s / 4 / 2^i)
        assert [o.shape for o in outs] == [(2, down(hw[0], i), down(hw[1], i), model.dims[i]) for i in range(4)]
        # the forward as it was: stem, every stage as one Sequential (dspp, blocks, downsample), norm, head
        y = model.stem(x)
        for stage in model.stages:
            y = stage(y)
        old = model.head(model.norm(y).mean(dim=(1, 2)))
        assert torch.equal(model(x), old)
        assert torch.equal(outs[-1], y)

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
    hook = capture_inputs(ss2d.path_se, seen, "se")
    ss2d(torch.randn(2, 5, 6, 16))
    hook.remove()
    y, gated = seen["se"]
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
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks if hasattr(b.drop_path, "drop_prob")]
    assert rates[-1] == pytest.approx(0.3)
    assert rates == sorted(rates)


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


def test_flop_count_matches_vmamba_t():
    from msvssm.flops import count_flops

    result = count_flops(build_model("vssm_tiny", num_classes=1000), (3, 224, 224))
    assert result["flops"] == pytest.approx(4.9e9, rel=0.02)  # VMamba-T published: 4.9G


def test_flop_count_counts_every_scan_as_vmamba_does():
    from msvssm.flops import count_flops, scan_flops

    model = build_model("vssm_nano", num_classes=4)
    result = count_flops(model, (3, 64, 64))
    # stage i: (64 / 4 / 2^i)^2 pixels, K * dims_i channels, d_state 1, D present
    expected = sum(
        depth * scan_flops(1, (16 >> i) ** 2, 4 * model.dims[i], 1)
        for i, depth in enumerate(model.depths)
    )
    assert result["by_operator"]["PythonOp._ScanForFlopCount"] == expected
    assert scan_flops(2, 10, 8, 4, with_d=False) == 9 * 2 * 10 * 8 * 4


def test_flop_counting_backend_is_never_offered_to_users():
    from msvssm.flops import FLOP_COUNT_BACKEND, count_flops

    count_flops(build_model("vssm_nano"), (3, 32, 32))
    assert FLOP_COUNT_BACKEND not in msvssm.available_scan_backends()
    with pytest.raises(ValueError, match="unknown selective-scan backend"):
        msvssm.selective_scan(*[torch.zeros(1, 4, 3)] * 2, -torch.ones(4, 1), *[torch.zeros(1, 1, 1, 3)] * 2,
                              backend=FLOP_COUNT_BACKEND)

"""Skip-selective U-Nets: shapes, nnU-Net contracts, No-Skip invariance, attention coefficients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnunet_robustness.architectures import (
    AdditiveAttentionGate,
    SkipSelectiveUNetDecoder,
    count_parameters,
    resolve_skip_levels,
)
from tests.helpers.networks import CLASSES, arch_kwargs

VARIANTS = {
    "unet": dict(skip_levels="all", attention_gates=False),
    "noskip": dict(skip_levels="none", attention_gates=False),
    "attention": dict(skip_levels="all", attention_gates=True),
    "deepest2": dict(skip_levels=(-1, -2), attention_gates=False),
    "attention_deepest2": dict(skip_levels=(-1, -2), attention_gates=True),
}


def build(family: str, dim: int, variant: str, deep_supervision: bool = True, strides=None) -> nn.Module:
    torch.manual_seed(0)
    cls = CLASSES[family][1]
    net = cls(**arch_kwargs(family, dim, strides), deep_supervision=deep_supervision, **VARIANTS[variant])
    net.apply(net.initialize)
    return net.eval()


@pytest.mark.parametrize("family", ["plain", "resenc"])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("deep_supervision", [True, False])
def test_output_shapes_match_nnunet_network(family, dim, variant, deep_supervision):
    size = (32,) * dim
    x = torch.rand(2, 2, *size)
    ours = build(family, dim, variant, deep_supervision)
    stock = CLASSES[family][0](**arch_kwargs(family, dim), deep_supervision=deep_supervision).eval()
    with torch.no_grad():
        out, ref = ours(x), stock(x)
    if deep_supervision:
        assert isinstance(out, list) and len(out) == len(ref) == 3
        assert [o.shape for o in out] == [r.shape for r in ref]
        assert out[0].shape == (2, 3, *size)
        assert out[1].shape == (2, 3, *(s // 2 for s in size))
    else:
        assert isinstance(out, torch.Tensor)
        assert out.shape == ref.shape == (2, 3, *size)


def test_deep_supervision_flag_on_decoder_switches_outputs():
    """nnU-Net's set_deep_supervision_enabled flips ``network.decoder.deep_supervision``."""
    net = build("plain", 2, "attention", deep_supervision=True)
    x = torch.rand(1, 2, 32, 32)
    assert isinstance(net(x), list)
    net.decoder.deep_supervision = False
    assert net(x).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("family", ["plain", "resenc"])
def test_all_skips_without_gates_is_exactly_nnunets_network(family):
    """Same parameter names/shapes as nnU-Net's class, and identical outputs with the same weights:
    checkpoints move between the two."""
    stock = CLASSES[family][0](**arch_kwargs(family, 3), deep_supervision=True).eval()
    ours = build(family, 3, "unet")
    ours.load_state_dict(stock.state_dict())
    x = torch.rand(1, 2, 16, 16, 16)
    with torch.no_grad():
        for a, b in zip(ours(x), stock(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def _decode_with_replaced_skips(net, x, replace_levels):
    with torch.no_grad():
        skips = net.encoder(x)
        generator = torch.Generator().manual_seed(1)
        replaced = [torch.randn(s.shape, generator=generator) * 5 if i in replace_levels else s
                    for i, s in enumerate(skips)]
        return net.decoder(skips), net.decoder(replaced)


@pytest.mark.parametrize("family", ["plain", "resenc"])
@pytest.mark.parametrize("dim", [2, 3])
def test_noskip_decoder_ignores_every_skip_but_the_bottleneck(family, dim):
    x = torch.rand(1, 2, *(16,) * dim)
    all_but_bottleneck = {0, 1, 2}
    clean, replaced = _decode_with_replaced_skips(build(family, dim, "noskip", False), x, all_but_bottleneck)
    torch.testing.assert_close(clean, replaced, rtol=0, atol=0)
    # the bottleneck itself does matter
    clean, replaced = _decode_with_replaced_skips(build(family, dim, "noskip", False), x, {3})
    assert not torch.allclose(clean, replaced)
    # and the standard U-Net does use its skips
    clean, replaced = _decode_with_replaced_skips(build(family, dim, "unet", False), x, all_but_bottleneck)
    assert not torch.allclose(clean, replaced)


def test_skip_subset_uses_exactly_its_levels():
    net = build("plain", 2, "deepest2", False)  # 4 stages: skip levels 0,1,2; deepest two are 1 and 2
    assert net.decoder.skip_levels == (1, 2)
    x = torch.rand(1, 2, 32, 32)
    clean, replaced = _decode_with_replaced_skips(net, x, {0})
    torch.testing.assert_close(clean, replaced, rtol=0, atol=0)
    for used in (1, 2):
        clean, replaced = _decode_with_replaced_skips(net, x, {used})
        assert not torch.allclose(clean, replaced)


def test_noskip_parameter_count_drops_by_exactly_the_skip_input_weights():
    """Each decoder stage's first conv loses the C_skip input channels that the concat used to add."""
    for dim in (2, 3):
        unet, noskip = build("plain", dim, "unet"), build("plain", dim, "noskip")
        channels = [4, 8, 16]  # skip channels per level
        expected = sum(c * c * 3 ** dim for c in channels)
        assert count_parameters(unet) - count_parameters(noskip) == expected


@pytest.mark.parametrize("dim,strides", [(2, None), (3, None), (3, [1, [1, 2, 2], [2, 2, 2], [1, 2, 2]])])
def test_attention_coefficients_in_unit_interval_on_skip_grid(dim, strides):
    net = build("plain", dim, "attention", False, strides=strides)
    seen = {}

    def capture(level):
        def hook(module, inputs, output):
            x, g = inputs
            seen[level] = (x.shape, module.coefficients(x, g))
        return hook

    for level, gate in net.decoder.attention_gates.items():
        gate.register_forward_hook(capture(level))
    with torch.no_grad():
        net(torch.rand(2, 2, *(32,) * dim))
    assert sorted(seen) == ["0", "1", "2"]
    for skip_shape, alpha in seen.values():
        assert alpha.shape == (skip_shape[0], 1, *skip_shape[2:])
        assert alpha.min() >= 0 and alpha.max() <= 1
        assert alpha.std() > 0  # not a constant gate


def test_attention_gate_output_is_skip_times_coefficients():
    gate = AdditiveAttentionGate(nn.Conv2d, skip_channels=4, gating_channels=8, stride=(2, 2))
    x, g = torch.rand(1, 4, 16, 16), torch.rand(1, 8, 8, 8)
    torch.testing.assert_close(gate(x, g), x * gate.coefficients(x, g))


def test_attention_gates_only_on_kept_skips():
    net = build("resenc", 3, "attention_deepest2")
    assert sorted(net.decoder.attention_gates) == ["1", "2"]


def test_feature_map_estimate_counts_attention_gates():
    """nnU-Net's planner calls compute_conv_feature_map_size; gates add memory, No-Skip does not change it."""
    size = (32, 32, 32)
    unet, noskip, attention = (build("plain", 3, v).compute_conv_feature_map_size(size)
                               for v in ("unet", "noskip", "attention"))
    assert noskip == unet
    assert attention > unet


def test_initialize_like_nnunet():
    net = build("resenc", 3, "attention")
    # ResEnc's init zeroes the last norm of each residual block, and our gates' convs get He init
    assert any(torch.count_nonzero(p) == 0 for n, p in net.named_parameters() if "norm.weight" in n)
    assert all(torch.count_nonzero(g.theta_x.weight) > 0 for g in net.decoder.attention_gates.values())


def test_resolve_skip_levels():
    assert resolve_skip_levels("all", 4) == (0, 1, 2, 3)
    assert resolve_skip_levels("none", 4) == ()
    assert resolve_skip_levels([-1, 0, 3], 4) == (0, 3)
    with pytest.raises(ValueError, match="does not exist"):
        resolve_skip_levels([4], 4)
    with pytest.raises(ValueError, match="'all', 'none'"):
        resolve_skip_levels("some", 4)
    with pytest.raises(ValueError, match="integers"):
        resolve_skip_levels([1.5], 4)


def test_decoder_is_a_unet_decoder_subclass():
    net = build("plain", 2, "noskip")
    from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder

    assert isinstance(net.decoder, SkipSelectiveUNetDecoder) and isinstance(net.decoder, UNetDecoder)
    with torch.no_grad():
        assert np.isfinite(float(net(torch.rand(1, 2, 32, 32))[0].sum()))

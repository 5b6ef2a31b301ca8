"""How the skip-selective U-Nets are constructed: nnU-Net's constructor arguments, each module built
once, and the same networks as before that construction was rewritten.

The recorded values below were measured on the earlier construction (which built nnU-Net's network and
then replaced its decoder): parameter count, number of state_dict entries, a digest of the state_dict's
names and shapes in order, nnU-Net's feature-map estimate, and the mean absolute value of each deep
supervision output for fixed weights and input. Equal values mean checkpoints load unchanged and the
forward pass computes the same function. (Not compared: the initial weights drawn from a seed, since
building the stock decoder no longer consumes random numbers.)
"""

from __future__ import annotations

import hashlib
import inspect

import pytest
import torch
from dynamic_network_architectures.building_blocks import unet_decoder

from tests.helpers.networks import CLASSES, arch_kwargs

VARIANTS = {
    "unet": dict(skip_levels="all", attention_gates=False),
    "noskip": dict(skip_levels="none", attention_gates=False),
    "attention": dict(skip_levels="all", attention_gates=True),
    "deepest2": dict(skip_levels=(-1, -2), attention_gates=False),
    "learned_scalar": dict(learned_gates="scalar"),
    "learned_channel_attention_level0": dict(skip_levels=(0,), attention_gates=True, learned_gates="channel"),
}
# name -> (parameters, state_dict entries, digest of names and shapes, feature-map estimate, output means)
RECORDED = {
    "plain-2d-unet": (17325, 164, "6bc2045ee9973b91", 8304, (0.087377, 0.112335, 0.088229)),
    "plain-2d-noskip": (14301, 164, "64abacff17f9deb4", 8304, (0.173448, 0.124232, 0.058256)),
    "plain-2d-attention": (18236, 179, "cce4db37d7325437", 10656, (0.08733, 0.112679, 0.088353)),
    "plain-2d-deepest2": (17181, 164, "8771cf1c5d1b3a2f", 8304, (0.02658, 0.124099, 0.027448)),
    "plain-2d-learned_scalar": (17328, 167, "aba0976b8f73450e", 10096, (0.087349, 0.112839, 0.088499)),
    "plain-2d-learned_channel_attention_level0": (14502, 170, "ace5a80f6f6c0541", 10736, (0.052631, 0.045651, 0.067907)),
    "plain-3d-unet": (49373, 164, "217107bf32dccc72", 100288, (0.074399, 0.182532, 0.053897)),
    "plain-3d-noskip": (40301, 164, "106e9ef929931ea5", 100288, (0.111603, 0.047708, 0.152542)),
    "plain-3d-attention": (50956, 179, "781d7b3197b7dc71", 127808, (0.074439, 0.183154, 0.053211)),
    "plain-3d-deepest2": (48941, 164, "bbbf3a38f0128332", 100288, (0.10321, 0.084378, 0.187386)),
    "plain-3d-learned_scalar": (49376, 167, "b0051252259ed5fd", 121792, (0.074417, 0.182988, 0.053303)),
    "plain-3d-learned_channel_attention_level0": (40822, 170, "937d2777f625b01f", 138176, (0.110839, 0.089386, 0.116375)),
    "resenc-2d-unet": (27097, 268, "2013baf98280e003", 10800, (0.074675, 0.12473, 0.067341)),
    "resenc-2d-noskip": (24073, 268, "39c266f120302e0c", 10800, (0.054027, 0.072726, 0.069517)),
    "resenc-2d-attention": (28008, 283, "9a7d09cc1bb2b5e2", 13152, (0.07487, 0.12497, 0.066884)),
    "resenc-2d-deepest2": (26953, 268, "8c78019eb1412fbd", 10800, (0.191877, 0.081297, 0.111826)),
    "resenc-2d-learned_scalar": (27100, 271, "376f866ae0db04ef", 12592, (0.074821, 0.125065, 0.064845)),
    "resenc-2d-learned_channel_attention_level0": (24274, 274, "eb6f6c01b0c29a03", 13232, (0.089315, 0.086906, 0.102958)),
    "resenc-3d-unet": (77865, 268, "a1bb253a4c186ace", 124224, (0.129602, 0.104516, 0.041639)),
    "resenc-3d-noskip": (68793, 268, "08a1fe62a8851d5d", 124224, (0.091476, 0.129571, 0.037358)),
    "resenc-3d-attention": (79448, 283, "977fceb92dcbbe7b", 151744, (0.129613, 0.104158, 0.040952)),
    "resenc-3d-deepest2": (77433, 268, "c34305b0e8d8f728", 124224, (0.05548, 0.102981, 0.076405)),
    "resenc-3d-learned_scalar": (77868, 271, "01ecb474ce5f987d", 145728, (0.129598, 0.103997, 0.040646)),
    "resenc-3d-learned_channel_attention_level0": (69314, 274, "c1b0c7bad562335c", 162112, (0.054325, 0.051552, 0.076262)),
}


def _build(name: str):
    family, dim, variant = name.split("-", 2)
    dim = int(dim[0])
    # one plain case with nonlin_first, which only PlainConvUNet has
    extra = {"nonlin_first": True} if (family, variant) == ("plain", "noskip") else {}
    return CLASSES[family][1](**arch_kwargs(family, dim), deep_supervision=True, **VARIANTS[variant], **extra), dim


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_same_network_as_the_earlier_construction(name):
    params, entries, digest, feature_maps, output_means = RECORDED[name]
    network, dim = _build(name)
    state = network.state_dict()
    signature = "\n".join(f"{key} {tuple(value.shape)}" for key, value in state.items())
    assert sum(p.numel() for p in network.parameters()) == params
    assert len(state) == entries
    assert hashlib.sha256(signature.encode()).hexdigest()[:16] == digest
    assert int(network.compute_conv_feature_map_size((16,) * dim)) == feature_maps
    # fixed weights (drawn in state_dict order) and input: the forward pass computes the same function
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for value in state.values():
            if value.is_floating_point():
                value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
        outputs = network.eval()(torch.randn(1, 2, *(16,) * dim, generator=generator))
    assert [o.shape[1:] for o in outputs] == [(3, *(16 // 2 ** i,) * dim) for i in range(3)]
    assert [float(o.abs().mean()) for o in outputs] == pytest.approx(output_means, rel=1e-4)


@pytest.mark.parametrize("family", ["plain", "resenc"])
def test_constructor_takes_nnunets_arguments_in_order_plus_ours(family):
    """Plans pass the stock class's arguments by keyword; positional use must also match it."""
    stock, ours = CLASSES[family]
    theirs = list(inspect.signature(stock.__init__).parameters.values())
    mine = list(inspect.signature(ours.__init__).parameters.values())
    assert [(p.name, p.default) for p in mine[:len(theirs)]] == [(p.name, p.default) for p in theirs]
    assert [p.name for p in mine[len(theirs):]] == ["skip_levels", "attention_gates", "learned_gates"]


@pytest.mark.parametrize("family", ["plain", "resenc"])
def test_the_decoder_is_built_once(family, monkeypatch):
    calls = []
    original = unet_decoder.UNetDecoder.__init__

    def counting(self, *args, **kwargs):
        calls.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(unet_decoder.UNetDecoder, "__init__", counting)
    CLASSES[family][1](**arch_kwargs(family, 2), deep_supervision=True, skip_levels="none")
    assert calls == ["SkipSelectiveUNetDecoder"]

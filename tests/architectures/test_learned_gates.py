"""Learned skip gates: initialised open, a closed gate cuts its skip, penalty, trainer, plans route."""

from __future__ import annotations

import json
import math

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_robustness.architectures import LearnedSkipGate, gate_sparsity_penalty, gate_values, skip_weight_share
from nnunet_robustness.plans import ArchChoice, make_arch_plans
from nnunet_robustness.trainers import TRAINERS
from nnunet_robustness.trainers.learned_skip import GateSparsityLoss
from tests.helpers.networks import CLASSES, arch_kwargs
from tests.helpers.plans import DATASET_JSON, default_plans


def build(family: str = "plain", dim: int = 2, mode: str = "scalar", deep_supervision: bool = False, **extra):
    torch.manual_seed(0)
    net = CLASSES[family][1](**arch_kwargs(family, dim), deep_supervision=deep_supervision, learned_gates=mode,
                             **extra)
    net.apply(net.initialize)  # nnU-Net's init must leave the gates alone
    return net.eval()


def decode(net, x, replace_level=None):
    """Decoder output, optionally with one encoder level's skip tensor replaced by large noise."""
    with torch.no_grad():
        skips = net.encoder(x)
        if replace_level is not None:
            skips = list(skips)
            generator = torch.Generator().manual_seed(7)
            skips[replace_level] = torch.randn(skips[replace_level].shape, generator=generator) * 5
        return net.decoder(skips)


@pytest.mark.parametrize("mode,channels", [("scalar", [1, 1, 1]), ("channel", [4, 8, 16])])
@pytest.mark.parametrize("family", ["plain", "resenc"])
def test_gates_start_open_one_per_kept_skip(family, mode, channels):
    net = build(family, 3, mode)
    values = gate_values(net.decoder.learned_gates)
    assert sorted(values) == ["0", "1", "2"]
    assert [len(values[level]) for level in ("0", "1", "2")] == channels
    assert all(math.isclose(v, 0.95, rel_tol=1e-6) for vs in values.values() for v in vs)
    # only kept skips get a gate
    assert sorted(build(family, 3, mode, skip_levels=(-1,)).decoder.learned_gates) == ["2"]


@pytest.mark.parametrize("mode", ["scalar", "channel"])
@pytest.mark.parametrize("level", [0, 1, 2])
def test_output_depends_on_a_skip_only_when_its_gate_is_nonzero(mode, level):
    net = build("plain", 2, mode)
    x = torch.rand(1, 2, 32, 32)
    # open gate: the skip's content reaches the output
    assert not torch.allclose(decode(net, x), decode(net, x, replace_level=level))
    with torch.no_grad():
        net.decoder.learned_gates[str(level)].logit.fill_(-math.inf)  # sigmoid(-inf) == 0 exactly
    assert gate_values(net.decoder.learned_gates)[str(level)] == [0.0] * len(gate_values(net.decoder.learned_gates)[str(level)])
    torch.testing.assert_close(decode(net, x), decode(net, x, replace_level=level), rtol=0, atol=0)
    # the other skips still matter
    other = (level + 1) % 3
    assert not torch.allclose(decode(net, x), decode(net, x, replace_level=other))


def test_a_gate_scales_its_skip_and_matches_a_noskip_input_when_closed():
    gate = LearnedSkipGate(channels=4, num_spatial_dims=2, mode="channel", initial_gate=0.5)
    x = torch.rand(2, 4, 8, 8)
    torch.testing.assert_close(gate(x), 0.5 * x)
    with torch.no_grad():
        gate.logit[0, 1] = -math.inf
    out = gate(x)
    assert torch.count_nonzero(out[:, 1]) == 0 and torch.allclose(out[:, 0], 0.5 * x[:, 0])


def test_gates_are_trained_parameters_with_nnunet_names_elsewhere():
    """Gate logits are the only new parameters; every other name and shape is nnU-Net's."""
    gated = build("plain", 3, "scalar")
    stock = PlainConvUNet(**arch_kwargs("plain", 3), deep_supervision=False)
    ours, theirs = dict(gated.named_parameters()), dict(stock.named_parameters())
    extra = sorted(set(ours) - set(theirs))
    assert extra == [f"decoder.learned_gates.{level}.logit" for level in ("0", "1", "2")]
    assert all(ours[name].shape == theirs[name].shape for name in theirs)
    x = torch.rand(1, 2, 16, 16, 16)
    gated.train()
    gated(x).sum().backward()
    assert all(ours[name].grad is not None and ours[name].grad.abs().sum() > 0 for name in extra)


@pytest.mark.parametrize("mode", ["scalar", "channel"])
def test_skip_weight_share_is_invariant_to_trading_gate_for_weight_and_zero_when_closed(mode):
    net = build("plain", 2, mode)
    decoder = net.decoder
    before = skip_weight_share(decoder)
    assert all(0 < v < 1 for v in before.values())
    level, stage = "1", decoder.num_skip_levels - 1 - 1
    skip_channels = decoder.encoder.output_channels[1]
    x = torch.rand(1, 2, 32, 32)
    out = decode(net, x)
    with torch.no_grad():
        gate = decoder.learned_gates[level]
        old = gate.gate().clone()
        gate.logit.fill_(0.0)  # gate 0.5, compensated by larger skip weights
        decoder.stages[stage].convs[0].conv.weight[:, -skip_channels:] *= (old / 0.5).reshape(1, -1, 1, 1)
    torch.testing.assert_close(decode(net, x), out, rtol=1e-4, atol=1e-5)  # same function...
    after = skip_weight_share(decoder)
    assert math.isclose(after[level], before[level], rel_tol=1e-5)  # ...same share, other gate value
    with torch.no_grad():
        gate.logit.fill_(-math.inf)
    assert skip_weight_share(decoder)[level] == 0.0


def test_invalid_modes_and_initial_values():
    with pytest.raises(ValueError, match="scalar, channel"):
        build("plain", 2, "vector")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        LearnedSkipGate(4, 2, initial_gate=1.0)


def test_sparsity_penalty_is_mean_gate_summed_over_levels_and_only_in_training():
    net = build("plain", 2, "channel")
    gates = net.decoder.learned_gates
    with torch.no_grad():
        gates["0"].logit.zero_()  # 0.5 everywhere
    expected = 0.5 + 0.95 + 0.95
    assert math.isclose(gate_sparsity_penalty(gates.values()).item(), expected, rel_tol=1e-6)
    loss = GateSparsityLoss(lambda output, target: torch.tensor(1.0), lambda: net, weight=0.1)
    net.train()
    assert math.isclose(loss(None, None).item(), 1.0 + 0.1 * expected, rel_tol=1e-6)
    net.eval()  # nnU-Net validates in eval mode: the validation loss stays the plain loss
    assert loss(None, None).item() == 1.0
    # the penalty's gradient pushes every gate towards closed
    net.train()
    loss(None, None).backward()
    assert all(bool((g.logit.grad > 0).all()) for g in gates.values())


def test_feature_map_estimate_counts_gated_skips():
    size = (32, 32)
    plain = CLASSES["plain"][1](**arch_kwargs("plain", 2), deep_supervision=False)
    assert build("plain", 2).compute_conv_feature_map_size(size) > plain.compute_conv_feature_map_size(size)


@pytest.mark.parametrize("name,weight", [("nnUNetTrainerLearnedSkip", 0.0), ("nnUNetTrainerLearnedSkip_tiny", 0.0),
                                         ("nnUNetTrainerLearnedSkip_short", 0.0), ("nnUNetTrainerLearnedSkip_100epochs", 0.0),
                                         ("nnUNetTrainerLearnedSkip_fg066_tiny", 0.0), ("nnUNetTrainerLearnedSkipL1", 0.01),
                                         ("nnUNetTrainerLearnedSkipL1_tiny", 0.01)])
def test_trainer_and_schedule_variants_build_gated_network(name, weight, nnunet_env):
    cls = TRAINERS[name]
    plans_manager = PlansManager(default_plans())
    network = cls.build_network_architecture(plans_manager, plans_manager.get_configuration("2d"), 1, 2, True)
    assert network.decoder.learned_gates is not None
    assert network.decoder.skip_levels == tuple(range(network.decoder.num_skip_levels))
    assert {g.mode for g in network.decoder.learned_gates.values()} == {"scalar"}
    trainer = cls(dict(default_plans(), continue_training=False), "2d", 0, DATASET_JSON, device=torch.device("cpu"))
    assert trainer.gate_sparsity_weight == weight
    # the penalty wraps nnU-Net's loss only when it has a weight
    loss = trainer._build_loss()
    assert isinstance(loss, GateSparsityLoss) is (weight > 0)
    if weight:
        assert loss.weight == weight


@pytest.mark.parametrize("arch,mode,suffix", [("learned", "scalar", "LearnedSkip"),
                                               ("learned-channel", "channel", "LearnedSkipChannel")])
def test_plans_route(arch, mode, suffix):
    choice = ArchChoice.from_cli(arch, None)
    assert choice.plans_suffix() == suffix
    plans = make_arch_plans(default_plans(), choice, f"nnUNetPlans{suffix}")
    json.dumps(plans)
    cm = PlansManager(plans).get_configuration("3d_fullres")
    network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                      cm.network_arch_init_kwargs_req_import, 1, 2, deep_supervision=True)
    assert {g.mode for g in network.decoder.learned_gates.values()} == {mode}
    # the other presets' plans do not gain the key (plans written before stay byte-identical)
    assert "learned_gates" not in ArchChoice.from_cli("noskip", None).arch_kwargs()


def test_plan_arch_cli_learned(nnunet_env, capsys):
    from pathlib import Path

    from nnunet_robustness.cli import main
    from tests.helpers.plans import write_source_plans

    preprocessed = Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset903_Blobs3D"
    write_source_plans(preprocessed)
    (Path(nnunet_env["nnUNet_raw"]) / "Dataset903_Blobs3D").mkdir()
    assert main(["plan-arch", "-d", "903", "--arch", "learned", "-c", "2d"]) == 0
    assert "-p nnUNetPlansLearnedSkip" in capsys.readouterr().out
    plans = json.loads((preprocessed / "nnUNetPlansLearnedSkip.json").read_text())
    assert plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["learned_gates"] == "scalar"
    # the stock trainer's builder gets the gates from the plans, and they start open
    cm = PlansManager(plans).get_configuration("2d")
    network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1, 2, allow_init=True,
                                     deep_supervision=True)
    assert all(math.isclose(v[0], 0.95, rel_tol=1e-6) for v in gate_values(network.decoder.learned_gates).values())

"""The plans route: ``nnunet-robust plan-arch`` and the plans it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_robustness.architectures import SkipSelectivePlainConvUNet, SkipSelectiveResidualEncoderUNet
from nnunet_robustness.cli import main
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.plans import ArchChoice, make_arch_plans, write_arch_plans
from tests.helpers.plans import default_plans, resenc_plans, write_source_plans


def _network(plans: dict, configuration: str):
    cm = PlansManager(plans).get_configuration(configuration)
    # exactly what nnU-Net's stock trainer does with a plans file
    return get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                  cm.network_arch_init_kwargs_req_import, 1, 2, deep_supervision=True)


def test_noskip_plans_build_our_network_with_the_stock_builder():
    plans = make_arch_plans(default_plans(), ArchChoice.from_cli("noskip", None), "nnUNetPlansNoSkip")
    assert plans["plans_name"] == "nnUNetPlansNoSkip"
    json.dumps(plans)  # must stay JSON
    for configuration in ("2d", "3d_fullres", "3d_cascade_fullres"):  # the cascade inherits from 3d_fullres
        network = _network(plans, configuration)
        assert type(network) is SkipSelectivePlainConvUNet
        assert network.decoder.skip_levels == () and network.decoder.attention_gates is None
    # preprocessed data is reused
    for name, cfg in default_plans()["configurations"].items():
        assert plans["configurations"][name].get("data_identifier") == cfg.get("data_identifier")


def test_resenc_plans_keep_the_residual_encoder():
    plans = make_arch_plans(resenc_plans(), ArchChoice.from_cli("attention", None), "X")
    network = _network(plans, "3d_fullres")
    assert type(network) is SkipSelectiveResidualEncoderUNet
    assert sorted(network.decoder.attention_gates) == ["0", "1", "2"]


def test_only_named_configurations_change_and_inherited_ones_get_their_own_architecture():
    source = default_plans()
    plans = make_arch_plans(source, ArchChoice.from_cli("unet", [-1]), "X", configurations=["3d_cascade_fullres"])
    assert plans["configurations"]["2d"] == source["configurations"]["2d"]
    assert plans["configurations"]["3d_fullres"] == source["configurations"]["3d_fullres"]
    assert _network(plans, "3d_cascade_fullres").decoder.skip_levels == (2,)
    assert _network(plans, "3d_fullres").__class__.__name__ == "PlainConvUNet"


def test_errors_name_the_problem():
    with pytest.raises(UserInputError, match="no configuration 3d_lowres"):
        make_arch_plans(default_plans(), ArchChoice.from_cli("noskip", None), "X", configurations=["3d_lowres"])
    plans = default_plans()
    plans["configurations"]["2d"]["architecture"]["network_class_name"] = "my.Primus"
    with pytest.raises(UserInputError, match="configuration 2d: network class 'my.Primus'"):
        make_arch_plans(plans, ArchChoice.from_cli("noskip", None), "X")
    with pytest.raises(UserInputError, match="contradicts --arch noskip"):
        ArchChoice.from_cli("noskip", [0])


def test_plans_names():
    assert ArchChoice.from_cli("noskip", None).plans_suffix() == "NoSkip"
    assert ArchChoice.from_cli("attention", None).plans_suffix() == "AttentionGate"
    assert ArchChoice.from_cli("unet", [-1, -2]).plans_suffix() == "Skipsm2_m1"
    assert ArchChoice.from_cli("attention", [0]).plans_suffix() == "AttentionGateSkips0"


def test_write_is_idempotent_and_never_touches_the_source(tmp_path):
    source = write_source_plans(tmp_path / "Dataset903_Blobs3D")
    before = source.read_bytes()
    target, written = write_arch_plans(source.parent, "nnUNetPlans", ArchChoice.from_cli("noskip", None))
    assert written and target.name == "nnUNetPlansNoSkip.json"
    mtime = target.stat().st_mtime_ns
    assert write_arch_plans(source.parent, "nnUNetPlans", ArchChoice.from_cli("noskip", None)) == (target, False)
    assert target.stat().st_mtime_ns == mtime
    with pytest.raises(UserInputError, match="exists with different content; pass --overwrite"):
        write_arch_plans(source.parent, "nnUNetPlans", ArchChoice.from_cli("attention", None),
                         new_plans_name="nnUNetPlansNoSkip")
    _, written = write_arch_plans(source.parent, "nnUNetPlans", ArchChoice.from_cli("attention", None),
                                  new_plans_name="nnUNetPlansNoSkip", overwrite=True)
    assert written
    assert source.read_bytes() == before
    with pytest.raises(UserInputError, match="would overwrite the source plans"):
        write_arch_plans(source.parent, "nnUNetPlans", ArchChoice.from_cli("noskip", None), None, "nnUNetPlans")


def test_cli(tmp_path, nnunet_env, capsys):
    preprocessed = Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset903_Blobs3D"
    write_source_plans(preprocessed)
    # nnU-Net resolves the dataset ID from its folders
    (Path(nnunet_env["nnUNet_raw"]) / "Dataset903_Blobs3D").mkdir()
    assert main(["plan-arch", "-d", "903", "--arch", "attention", "-c", "2d"]) == 0
    out = capsys.readouterr().out
    assert "nnUNetPlansAttentionGate.json" in out and "-p nnUNetPlansAttentionGate" in out
    plans = json.loads((preprocessed / "nnUNetPlansAttentionGate.json").read_text())
    assert plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["attention_gates"] is True
    assert "attention_gates" not in plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    with torch.no_grad():
        assert _network(plans, "2d")(torch.rand(1, 1, 32, 32))[0].shape == (1, 2, 32, 32)

    assert main(["plan-arch", "-d", "903", "--arch", "noskip", "-p", "nnUNetResEncUNetMPlans"]) == 2
    assert "nnUNetResEncUNetMPlans.json: plans file not found" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../../../escaped", "sub/dir", "/abs"])
def test_a_plans_name_never_writes_outside_the_preprocessed_folder(tmp_path, name):
    folder = tmp_path / "pre" / "Dataset903_Blobs3D"
    write_source_plans(folder)
    with pytest.raises(UserInputError, match="not usable as a file or folder name"):
        write_arch_plans(folder, "nnUNetPlans", ArchChoice.from_cli("noskip", None), new_plans_name=name)
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == ["nnUNetPlans.json"]

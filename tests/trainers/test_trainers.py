"""Our trainers: names, hyper-parameters, and the networks they build from real plans."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_robustness.architectures import (
    SkipSelectivePlainConvUNet,
    SkipSelectiveResidualEncoderUNet,
    SkipSelectiveUNetDecoder,
)
from nnunet_robustness.trainers import TRAINERS, make_variant
from nnunet_robustness.trainers.registry import trainer_listing
from nnunet_robustness.trainers.variants import TrainerVariant, variant_settings
from tests.helpers.plans import DATASET_JSON, default_plans, resenc_plans


def test_trainer_names_follow_nnunet_convention():
    assert {"nnUNetTrainerNoSkip", "nnUNetTrainerAttentionGate", "nnUNetTrainerNoSkip_5epochs",
            "nnUNetTrainerAttentionGate_tiny", "nnUNetTrainer_tiny", "nnUNetTrainerLearnedSkip",
            "nnUNetTrainerLearnedSkip_tiny", "nnUNetTrainerLearnedSkip_short", "nnUNetTrainerLearnedSkip_50epochs",
            "nnUNetTrainerLearnedSkip_fg100_tiny"} <= set(TRAINERS)
    # nnU-Net's own nnUNetTrainer_<N>epochs must not be shadowed (our shim is found first)
    assert not any(re.fullmatch(r"nnUNetTrainer_\d+epochs?", name) for name in TRAINERS)
    for name, cls in TRAINERS.items():
        assert cls.__name__ == name and issubclass(cls, nnUNetTrainer)
        # the hand-written bases, or a literal class of the generated modules (greppable by name)
        assert cls.__module__ == "nnunet_robustness.trainers.variants" or (
            cls.__module__.startswith("nnunet_robustness.trainers.generated.") and issubclass(cls, TrainerVariant))


def test_the_checked_in_trainer_list_is_what_the_package_ships():
    """docs/trainers.md lists every generated name (so it can be grepped); regenerate it with
    `nnunet-robust doctor --list-trainers` after adding a trainer."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "trainers.md").read_text()
    listed = text.split("```text\n", 1)[1].split("```", 1)[0].rstrip("\n")
    assert listed == trainer_listing()
    assert [line.split()[0] for line in listed.splitlines()] == sorted(TRAINERS)


@pytest.mark.parametrize("name,expected", [
    ("nnUNetTrainerNoSkip", {"num_epochs": 1000, "num_iterations_per_epoch": 250}),
    ("nnUNetTrainerNoSkip_5epochs", {"num_epochs": 5, "num_iterations_per_epoch": 250}),
    ("nnUNetTrainerAttentionGate_1epoch", {"num_epochs": 1}),
    ("nnUNetTrainer_tiny", {"num_epochs": 1, "num_iterations_per_epoch": 10, "num_val_iterations_per_epoch": 2}),
    ("nnUNetTrainerNoSkip_short", {"num_epochs": 2, "num_iterations_per_epoch": 50}),
    # a schedule on top of a sampling variant keeps the sampling
    ("nnUNetTrainer_fg100_tiny", {"oversample_foreground_percent": 1.0, "num_epochs": 1, "num_iterations_per_epoch": 10}),
    ("nnUNetTrainerNoSkip_fg000", {"oversample_foreground_percent": 0.0, "num_epochs": 1000}),
])
def test_schedule_hyperparameters_on_a_real_trainer(name, expected, nnunet_env):
    trainer = TRAINERS[name](dict(default_plans(), continue_training=False), "3d_fullres", 0, DATASET_JSON,
                             device=torch.device("cpu"))
    for attribute, value in expected.items():
        assert getattr(trainer, attribute) == value
    # nnU-Net records the constructor arguments in checkpoints; they must still be the base ones
    assert set(trainer.my_init_kwargs) == {"plans", "configuration", "fold", "dataset_json", "device"}


def test_make_variant_rejects_unknown_hyperparameters():
    with pytest.raises(ValueError, match="not nnUNetTrainer hyper-parameters"):
        make_variant(nnUNetTrainer, "oops", num_epoch=3)


def test_make_variant_builds_what_the_generated_modules_spell_out():
    fg100 = TRAINERS["nnUNetTrainer_fg100"]
    cls = make_variant(fg100, "3epochs", num_epochs=3)
    assert cls.__name__ == "nnUNetTrainer_fg100_3epochs" and cls.__bases__ == (fg100,)
    assert variant_settings(cls) == {"oversample_foreground_percent": 1.0, "num_epochs": 3}
    assert cls.__doc__ == "nnUNetTrainer_fg100 with num_epochs=3."
    stock = make_variant(nnUNetTrainer, "3epochs", num_epochs=3)
    assert stock.__bases__ == (TrainerVariant, nnUNetTrainer)
    assert variant_settings(stock) == {"num_epochs": 3}


def _build(trainer_name: str, plans: dict, configuration: str, deep_supervision: bool):
    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration)
    # called on the class, as nnU-Net's predictor does
    return TRAINERS[trainer_name].build_network_architecture(plans_manager, configuration_manager, 1, 2,
                                                             deep_supervision)


@pytest.mark.parametrize("plans_fn,expected_class", [(default_plans, SkipSelectivePlainConvUNet),
                                                     (resenc_plans, SkipSelectiveResidualEncoderUNet)])
@pytest.mark.parametrize("configuration", ["2d", "3d_fullres", "3d_cascade_fullres"])
def test_trainers_build_our_network_from_default_and_resenc_plans(plans_fn, expected_class, configuration):
    plans = plans_fn()
    dim = 2 if configuration == "2d" else 3
    patch = PlansManager(plans).get_configuration(configuration).patch_size
    for name, levels, gated in (("nnUNetTrainerNoSkip", (), False),
                                ("nnUNetTrainerAttentionGate_tiny", (0, 1, 2), True)):
        network = _build(name, plans, configuration, deep_supervision=True)
        assert type(network) is expected_class
        assert isinstance(network.decoder, SkipSelectiveUNetDecoder)
        assert network.decoder.skip_levels == levels
        assert (network.decoder.attention_gates is not None) is gated
        with torch.no_grad():
            outputs = network(torch.rand(1, 1, *patch))
        # deep supervision: one output per decoder stage, full resolution first
        assert [tuple(o.shape[2:]) for o in outputs] == [tuple(s // 2 ** i for s in patch) for i in range(3)]
        assert outputs[0].shape[:2] == (1, 2) and len(patch) == dim


def test_trainer_builder_rejects_unknown_network_class():
    plans = default_plans()
    plans["configurations"]["2d"]["architecture"]["network_class_name"] = "somewhere.Primus"
    with pytest.raises(ValueError, match="no skip-selective counterpart"):
        _build("nnUNetTrainerNoSkip", plans, "2d", True)

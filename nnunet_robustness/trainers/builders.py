"""How our trainers build their network from any nnU-Net plans."""

from __future__ import annotations

from typing import Callable

from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_robustness.architectures import dotted_name, skip_selective_class_for
from nnunet_robustness.architectures.decoder import SkipLevels
from nnunet_robustness.architectures.gates import GateMode


def skip_selective_builder(skip_levels: SkipLevels = "all", attention_gates: bool = False,
                           learned_gates: GateMode | None = None) -> Callable[..., nn.Module]:
    """A ``build_network_architecture`` for a trainer: the plans' own network (PlainConvUNet or
    ResidualEncoderUNet, with all its plans-derived sizes) with our decoder settings.

    It keeps nnU-Net's signature and is meant to be wrapped in ``staticmethod``, because the predictor
    calls it on the trainer class (``nnunetv2/inference/predict_from_raw_data.py``).
    """

    def build_network_architecture(plans_manager: PlansManager,
                                   configuration_manager: ConfigurationManager,
                                   num_input_channels: int,
                                   num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        network_class = skip_selective_class_for(configuration_manager.network_arch_class_name)
        arch_kwargs = dict(configuration_manager.network_arch_init_kwargs,
                           skip_levels=skip_levels, attention_gates=attention_gates)
        if learned_gates is not None:
            arch_kwargs["learned_gates"] = learned_gates
        return get_network_from_plans(
            dotted_name(network_class),
            arch_kwargs,
            configuration_manager.network_arch_init_kwargs_req_import,
            num_input_channels,
            num_output_channels,
            allow_init=True,
            deep_supervision=enable_deep_supervision,
        )

    return build_network_architecture

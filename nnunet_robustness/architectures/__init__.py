"""U-Net variants for the skip-connection studies, built on dynamic-network-architectures."""

from nnunet_robustness.architectures.attention import AdditiveAttentionGate
from nnunet_robustness.architectures.decoder import SkipSelectiveUNetDecoder, resolve_skip_levels
from nnunet_robustness.architectures.gates import (
    LearnedSkipGate,
    gate_sparsity_penalty,
    gate_values,
    skip_weight_share,
)
from nnunet_robustness.architectures.unets import (
    SkipSelectivePlainConvUNet,
    SkipSelectiveResidualEncoderUNet,
    count_parameters,
    dotted_name,
    skip_selective_class_for,
)

__all__ = [
    "AdditiveAttentionGate",
    "LearnedSkipGate",
    "SkipSelectiveUNetDecoder",
    "SkipSelectivePlainConvUNet",
    "SkipSelectiveResidualEncoderUNet",
    "count_parameters",
    "dotted_name",
    "gate_sparsity_penalty",
    "gate_values",
    "resolve_skip_levels",
    "skip_selective_class_for",
    "skip_weight_share",
]

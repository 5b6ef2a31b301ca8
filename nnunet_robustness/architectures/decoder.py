"""A U-Net decoder whose skip connections can be switched off or attention-gated per level.

Built on dynamic-network-architectures' ``UNetDecoder``: same transposed convolutions, same
segmentation heads (so deep supervision outputs and checkpoints keep nnU-Net's layout); only the
decoder stages that lose their skip are rebuilt with half the input channels, and optional
attention gates and learned skip gates (:mod:`nnunet_robustness.architectures.gates`) are added.

Skip levels are numbered like the encoder stages whose features they carry: level 0 is the full
resolution skip, level ``n_stages - 2`` the deepest one (the bottleneck, stage ``n_stages - 1``,
always feeds the decoder). Negative numbers count from the deepest: ``-1`` is the deepest skip, so
``skip_levels=(-1, -2)`` means "only the two deepest skips" whatever the network depth.
"""

from __future__ import annotations

from typing import Iterable, List, Tuple, Type, Union

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.building_blocks.simple_conv_blocks import StackedConvBlocks
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from nnunet_robustness.architectures.attention import AdditiveAttentionGate
from nnunet_robustness.architectures.gates import GATE_MODES, GateMode, LearnedSkipGate

SkipLevels = Union[str, Iterable[int]]


def resolve_skip_levels(skip_levels: SkipLevels, num_skip_levels: int) -> Tuple[int, ...]:
    """Normalise ``"all"``, ``"none"`` or a collection of (possibly negative) level numbers to a sorted
    tuple of levels in ``[0, num_skip_levels)``."""
    if isinstance(skip_levels, str):
        if skip_levels == "all":
            return tuple(range(num_skip_levels))
        if skip_levels == "none":
            return ()
        raise ValueError(f"skip_levels must be 'all', 'none' or a list of level numbers, got {skip_levels!r}")
    resolved = set()
    for level in skip_levels:
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
            raise ValueError(f"skip_levels entries must be integers, got {level!r} in {list(skip_levels)!r}")
        if not -num_skip_levels <= level < num_skip_levels:
            raise ValueError(
                f"skip level {level} does not exist: this network has {num_skip_levels} skip levels "
                f"(0..{num_skip_levels - 1}, or -1..-{num_skip_levels} counting from the deepest)"
            )
        resolved.add(int(level) % num_skip_levels)
    return tuple(sorted(resolved))


class SkipSelectiveUNetDecoder(UNetDecoder):
    """``UNetDecoder`` with a per-level choice of plain, attention-gated or no skip connection.

    ``skip_levels="all", attention_gates=False`` builds exactly nnU-Net's decoder (same modules,
    same parameter names); ``skip_levels="none"`` is the No-Skip decoder, which sees only the
    bottleneck; ``attention_gates=True`` gates every kept skip (Oktay et al. 2018);
    ``learned_gates="scalar"`` / ``"channel"`` multiplies every kept skip by a learnable sigmoid gate
    (after the attention gate, if both are on).
    """

    def __init__(
        self,
        encoder: Union[PlainConvEncoder, ResidualEncoder],
        num_classes: int,
        n_conv_per_stage: Union[int, Tuple[int, ...], List[int]],
        deep_supervision: bool,
        nonlin_first: bool = False,
        norm_op: Union[None, Type[nn.Module]] = None,
        norm_op_kwargs: dict = None,
        dropout_op: Union[None, Type[_DropoutNd]] = None,
        dropout_op_kwargs: dict = None,
        nonlin: Union[None, Type[torch.nn.Module]] = None,
        nonlin_kwargs: dict = None,
        conv_bias: bool = None,
        skip_levels: SkipLevels = "all",
        attention_gates: bool = False,
        learned_gates: GateMode | None = None,
    ) -> None:
        super().__init__(encoder, num_classes, n_conv_per_stage, deep_supervision, nonlin_first, norm_op,
                         norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, conv_bias)
        n_stages_encoder = len(encoder.output_channels)
        self.num_skip_levels = n_stages_encoder - 1
        self.skip_levels = resolve_skip_levels(skip_levels, self.num_skip_levels)
        if isinstance(n_conv_per_stage, int):
            n_conv_per_stage = [n_conv_per_stage] * self.num_skip_levels

        for s in range(self.num_skip_levels):
            level = self.level_of_stage(s)
            if level in self.skip_levels:
                continue
            skip_channels = encoder.output_channels[level]
            # Without the concatenated skip the stage's input is only the upsampled features.
            self.stages[s] = StackedConvBlocks(
                n_conv_per_stage[s], encoder.conv_op, skip_channels, skip_channels, encoder.kernel_sizes[level], 1,
                encoder.conv_bias if conv_bias is None else conv_bias,
                encoder.norm_op if norm_op is None else norm_op,
                encoder.norm_op_kwargs if norm_op_kwargs is None else norm_op_kwargs,
                encoder.dropout_op if dropout_op is None else dropout_op,
                encoder.dropout_op_kwargs if dropout_op_kwargs is None else dropout_op_kwargs,
                encoder.nonlin if nonlin is None else nonlin,
                encoder.nonlin_kwargs if nonlin_kwargs is None else nonlin_kwargs,
                nonlin_first,
            )

        self.attention_gates = None
        if attention_gates:
            # ModuleDict keyed by level: only kept skips have a gate, and parameter names say which level
            self.attention_gates = nn.ModuleDict({
                str(level): AdditiveAttentionGate(
                    encoder.conv_op,
                    skip_channels=encoder.output_channels[level],
                    gating_channels=encoder.output_channels[level + 1],
                    stride=encoder.strides[level + 1],
                )
                for level in self.skip_levels
            })

        self.learned_gates = None
        if learned_gates is not None:
            if learned_gates not in GATE_MODES:
                raise ValueError(f"learned_gates must be None or one of {', '.join(GATE_MODES)}, got {learned_gates!r}")
            num_spatial_dims = len(encoder.strides[0])
            self.learned_gates = nn.ModuleDict({
                str(level): LearnedSkipGate(encoder.output_channels[level], num_spatial_dims, learned_gates)
                for level in self.skip_levels
            })

    def level_of_stage(self, stage: int) -> int:
        """Encoder level of the skip that decoder stage ``stage`` (0 = deepest) would receive."""
        return self.num_skip_levels - 1 - stage

    def forward(self, skips: List[torch.Tensor]):
        lres_input = skips[-1]
        seg_outputs = []
        for s in range(len(self.stages)):
            x = self.transpconvs[s](lres_input)
            level = self.level_of_stage(s)
            if level in self.skip_levels:
                skip = skips[level]
                if self.attention_gates is not None:
                    skip = self.attention_gates[str(level)](skip, lres_input)
                if self.learned_gates is not None:
                    skip = self.learned_gates[str(level)](skip)
                x = torch.cat((x, skip), 1)
            x = self.stages[s](x)
            if self.deep_supervision:
                seg_outputs.append(self.seg_layers[s](x))
            elif s == (len(self.stages) - 1):
                seg_outputs.append(self.seg_layers[-1](x))
            lres_input = x

        seg_outputs = seg_outputs[::-1]  # largest resolution first, as nnU-Net's loss expects
        return seg_outputs if self.deep_supervision else seg_outputs[0]

    def compute_conv_feature_map_size(self, input_size):
        """nnU-Net's planner uses this to estimate memory. Stage outputs do not depend on whether a
        skip was concatenated, so the parent's count holds; gates add their own maps."""
        output = super().compute_conv_feature_map_size(input_size)
        if self.attention_gates is None and self.learned_gates is None:
            return output
        size = list(input_size)
        for level in range(self.num_skip_levels):
            size = [i // j for i, j in zip(size, self.encoder.strides[level])]
            if level in self.skip_levels and self.learned_gates is not None:
                output += np.prod([self.encoder.output_channels[level], *size], dtype=np.int64)  # gated skip
            if level in self.skip_levels and self.attention_gates is not None:
                coarse = [i // j for i, j in zip(size, self.encoder.strides[level + 1])]
                gate = self.attention_gates[str(level)]
                output += np.prod([gate.psi.in_channels, *coarse], dtype=np.int64)  # theta + phi + relu
                output += np.prod([1, *size], dtype=np.int64)  # attention coefficients
                output += np.prod([self.encoder.output_channels[level], *size], dtype=np.int64)  # gated skip
        return output

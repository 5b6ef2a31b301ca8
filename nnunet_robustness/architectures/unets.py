"""nnU-Net's two U-Net families with a configurable skip-connection decoder.

``SkipSelectivePlainConvUNet`` and ``SkipSelectiveResidualEncoderUNet`` take exactly the arguments of
dynamic-network-architectures' ``PlainConvUNet`` (nnU-Net's default) and ``ResidualEncoderUNet`` (the
ResEnc presets) plus three keywords:

- ``skip_levels``: ``"all"`` (standard U-Net), ``"none"`` (No-Skip U-Net) or a list of levels
  (see :mod:`nnunet_robustness.architectures.decoder` for the numbering);
- ``attention_gates``: gate every kept skip with an additive attention gate (Oktay et al. 2018);
- ``learned_gates``: ``None``, ``"scalar"`` or ``"channel"``: a learnable sigmoid gate on every kept
  skip (:mod:`nnunet_robustness.architectures.gates`).

Because the extra keywords are plain JSON values, a plans file can name these classes directly
(``network_class_name`` + ``arch_kwargs``), and our trainers build them from any plans.
"""

from __future__ import annotations

from typing import List, Tuple, Type, Union

from dynamic_network_architectures.architectures.abstract_arch import AbstractDynamicNetworkArchitectures
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.residual import BasicBlockD, BottleneckD
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd

from nnunet_robustness.architectures.decoder import SkipLevels, SkipSelectiveUNetDecoder
from nnunet_robustness.architectures.gates import GateMode

IntOrSequence = Union[int, List[int], Tuple[int, ...]]


def _per_stage(value: IntOrSequence, n: int, name: str) -> list[int] | tuple[int, ...]:
    """An int expanded to ``n`` entries, as dynamic-network-architectures' U-Nets do (same assertion)."""
    value = [value] * n if isinstance(value, int) else value
    assert len(value) == n, f"{name} must have {n} entries, got {value}"
    return value


class SkipSelectivePlainConvUNet(PlainConvUNet):
    """nnU-Net's default ``PlainConvUNet`` with a :class:`SkipSelectiveUNetDecoder`.

    The constructor is ``PlainConvUNet``'s, argument for argument, plus our three keywords; it builds the
    same encoder and our decoder once (``PlainConvUNet.__init__`` would also build a stock decoder, only
    for it to be replaced). ``forward``, ``compute_conv_feature_map_size`` and ``initialize`` are
    ``PlainConvUNet``'s.
    """

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: IntOrSequence,
        conv_op: Type[_ConvNd],
        kernel_sizes: IntOrSequence,
        strides: IntOrSequence,
        n_conv_per_stage: IntOrSequence,
        num_classes: int,
        n_conv_per_stage_decoder: IntOrSequence,
        conv_bias: bool = False,
        norm_op: Union[None, Type[nn.Module]] = None,
        norm_op_kwargs: dict = None,
        dropout_op: Union[None, Type[_DropoutNd]] = None,
        dropout_op_kwargs: dict = None,
        nonlin: Union[None, Type[nn.Module]] = None,
        nonlin_kwargs: dict = None,
        deep_supervision: bool = False,
        nonlin_first: bool = False,
        skip_levels: SkipLevels = "all",
        attention_gates: bool = False,
        learned_gates: GateMode | None = None,
    ) -> None:
        AbstractDynamicNetworkArchitectures.__init__(self)  # not PlainConvUNet's: see the class docstring
        # as PlainConvUNet sets them (pretrained-weight loading in nnU-Net finds the encoder by these keys)
        self.key_to_encoder = "encoder.stages"
        self.key_to_stem = "encoder.stages.0"
        self.keys_to_in_proj = ("encoder.stages.0.0.convs.0.all_modules.0", "encoder.stages.0.0.convs.0.conv")
        n_conv_per_stage = _per_stage(n_conv_per_stage, n_stages, "n_conv_per_stage")
        n_conv_per_stage_decoder = _per_stage(n_conv_per_stage_decoder, n_stages - 1, "n_conv_per_stage_decoder")
        self.encoder = PlainConvEncoder(
            input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides, n_conv_per_stage,
            conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs,
            return_skips=True, nonlin_first=nonlin_first,
        )
        self.decoder = SkipSelectiveUNetDecoder(
            self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision, nonlin_first=nonlin_first,
            skip_levels=skip_levels, attention_gates=attention_gates, learned_gates=learned_gates,
        )


class SkipSelectiveResidualEncoderUNet(ResidualEncoderUNet):
    """nnU-Net's ``ResidualEncoderUNet`` (ResEnc presets) with a :class:`SkipSelectiveUNetDecoder`.

    Built like :class:`SkipSelectivePlainConvUNet`: ``ResidualEncoderUNet``'s constructor arguments plus
    our three keywords, encoder and decoder built once; the rest is ``ResidualEncoderUNet``'s.
    """

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: IntOrSequence,
        conv_op: Type[_ConvNd],
        kernel_sizes: IntOrSequence,
        strides: IntOrSequence,
        n_blocks_per_stage: IntOrSequence,
        num_classes: int,
        n_conv_per_stage_decoder: IntOrSequence,
        conv_bias: bool = False,
        norm_op: Union[None, Type[nn.Module]] = None,
        norm_op_kwargs: dict = None,
        dropout_op: Union[None, Type[_DropoutNd]] = None,
        dropout_op_kwargs: dict = None,
        nonlin: Union[None, Type[nn.Module]] = None,
        nonlin_kwargs: dict = None,
        deep_supervision: bool = False,
        block: Union[Type[BasicBlockD], Type[BottleneckD]] = BasicBlockD,
        bottleneck_channels: IntOrSequence = None,
        stem_channels: int = None,
        skip_levels: SkipLevels = "all",
        attention_gates: bool = False,
        learned_gates: GateMode | None = None,
    ) -> None:
        AbstractDynamicNetworkArchitectures.__init__(self)  # not ResidualEncoderUNet's: see the class docstring
        self.key_to_encoder = "encoder.stages"
        self.key_to_stem = "encoder.stem"
        self.keys_to_in_proj = ("encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0")
        n_blocks_per_stage = _per_stage(n_blocks_per_stage, n_stages, "n_blocks_per_stage")
        n_conv_per_stage_decoder = _per_stage(n_conv_per_stage_decoder, n_stages - 1, "n_conv_per_stage_decoder")
        self.encoder = ResidualEncoder(
            input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides, n_blocks_per_stage,
            conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, block,
            bottleneck_channels, return_skips=True, disable_default_stem=False, stem_channels=stem_channels,
        )
        # ResidualEncoderUNet has no nonlin_first: its decoder uses the default (norm before nonlin)
        self.decoder = SkipSelectiveUNetDecoder(
            self.encoder, num_classes, n_conv_per_stage_decoder, deep_supervision,
            skip_levels=skip_levels, attention_gates=attention_gates, learned_gates=learned_gates,
        )


# nnU-Net network class (as named in plans) -> our counterpart. Both directions are accepted so that a
# trainer can be combined with plans that already name one of our classes.
SKIP_SELECTIVE_COUNTERPART: dict[str, type] = {}
for _base, _ours in ((PlainConvUNet, SkipSelectivePlainConvUNet),
                     (ResidualEncoderUNet, SkipSelectiveResidualEncoderUNet)):
    for _cls in (_base, _ours):
        SKIP_SELECTIVE_COUNTERPART[f"{_cls.__module__}.{_cls.__name__}"] = _ours
SKIP_SELECTIVE_COUNTERPART["nnunet_robustness.architectures.SkipSelectivePlainConvUNet"] = SkipSelectivePlainConvUNet
SKIP_SELECTIVE_COUNTERPART["nnunet_robustness.architectures.SkipSelectiveResidualEncoderUNet"] = (
    SkipSelectiveResidualEncoderUNet)


def dotted_name(cls: type) -> str:
    """The name under which a plans file refers to ``cls`` (resolvable by ``pydoc.locate``)."""
    return f"nnunet_robustness.architectures.{cls.__name__}"


def skip_selective_class_for(network_class_name: str) -> type:
    """Our counterpart of the network class a plans file names; a clear error for anything else."""
    try:
        return SKIP_SELECTIVE_COUNTERPART[network_class_name]
    except KeyError:
        known = sorted(n for n in SKIP_SELECTIVE_COUNTERPART if not n.startswith("nnunet_robustness"))
        raise ValueError(
            f"network class {network_class_name!r} in the plans has no skip-selective counterpart; "
            f"supported: {', '.join(known)}"
        ) from None


def count_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())

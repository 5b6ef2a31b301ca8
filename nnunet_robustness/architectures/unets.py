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

import inspect

from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from torch import nn

from nnunet_robustness.architectures.decoder import SkipLevels, SkipSelectiveUNetDecoder
from nnunet_robustness.architectures.gates import GateMode


def _replace_decoder(network: nn.Module, base_init, args: tuple, kwargs: dict, skip_levels: SkipLevels,
                     attention_gates: bool, learned_gates: GateMode | None = None) -> None:
    bound = inspect.signature(base_init).bind(network, *args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    network.decoder = SkipSelectiveUNetDecoder(
        network.encoder,
        a["num_classes"],
        a["n_conv_per_stage_decoder"],
        a["deep_supervision"],
        nonlin_first=a.get("nonlin_first", False),  # ResidualEncoderUNet has no such option
        skip_levels=skip_levels,
        attention_gates=attention_gates,
        learned_gates=learned_gates,
    )


class SkipSelectivePlainConvUNet(PlainConvUNet):
    """nnU-Net's default ``PlainConvUNet`` with a :class:`SkipSelectiveUNetDecoder`."""

    def __init__(self, *args, skip_levels: SkipLevels = "all", attention_gates: bool = False,
                 learned_gates: GateMode | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _replace_decoder(self, PlainConvUNet.__init__, args, kwargs, skip_levels, attention_gates, learned_gates)


class SkipSelectiveResidualEncoderUNet(ResidualEncoderUNet):
    """nnU-Net's ``ResidualEncoderUNet`` (ResEnc presets) with a :class:`SkipSelectiveUNetDecoder`."""

    def __init__(self, *args, skip_levels: SkipLevels = "all", attention_gates: bool = False,
                 learned_gates: GateMode | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _replace_decoder(self, ResidualEncoderUNet.__init__, args, kwargs, skip_levels, attention_gates, learned_gates)


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

"""Conditions -> corruptions: what a corruption or preset condition applies, its seed, whether it needs
the reference label, and which families assume one modality. The half of the condition vocabulary that
needs the corruption catalogue; the parser of what the user types is :mod:`nnunet_robustness.conditions.parsing`.
"""

from __future__ import annotations

from typing import Iterable

from nnunet_robustness.conditions import Condition, ConditionKind
from nnunet_robustness.corruptions._core import CORRUPTIONS, Corruption, derive_seed
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.modalities import MODALITY_WORDS, channel_modality

# Kinds whose images are made by a corruption of the catalogue
CORRUPTING = (ConditionKind.CORRUPTION, ConditionKind.PRESET)


def corruption_for(condition: Condition) -> Corruption | None:
    """The corruption a condition applies (None for clean)."""
    from nnunet_robustness.corruptions import get_corruption

    if condition.kind is ConditionKind.CLEAN:
        return None
    if condition.kind not in CORRUPTING:
        raise ValueError(f"{condition.name} is no corruption ({condition.kind.value}); the runner handles it")
    if condition.kind is ConditionKind.PRESET:
        return get_corruption(condition.preset)
    severity = condition.severity if condition.calibrated_severity is None else condition.calibrated_severity
    return get_corruption(condition.family, severity=severity)


def item_seed(base_seed: int, case: str, condition: Condition) -> int:
    """The corruption seed of one (case, condition) item, shared by ``run`` and ``corrupt``.

    It depends on the family, never on the severity: severities 1..5 of a case share one random draw
    (the same noise field, bias-field shape, motion path, ghost axis, spike position), so only the
    magnitude grows with the severity and a case's degradation curve is not redrawn at every level.
    Presets have fixed parameters of their own and keep a seed per preset.
    """
    key = condition.name if condition.preset is not None or condition.family is None else condition.family
    return derive_seed(base_seed, case, key)


def requires_label(condition: Condition) -> bool:
    """Whether applying the condition needs the case's reference label (context crops, background blur)."""
    if condition.kind is ConditionKind.CONTEXT:
        return True
    return condition.kind in CORRUPTING and CORRUPTIONS[condition.family].requires_label


# Corruption group -> the modality its families assume (they read absolute intensities: HU, B-mode
# echo amplitude, 8-bit RGB or light); families of the other groups apply to any image.
GROUP_MODALITY = {"ct": "ct", "ultrasound": "ultrasound", "microscopy": "histology"}
_ASSUMES = {"ct": "CT images in HU", "ultrasound": "B-mode ultrasound images",
            "histology": "RGB microscopy / histology images"}
FORCE_MODALITY_OPTION = "--force-modality"


def modality_specific(conditions: Iterable[Condition]) -> list[str]:
    """The families among ``conditions`` that assume one modality (CT, ultrasound, microscopy)."""
    return list(dict.fromkeys(c.family for c in conditions
                              if c.family in CORRUPTIONS and CORRUPTIONS[c.family].group in GROUP_MODALITY))


def modality_mismatches(conditions: Iterable[Condition], dataset_json: dict) -> dict[str, str]:
    """family -> why it does not fit this data, for each modality-specific family among ``conditions``
    (CT, ultrasound, microscopy) applied to a dataset whose channel names say another modality (e.g.
    ``ct_metal`` on ``"T1"``). Channels whose name says nothing (``"image"``) count as fitting."""
    channel_names = dataset_json.get("channel_names", dataset_json.get("modality", {})) or {}
    named = {str(key): (name, channel_modality(name)) for key, name in channel_names.items()}
    found: dict[str, str] = {}
    for family in modality_specific(conditions):
        assumed = GROUP_MODALITY[CORRUPTIONS[family].group]
        others = [f"channel {key} is {name!r} ({MODALITY_WORDS[modality]})" for key, (name, modality) in named.items()
                  if modality is not None and modality != assumed]
        if others:
            found[family] = f"assumes {_ASSUMES[assumed]}, but {', '.join(others)}"
    return found


def check_modality(conditions: Iterable[Condition], dataset_json: dict, source: str, force: bool = False,
                   recorded_in: str | None = None) -> dict[str, str]:
    """Refuse modality-specific families on data of another modality (a ``ct_metal`` insert of 5,000 HU
    in an MR image of 0-850 says nothing about the model), unless ``force``: then warn in one line and
    return family -> reason, for the run's record."""
    import warnings

    mismatches = modality_mismatches(conditions, dataset_json)
    if not mismatches:
        return {}
    reasons = "; ".join(f"{family} {reason}" for family, reason in mismatches.items())
    if not force:
        raise UserInputError(f"{source}: {reasons}; leave {'it' if len(mismatches) == 1 else 'them'} out, or pass "
                             f"{FORCE_MODALITY_OPTION} to apply {'it' if len(mismatches) == 1 else 'them'} anyway")
    record = f" (recorded in {recorded_in})" if recorded_in else ""
    warnings.warn(f"{FORCE_MODALITY_OPTION}: {source}: {reasons}; applied anyway, so these conditions do not "
                  f"simulate what their names say{record}", UserWarning, stacklevel=2)
    return mismatches

"""Condition specs -> conditions, and conditions -> corruptions: the half of the condition vocabulary
that needs the corruption catalogue (family names, presets, which families need the reference label).

The names, the JSON form and the named sets live torch-free in :mod:`nnunet_robustness.conditions`;
``run`` and ``corrupt`` resolve what the user typed here.

Condition specs (CLI ``--conditions`` and config files) are strings:

- ``clean``
- ``FAMILY`` (severities 1..5), ``FAMILY:3``, ``FAMILY:1,3,5``, ``FAMILY:1-5``, ``FAMILY:2.5``
  (severities in (0, 5]; a range must go upwards)
- a corruption preset, e.g. ``seed-study:harder``, or a preset group, e.g. ``seed-study``
  (every ``seed-study:*`` preset)
- ``context`` or ``context:0.5,0.1``: test-time context / foreground-ratio shift (not a corruption):
  the image is cropped to a box around the reference foreground whose foreground fraction is the
  given level (``nnunet_robustness.fbr``); default levels ``CONTEXT_FBR_LEVELS``
"""

from __future__ import annotations

from typing import Iterable

from nnunet_robustness.conditions import (
    ADVERSARIAL_FAMILIES,
    ALL_FAMILIES,
    ATTACK_ALIASES,
    AUTO_SET,
    CLEAN,
    CLEAN_NAME,
    CONDITION_SETS,
    CONTEXT_FAMILY,
    CONTEXT_FBR_LEVELS,
    MAX_SEVERITY,
    Condition,
    context_condition,
    family_condition,
    is_attack_family,
)
from nnunet_robustness.corruptions._core import CORRUPTIONS, Corruption, derive_seed
from nnunet_robustness.corruptions.presets import PRESETS, preset_group
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.modalities import (
    MODALITY_SETS,
    MODALITY_WORDS,
    channel_modality,
    modality_from_channel_names,
)


def is_attack(condition: Condition) -> bool:
    """An adversarial condition (``adv_*``): the runner attacks the model instead of corrupting."""
    return condition.family is not None and is_attack_family(condition.family)


def corruption_for(condition: Condition) -> Corruption | None:
    """The corruption a condition applies (None for clean)."""
    from nnunet_robustness.corruptions import get_corruption

    if condition.is_context or is_attack(condition):
        raise ValueError(f"{condition.name} is no corruption (a crop or an attack); the runner handles it")
    if condition.is_clean:
        return None
    if condition.preset is not None:
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
    if condition.is_context:
        return True
    if condition.is_clean or condition.family is None or is_attack(condition):
        return False
    return CORRUPTIONS[condition.family].requires_label


def preset_condition(preset: str) -> Condition:
    return Condition(preset.replace(":", "_"), PRESETS[preset].family, None, preset)


def _parse_severities(text: str, spec: str) -> list[float]:
    severities: list[float] = []
    for part in text.split(","):
        try:
            if "-" in part.strip("-"):
                low, high = (int(p) for p in part.split("-"))
                if low > high:
                    raise UserInputError(f"condition {spec!r}: range {part!r} goes downwards; write {high}-{low}")
                severities.extend(range(low, high + 1))
            else:
                severities.append(float(part))
        except ValueError:
            raise UserInputError(f"condition {spec!r}: cannot read severities {text!r} (use e.g. 3, 1,3,5 or 1-5)")
    return severities


# The groups whose families apply to any image; the modality groups (ct, ultrasound, microscopy) read
# absolute intensities (HU, RGB) and come with their modality's condition set instead.
GENERAL_GROUPS = ("noise", "blur", "resolution", "intensity", "kspace")


def _family_names() -> list[str]:
    return list(CORRUPTIONS)


def _general_family_names() -> list[str]:
    return [name for name, cls in CORRUPTIONS.items() if cls.group in GENERAL_GROUPS]


def parse_condition_spec(spec: str) -> list[Condition]:
    spec = spec.strip()
    if spec == CLEAN_NAME:
        return [CLEAN]
    if spec in PRESETS or preset_group(spec):
        return [preset_condition(p) for p in preset_group(spec)]
    family, _, severities = spec.partition(":")
    if family == CONTEXT_FAMILY:
        levels = _parse_severities(severities, spec) if severities else list(CONTEXT_FBR_LEVELS)
        return [context_condition(level) for level in levels]
    if is_attack_family(family):  # adversarial attacks: graded like corruptions, run by the runner
        family = ATTACK_ALIASES.get(family, family)
        if "=" in severities:
            raise UserInputError(f"condition {spec!r}: run takes attacks by severity ({family}:1,3,5); explicit "
                                 "eps/steps sweeps are available from Python (nnunet_robustness.adversarial)")
        levels = _parse_severities(severities, spec) if severities else list(range(1, MAX_SEVERITY + 1))
        return [family_condition(family, s) for s in levels]
    families = _family_names()
    if family not in families:
        known = ", ".join([*families, *ADVERSARIAL_FAMILIES, CONTEXT_FAMILY, *sorted({p.split(':')[0] for p in PRESETS})])
        raise UserInputError(f"unknown condition {spec!r}; families and preset groups: {known}")
    levels = _parse_severities(severities, spec) if severities else list(range(1, MAX_SEVERITY + 1))
    return [family_condition(family, s) for s in levels]


def condition_set(name: str) -> list[str]:
    """The condition specs of a named set."""
    if name not in CONDITION_SETS and name != AUTO_SET:
        raise UserInputError(f"unknown condition set {name!r}; available: {', '.join(CONDITION_SETS)}")
    if name == AUTO_SET:
        raise UserInputError("the condition set 'auto' needs the model's dataset.json; use it with `run`")
    return _general_family_names() if name == ALL_FAMILIES else list(CONDITION_SETS[name])


def modality_set(dataset_json: dict, source: str = "dataset.json") -> str:
    """The condition set for the modality that ``channel_names`` names (``--preset auto``)."""
    channel_names = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    modality = modality_from_channel_names(channel_names)
    if modality is None:
        raise UserInputError(f"{source}: cannot tell the modality from channel_names {channel_names}; choose a "
                             f"set: --preset {' | '.join(MODALITY_SETS)}")
    return modality


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


def resolve_conditions(specs: Iterable[str] = (), sets: Iterable[str] = (),
                       dataset_json: dict | None = None) -> list[Condition]:
    """``clean`` first (every degradation is measured against it), then the requested conditions in
    the order given, without duplicates. ``dataset_json`` (the model's) resolves the set ``auto``."""
    sets = [modality_set(dataset_json or {}) if name == AUTO_SET else name for name in sets]
    expanded = [spec for name in sets for spec in condition_set(name)]
    conditions = [CLEAN]
    for spec in [*expanded, *specs]:
        for condition in parse_condition_spec(spec):
            if condition not in conditions:
                conditions.append(condition)
    return conditions

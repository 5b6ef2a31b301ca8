"""What a user types -> conditions: the one parser of condition specs, named sets and ``corrupt``'s
family/severity/preset options. It needs the catalogue (family names, presets, which families apply to
any image), so it loads the corruption library; the condition names and their JSON form stay torch-free
in :mod:`nnunet_robustness.conditions`.

Condition specs (``run --conditions`` and config files) are strings:

- ``clean``
- ``FAMILY`` (severities 1..5), ``FAMILY:3``, ``FAMILY:1,3,5``, ``FAMILY:1-5``, ``FAMILY:2.5``
  (severities in (0, 5]; a range must go upwards)
- a corruption preset, e.g. ``seed-study:harder``, or a preset group, e.g. ``seed-study``
  (every ``seed-study:*`` preset)
- an attack, ``adv_fgsm:1,3`` (graded like a family; ``adv_pgd`` is ``adv_pgd_linf``)
- ``context`` or ``context:0.5,0.1``: test-time context / foreground-ratio shift (not a corruption):
  the image is cropped to a box around the reference foreground whose foreground fraction is the
  given level (``nnunet_robustness.foreground_ratio``); default levels ``CONTEXT_FBR_LEVELS``
"""

from __future__ import annotations

from typing import Iterable, Sequence

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
from nnunet_robustness.corruptions import CORRUPTIONS, PRESETS
from nnunet_robustness.corruptions._core import unknown_name_error
from nnunet_robustness.corruptions.catalogue import general_family_names
from nnunet_robustness.corruptions.presets import preset_group
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.modalities import MODALITY_SETS, modality_from_channel_names

ALL_SEVERITIES = tuple(range(1, MAX_SEVERITY + 1))


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
    elif family not in CORRUPTIONS:
        known = ", ".join([*CORRUPTIONS, *ADVERSARIAL_FAMILIES, CONTEXT_FAMILY,
                           *sorted({p.split(':')[0] for p in PRESETS})])
        raise UserInputError(f"unknown condition {spec!r}; families and preset groups: {known}")
    levels = _parse_severities(severities, spec) if severities else list(ALL_SEVERITIES)
    return [family_condition(family, s) for s in levels]


def corrupt_conditions(families: Sequence[str], severities: Sequence[float] | None,
                       presets: Sequence[str]) -> list[Condition]:
    """``corrupt``'s request as conditions: each family (``all``: every family of the catalogue) at the
    severities (default 1..5), then each preset (a group: all its presets). The same conditions, and so the
    same seeds, as the specs ``FAMILY:S,...`` and ``PRESET`` give ``run``."""
    if not families and not presets:
        raise UserInputError("nothing to do: give --family NAME ... and/or --preset NAME ... (see --list)")
    if severities is not None and not families:
        raise UserInputError("--severity applies to --family; presets have fixed parameters")
    names = list(CORRUPTIONS) if ALL_FAMILIES in families else list(dict.fromkeys(families))
    conditions = []
    for family in names:
        for severity in severities if severities is not None else ALL_SEVERITIES:
            conditions.append(family_condition(family, severity))
            if family not in CORRUPTIONS:
                _refuse_for_corrupt(family)
    for requested in presets:
        matched = preset_group(requested)
        if not matched:
            raise UserInputError(f"unknown preset {requested!r}; known: {', '.join(PRESETS)} "
                                 f"(or a group such as 'seed-study')")
        conditions.extend(preset_condition(name) for name in matched)
    return conditions


def _refuse_for_corrupt(family: str) -> None:
    if family == CONTEXT_FAMILY or is_attack_family(family):
        raise UserInputError(f"{family} is a condition of `run` only (it needs the model or the reference labels); "
                             "corrupt writes the corruption families and presets (see --list)")
    raise unknown_name_error(family, [*CORRUPTIONS, *PRESETS])


def condition_set(name: str) -> list[str]:
    """The condition specs of a named set."""
    if name not in CONDITION_SETS and name != AUTO_SET:
        raise UserInputError(f"unknown condition set {name!r}; available: {', '.join(CONDITION_SETS)}")
    if name == AUTO_SET:
        raise UserInputError("the condition set 'auto' needs the model's dataset.json; use it with `run`")
    return general_family_names() if name == ALL_FAMILIES else list(CONDITION_SETS[name])


def modality_set(dataset_json: dict, source: str = "dataset.json") -> str:
    """The condition set for the modality that ``channel_names`` names (``--preset auto``)."""
    channel_names = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    modality = modality_from_channel_names(channel_names)
    if modality is None:
        raise UserInputError(f"{source}: cannot tell the modality from channel_names {channel_names}; choose a "
                             f"set: --preset {' | '.join(MODALITY_SETS)}")
    return modality


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

"""The catalogue as a user reads it: the families by modality, the presets, and (for `run` only) the
attacks and context crops, as ``corrupt --list`` prints it; and the groups of families that apply to any
image (the condition set ``all``, robust training's seen/unseen split)."""

from __future__ import annotations

from nnunet_robustness.conditions import ADVERSARIAL_FAMILIES, ADVERSARIAL_NOTE, CONTEXT_FAMILY, CONTEXT_NOTE
from nnunet_robustness.corruptions import CORRUPTIONS, PRESETS

# The groups whose families apply to any image; the modality groups (ct, ultrasound, microscopy) read
# absolute intensities (HU, RGB) and come with their modality's condition set instead.
GENERAL_GROUPS = ("noise", "blur", "resolution", "intensity", "kspace")


def general_family_names() -> list[str]:
    """The families of the general groups, in catalogue order (the condition set ``all``)."""
    return [name for name, cls in CORRUPTIONS.items() if cls.group in GENERAL_GROUPS]


def catalogue_text() -> str:
    """What ``corrupt --list`` prints."""
    width = max(len(name) for name in [*CORRUPTIONS, *PRESETS])
    lines = [f"{len(CORRUPTIONS)} families (severity 1..5, or a float in (0, 5]):"]
    # By modality: families of any modality first, then the CT, ultrasound and microscopy groups.
    modality_groups = {"ct": "CT (HU)", "ultrasound": "ultrasound (B-mode)", "microscopy": "microscopy / histology"}
    by_modality: dict[str, list[str]] = {}
    for name, cls in CORRUPTIONS.items():
        by_modality.setdefault(modality_groups.get(cls.group, "MR and any modality"), []).append(name)
    for modality, names in by_modality.items():
        lines.append(f" {modality}:")
        for name in names:
            cls = CORRUPTIONS[name]
            cancelled = (f" (removed by {' and '.join(sorted(s.replace('Normalization', '') for s in cls.cancelled_by))}"
                         " normalisation)" if cls.cancelled_by else "")
            lines.append(f"  {name:<{width}}  [{cls.group}] {cls.summary}{cancelled}")
    lines.append("Removed by ... normalisation: nnU-Net's normalisation cancels the change exactly, the model never "
                 "sees it (docs/evaluation.md).")
    lines.append("presets (fixed parameters):")
    for name, preset in PRESETS.items():
        lines.append(f"  {name:<{width}}  {preset.description}")
    for source in dict.fromkeys(preset.source for preset in PRESETS.values()):
        lines.append(f"  source: {source}")
    # conditions that `corrupt` cannot write (they need the model or the reference) but `run` takes: listed
    # here too, because this is where a user looks for what can be run
    lines.append(f"adversarial conditions, for `run` only (they need the model): {ADVERSARIAL_NOTE}:")
    for name, meaning in ADVERSARIAL_FAMILIES.items():
        lines.append(f"  {name:<{width}}  {meaning}")
    lines.append(f"context condition, for `run` only:\n  {CONTEXT_FAMILY:<{width}}  {CONTEXT_NOTE}")
    return "\n".join(lines)

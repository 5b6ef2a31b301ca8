"""Test conditions: ``clean`` plus corruption family x severity, presets, context crops and attacks.

The ground floor of the data flow (image -> corruption -> predictor -> prediction file -> metrics ->
statistics -> report): every stage names conditions the same way, through this module. It imports
neither torch nor the corruption library, so ``eval``, ``calibrate`` and ``rate`` read condition
names without loading them.

A condition has a folder name (``clean``, ``gaussian_noise_sev3``, ``seed-study_harder``) under which
the runner writes its predictions, and a JSON form kept in ``run.json`` so that ``eval`` knows the
family and severity of each folder.

Each condition carries its :class:`ConditionKind` (clean, corruption, preset, context crop, attack), read
from its fields, so every stage asks one question instead of testing families and presets.

What a user types (``gaussian_noise:1,3,5``, presets, sets; ``corrupt``'s ``--family``/``--preset``) is
resolved into conditions by :mod:`nnunet_robustness.conditions.parsing`, the one parser, which knows the
catalogue (and so loads the corruption library); this module does not.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Sequence

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import read_json
from nnunet_robustness.modalities import MODALITY_SETS

MAX_SEVERITY = 5
CLEAN_NAME = "clean"
CONTEXT_FAMILY = "context"
# Foreground fractions of the test-time crops: from tight (about the shape's fill of its bounding box,
# e.g. 0.52 for a sphere) down to little foreground; the whole image is the clean condition.
CONTEXT_FBR_LEVELS: tuple[float, ...] = (0.5, 0.3, 0.15, 0.05)
# What level k of the calibrated severity scale means (``run --severity-scale calibrated``): the SSIM of
# the model's normalised input to the clean one that the level's parameter reaches. Here, beside the
# conditions that carry ``calibrated_severity``, because both the calibration (runner.ssim_scale) and
# eval's report (for run.json files from before the calibration record) need it.
TARGET_SSIM: dict[int, float] = {1: 0.95, 2: 0.90, 3: 0.80, 4: 0.70, 5: 0.60}


class ConditionKind(Enum):
    """What a condition does to the test images, and so which part of ``run`` handles it."""

    CLEAN = "clean"  # the unchanged images
    CORRUPTION = "corruption"  # a catalogue family at a severity (gaussian_noise_sev3)
    PRESET = "preset"  # a corruption with fixed parameters (seed-study_harder)
    CONTEXT = "context"  # a crop around the reference foreground (context_fbr0.30)
    ATTACK = "attack"  # an adversarial attack on the model (adv_pgd_linf_sev2)
    UNKNOWN = "unknown"  # a prediction folder whose name says nothing (eval's folders made without run)


@dataclass(frozen=True)
class Condition:
    """One way of presenting the test images to the model.

    ``severity`` is 0 for clean, the graded level of a family condition, and None where no level
    applies (presets, whose parameters are fixed; context crops; folders whose name says nothing).
    ``kind`` is read from the other fields, never given: run.json keeps its form without it, and a
    condition read back from run.json or a folder name gets the kind it was made with.
    """

    name: str
    family: str | None = None  # None: clean, or unknown (a folder name that is no family condition)
    severity: float | None = None
    preset: str | None = None
    context_fbr: float | None = None  # target foreground fraction of a context condition
    # ``run --severity-scale calibrated``: the family's continuous severity that reaches this level's
    # target SSIM in the model's input space (nnunet_robustness.runner.ssim_scale); None: physical scale
    calibrated_severity: float | None = None
    kind: ConditionKind = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _kind_of(self))

    @property
    def is_clean(self) -> bool:
        return self.kind is ConditionKind.CLEAN

    def to_json(self) -> dict:
        data = asdict(self)
        del data["kind"]  # read from the other fields (run.json keeps its earlier form)
        for optional in ("context_fbr", "calibrated_severity"):  # run.json keeps its earlier form without them
            if data[optional] is None:
                del data[optional]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Condition":
        severity = data.get("severity")
        calibrated = data.get("calibrated_severity")
        return cls(str(data["name"]), data.get("family"), _number(severity), data.get("preset"),
                   data.get("context_fbr"), _number(calibrated))

    @classmethod
    def from_folder_name(cls, name: str) -> "Condition":
        """What a folder name says: ``clean``, ``<family>_sev<k>``, or only its name (family unknown)."""
        if name == CLEAN_NAME:
            return CLEAN
        parsed = parse_family_condition_name(name)
        return cls(name, *parsed) if parsed else cls(name)


def _kind_of(condition: Condition) -> ConditionKind:
    if condition.name == CLEAN_NAME or (condition.family is None and condition.preset is None
                                        and condition.severity == 0):
        return ConditionKind.CLEAN
    if condition.preset is not None:
        return ConditionKind.PRESET
    if condition.family == CONTEXT_FAMILY:
        return ConditionKind.CONTEXT
    if condition.family is not None:
        return ConditionKind.ATTACK if is_attack_family(condition.family) else ConditionKind.CORRUPTION
    return ConditionKind.UNKNOWN


def _number(value) -> float | int | None:
    """A severity as written in run.json: ``3`` stays an int (a resumed run writes its run.json back, and
    must not turn ``3`` into ``3.0``); other numbers become floats; bools and strings are refused."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, bool):
        raise TypeError(f"severity {value!r} is not a number")
    return float(value)


CLEAN = Condition(CLEAN_NAME, severity=0)


def context_condition(level: float) -> Condition:
    if not 0 < level < 1:
        raise UserInputError(f"context level {level:g} must be a foreground fraction in (0, 1)")
    return Condition(f"{CONTEXT_FAMILY}_fbr{level:.2f}", CONTEXT_FAMILY, None, None, round(float(level), 4))


def severity_label(severity: float) -> str:
    """How a severity appears in names and folders: ``3``, ``2.5``."""
    return str(int(severity)) if float(severity).is_integer() else f"{severity:g}"


_FAMILY_CONDITION_NAME = re.compile(r"^(?P<family>.+)_sev(?P<severity>\d+(?:\.\d+)?)$")


def parse_family_condition_name(name: str) -> tuple[str, float] | None:
    """(family, severity) of a name made by :func:`family_condition` (``gaussian_noise_sev3``), else None.
    Lets ``eval`` read family and severity from folders made without a ``run.json``."""
    match = _FAMILY_CONDITION_NAME.match(name)
    return (match["family"], float(match["severity"])) if match else None


def family_condition(family: str, severity: float) -> Condition:
    if not 0 < severity <= MAX_SEVERITY:
        raise UserInputError(f"severity {severity:g} for {family} is out of range (0, {MAX_SEVERITY}]; "
                             "the unchanged image is the 'clean' condition")
    severity = int(severity) if float(severity).is_integer() else float(severity)
    return Condition(f"{family}_sev{severity_label(severity)}", family, severity)


ALL_FAMILIES = "all"

# What a corruption does to an exact-zero background (corruptions/background.py): here, torch-free, for the
# command-line parsers. "keep" (default) puts nnU-Net's non-zero mask back after corrupting.
BACKGROUND_CHOICES = ("keep", "corrupt")
DEFAULT_BACKGROUND = "keep"

# The adversarial condition families of ``run`` and what each does, here (torch-free) so that
# ``run --help`` and ``corrupt --list`` can list them without loading torch; the attacks themselves are
# defined in nnunet_robustness.adversarial.attacks, which takes these names and words.
ADVERSARIAL_FAMILIES: dict[str, str] = {
    "adv_fgsm": "FGSM, one gradient-sign step (Goodfellow et al. 2015)",
    "adv_pgd_linf": "PGD, L-inf ball (Madry et al. 2018); alias adv_pgd",
    "adv_pgd_l2": "PGD, L2 ball of RMS eps (Madry et al. 2018)",
    "adv_segpgd": "SegPGD (Gu et al. 2022)",
    "adv_cospgd": "CosPGD (Agnihotri et al. 2023)",
    "adv_random_sign": "control: random-sign noise of the same norm, no model involved",
    "adv_ensemble": "per case the strongest of FGSM, PGD (L-inf), SegPGD and CosPGD at the budget (single attacks "
                    "overestimate robustness)",
}
# Other names ``run`` accepts for an attack family: spec parsing (conditions.parsing) and the attacks
# themselves resolve them, so both read them here.
ATTACK_ALIASES: dict[str, str] = {"adv_pgd": "adv_pgd_linf"}


def is_attack_family(name: str) -> bool:
    """Whether a family or condition spec names an adversarial attack (``adv_*``), from the names alone:
    spec parsing needs the answer without loading the attacks (torch)."""
    family = name.split(":", 1)[0].strip()
    return family in ADVERSARIAL_FAMILIES or family in ATTACK_ALIASES


ADVERSARIAL_NOTE = ("white-box attacks on the model through nnU-Net's preprocessing and sliding window; severities "
                    "1..5 = eps 1/255 ... 16/255 of each image's robust intensity range (docs/adversarial.md)")
CONTEXT_NOTE = ("crops of each test image around the reference foreground at foreground fractions "
                f"{', '.join(f'{level:g}' for level in CONTEXT_FBR_LEVELS)} (context:0.5,0.1 for others); needs "
                "--reference (docs/context_fbr.md)")

# Named condition sets (``run --preset NAME``). ``clean`` is always added by resolve_conditions;
# ``all`` is every family of the general groups (noise, blur, resolution, intensity, k-space) at
# severities 1..5; modality-specific families (CT, ultrasound, microscopy) come with their modality's set.
CONDITION_SETS: dict[str, list[str]] = {
    "seed-study": ["seed-study"],
    "mri-artefacts": [f"{f}:1,3,5" for f in ("rician_noise", "bias_field", "motion", "ghosting", "spike")],
    "noise": [f"{f}:1,3,5" for f in ("gaussian_noise", "rician_noise", "speckle_noise", "salt_pepper_noise",
                                     "poisson_noise")],
    ALL_FAMILIES: [],
    "context": [CONTEXT_FAMILY],
    **MODALITY_SETS,
}
# ``run --preset auto``: the modality set that dataset.json's channel names point to
AUTO_SET = "auto"


def target_ssim(level: float) -> float:
    """The target SSIM of a (possibly fractional) level, linear between the integer levels (1 at level 0)."""
    import numpy as np  # here, not at the top: the command-line parsers import this module

    levels = [0.0, *TARGET_SSIM]
    values = [1.0, *TARGET_SSIM.values()]
    return float(np.interp(level, levels, values))


def read_conditions_file(path: Path) -> tuple[list[str], list[str]]:
    """A JSON or YAML file ``{"conditions": [spec, ...], "sets": [name, ...]}`` -> (specs, sets)."""
    data = read_json(path, "conditions file")
    if not isinstance(data, dict) or not set(data) <= {"conditions", "sets"}:
        raise UserInputError(f"{path}: expected a mapping with keys 'conditions' and/or 'sets'")
    specs, sets = data.get("conditions", []), data.get("sets", [])
    if not isinstance(specs, list) or not isinstance(sets, list) or not all(isinstance(s, str)
                                                                            for s in [*specs, *sets]):
        raise UserInputError(f"{path}: 'conditions' and 'sets' must be lists of strings")
    return list(specs), list(sets)


def merge_conditions(existing: Sequence[Condition], new: Sequence[Condition]) -> list[Condition]:
    merged = list(existing)
    merged.extend(c for c in new if c not in merged)
    return merged

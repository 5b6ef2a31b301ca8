"""Test conditions for the robustness runner: ``clean`` plus corruption family x severity or presets.

A condition has a folder name (``clean``, ``gaussian_noise_sev3``, ``seed-study_harder``) under which
the runner writes its predictions, and a JSON form kept in ``run.json`` so that ``eval`` knows the
family and severity of each folder.

Condition specs (CLI ``--conditions`` and config files) are strings:

- ``clean``
- ``FAMILY`` (severities 1..5), ``FAMILY:3``, ``FAMILY:1,3,5``, ``FAMILY:1-5``, ``FAMILY:2.5``
- a corruption preset, e.g. ``seed-study:harder``, or a preset group, e.g. ``seed-study``
  (every ``seed-study:*`` preset)
- ``context`` or ``context:0.5,0.1``: test-time context / foreground-ratio shift (not a corruption):
  the image is cropped to a box around the reference foreground whose foreground fraction is the
  given level (``nnunet_robustness.evaluation.fbr``); default levels ``CONTEXT_FBR_LEVELS``
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from nnunet_robustness.corruptions import CORRUPTIONS, MAX_SEVERITY, PRESETS, Corruption, get_corruption
from nnunet_robustness.corruptions.presets import preset_group
from nnunet_robustness.errors import UserInputError


@dataclass(frozen=True)
class Condition:
    name: str
    family: str | None = None  # None: clean
    severity: float | None = 0  # None for presets, whose parameters are fixed
    preset: str | None = None
    context_fbr: float | None = None  # target foreground fraction of a context condition

    @property
    def is_clean(self) -> bool:
        return self.family is None

    @property
    def is_context(self) -> bool:
        return self.family == CONTEXT_FAMILY

    def corruption(self) -> Corruption | None:
        if self.is_context:
            raise ValueError(f"{self.name} changes the field of view, not the intensities; the runner crops it")
        if self.is_clean:
            return None
        if self.preset is not None:
            return get_corruption(self.preset)
        return get_corruption(self.family, severity=self.severity)

    @property
    def requires_label(self) -> bool:
        return self.is_context or (not self.is_clean and CORRUPTIONS[self.family].requires_label)

    def to_json(self) -> dict:
        data = asdict(self)
        if data["context_fbr"] is None:  # run.json of corruption conditions keeps its earlier form
            del data["context_fbr"]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Condition":
        return cls(**data)


CLEAN = Condition("clean")
CONTEXT_FAMILY = "context"
# Foreground fractions of the test-time crops: from tight (about the shape's fill of its bounding box,
# e.g. 0.52 for a sphere) down to little foreground; the whole image is the clean condition.
CONTEXT_FBR_LEVELS: tuple[float, ...] = (0.5, 0.3, 0.15, 0.05)


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
        raise UserInputError(f"severity {severity:g} for {family} is out of range (0, {MAX_SEVERITY}]")
    severity = int(severity) if float(severity).is_integer() else float(severity)
    return Condition(f"{family}_sev{severity_label(severity)}", family, severity)


def preset_condition(preset: str) -> Condition:
    return Condition(preset.replace(":", "_"), PRESETS[preset].family, None, preset)


def _parse_severities(text: str, spec: str) -> list[float]:
    severities: list[float] = []
    for part in text.split(","):
        try:
            if "-" in part.strip("-"):
                low, high = (int(p) for p in part.split("-"))
                severities.extend(range(low, high + 1))
            else:
                severities.append(float(part))
        except ValueError:
            raise UserInputError(f"condition {spec!r}: cannot read severities {text!r} (use e.g. 3, 1,3,5 or 1-5)")
    return severities


def parse_condition_spec(spec: str) -> list[Condition]:
    spec = spec.strip()
    if spec == "clean":
        return [CLEAN]
    if spec in PRESETS or preset_group(spec):
        return [preset_condition(p) for p in preset_group(spec)]
    family, _, severities = spec.partition(":")
    if family == CONTEXT_FAMILY:
        levels = _parse_severities(severities, spec) if severities else list(CONTEXT_FBR_LEVELS)
        return [context_condition(level) for level in levels]
    if family not in CORRUPTIONS:
        known = ", ".join([*CORRUPTIONS, CONTEXT_FAMILY, *sorted({p.split(':')[0] for p in PRESETS})])
        raise UserInputError(f"unknown condition {spec!r}; families and preset groups: {known}")
    levels = _parse_severities(severities, spec) if severities else list(range(1, MAX_SEVERITY + 1))
    return [family_condition(family, s) for s in levels]


# Named condition sets (``run --preset NAME``). ``clean`` is always added by resolve_conditions.
CONDITION_SETS: dict[str, list[str]] = {
    "seed-study": ["seed-study"],
    "mri-artefacts": [f"{f}:1,3,5" for f in ("rician_noise", "bias_field", "motion", "ghosting", "spike")],
    "noise": [f"{f}:1,3,5" for f in ("gaussian_noise", "rician_noise", "speckle_noise", "salt_pepper_noise",
                                     "poisson_noise")],
    "all": list(CORRUPTIONS),
    "context": [CONTEXT_FAMILY],
}


def resolve_conditions(specs: Iterable[str] = (), sets: Iterable[str] = ()) -> list[Condition]:
    """``clean`` first (every degradation is measured against it), then the requested conditions in
    the order given, without duplicates."""
    expanded: list[str] = []
    for name in sets:
        if name not in CONDITION_SETS:
            raise UserInputError(f"unknown condition set {name!r}; available: {', '.join(CONDITION_SETS)}")
        expanded.extend(CONDITION_SETS[name])
    conditions = [CLEAN]
    for spec in [*expanded, *specs]:
        for condition in parse_condition_spec(spec):
            if condition not in conditions:
                conditions.append(condition)
    return conditions


def read_conditions_file(path: Path) -> tuple[list[str], list[str]]:
    """A JSON or YAML file ``{"conditions": [spec, ...], "sets": [name, ...]}`` -> (specs, sets)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UserInputError(f"{path}: cannot read conditions file ({e.strerror})") from None
    try:
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parser error is the user's file
        raise UserInputError(f"{path}: not valid {'YAML' if str(path).endswith(('yml', 'yaml')) else 'JSON'} "
                             f"({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not set(data) <= {"conditions", "sets"}:
        raise UserInputError(f"{path}: expected a mapping with keys 'conditions' and/or 'sets'")
    specs, sets = data.get("conditions", []), data.get("sets", [])
    if not all(isinstance(s, str) for s in [*specs, *sets]):
        raise UserInputError(f"{path}: 'conditions' and 'sets' must be lists of strings")
    return list(specs), list(sets)


def merge_conditions(existing: Sequence[Condition], new: Sequence[Condition]) -> list[Condition]:
    merged = list(existing)
    merged.extend(c for c in new if c not in merged)
    return merged

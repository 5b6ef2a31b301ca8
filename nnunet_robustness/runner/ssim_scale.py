"""Calibrated severities (``run --severity-scale calibrated``): severity k means the same loss of image
information in every family and dataset.

On the physical scale, "severity 3" is a family's own parameter table (a noise level, a slice thickness)
and comparable across families only in name. The calibrated scale picks, per family and level, the
parameter at which the model's *normalised* input reaches a target structural similarity with the clean
input (the approach of SSIM-calibrated 2D benchmarks, e.g. MedMNIST-C and ROOD-MRI's choice of levels,
here in the model's input space, in 2D or 3D, inside nnU-Net's pipeline):

    level:        1     2     3     4     5
    target SSIM:  0.95  0.90  0.80  0.70  0.60

The parameter is a continuous severity ``s`` on the family's own table (``SeverityTable.at``,
linear between the documented levels), found by bisection on the mean SSIM over up to
``SSIM_SCALE_CASES`` (10) of the user's clean cases, with each case's shared random draw
(``item_seed``: the draw does not depend on the severity, so SSIM falls monotonically in ``s``): the
smallest ``s`` (to 5 / 2^10) whose mean SSIM is at or below the target, so a level is never milder
than its target and a stronger level never has a smaller ``s``. Calibrated
conditions are named ``<family>_cal<k>`` (never mixed with the physical ``_sev<k>`` folders) and carry
``calibrated_severity`` into ``run.json`` and ``eval``.

What a level reached is recorded (``run.json``, the condition's ``parameters["calibration"]``): the
target, the SSIM reached on the calibration cases (mean, standard deviation, min, max, number of
cases) and whether the target was reached. It is not always:

- a family too weak for a target within its table keeps ``s = 5``;
- a family whose SSIM is a step function of ``s`` misses targets between two steps (``motion`` fills
  whole k-space lines, so on a 24-line axis its SSIM jumps with every 1/24 of the scan);

a mean SSIM more than ``REACHED_WITHIN`` from the target is flagged ``reachable: false`` with a
warning naming family, level, target and reached SSIM. Levels whose parameters coincide (both at the
family's maximum, or on the same step) are one severity, not two: the lower level is kept, the
duplicate dropped with a warning, so that severity curves and their areas do not count it twice.
The reached SSIM holds on the calibration cases; on other cases it scatters (single cases by up to
+/-0.19 from the calibration mean were measured), which is why ``eval`` reports it over all test cases.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nnunet_robustness.conditions import MAX_SEVERITY, Condition, ConditionKind, severity_label, target_ssim

if TYPE_CHECKING:  # the CLI's parser reads SSIM_SCALE_CASES without skimage
    from nnunet_robustness.runner.input_space import ModelInputSpace

BISECTION_STEPS = 10  # severity resolution 5 / 2^10 ~ 0.005
RESOLUTION = MAX_SEVERITY / 2 ** BISECTION_STEPS  # parameters closer than this are the same for the bisection
# More cases make the mean SSIM hold beyond them (fitted on 3, the mean of other cases missed the target
# by up to 0.08); each case costs ~11 corruptions and SSIMs per level, so 10 bounds the time.
SSIM_SCALE_CASES = 10
# A target is "reached" when the mean SSIM is this close to it: a continuous family's bisection ends
# within ~0.001 of it, so a larger miss means the table ended or the SSIM jumped over the target.
REACHED_WITHIN = 0.01
# Per-case SSIMs this close are the same input (float32 round-off of the SSIM is ~1e-7); two different
# corruptions of a case do not agree this closely by chance.
SAME_SSIM = 1e-6


def calibratable(condition: Condition) -> bool:
    """Family conditions whose corruption needs nothing but the image (no label, no model)."""
    from nnunet_robustness.corruptions.specs import requires_label

    return bool(condition.kind is ConditionKind.CORRUPTION and condition.severity and not requires_label(condition))


@dataclass(frozen=True)
class LevelRecord:
    """What calibration reached for one level of one family, on the calibration cases."""

    family: str
    level: float
    target: float
    severity: float
    ssims: tuple[float, ...]  # per calibration case, at ``severity``

    @property
    def reached(self) -> float:
        return float(np.mean(self.ssims))

    @property
    def reachable(self) -> bool:
        return abs(self.reached - self.target) <= REACHED_WITHIN

    def same_as(self, other: "LevelRecord") -> bool:
        """One severity counted twice: parameters the bisection cannot tell apart (both at the family's
        maximum included), or different parameters that give the model the same input on every calibration
        case (a step function's plateau reaching up to the family's maximum: motion fills whole k-space
        lines, so neighbouring ``moved_fraction`` values can move the same lines)."""
        return (self.family == other.family
                and (abs(self.severity - other.severity) <= RESOLUTION
                     or np.allclose(self.ssims, other.ssims, rtol=0.0, atol=SAME_SSIM)))

    def to_json(self) -> dict:
        ssims = np.asarray(self.ssims)
        return {"target_ssim": self.target, "reached_ssim_mean": round(self.reached, 4),
                "reached_ssim_sd": round(float(ssims.std(ddof=1)) if len(ssims) > 1 else 0.0, 4),
                "reached_ssim_min": round(float(ssims.min()), 4), "reached_ssim_max": round(float(ssims.max()), 4),
                "calibration_cases": len(ssims), "reachable": self.reachable}


def ssim_scale_conditions(conditions: Sequence[Condition], samples: Sequence[tuple[str, np.ndarray, tuple]],
                         space: ModelInputSpace, seed: int
                         ) -> tuple[list[Condition], list[str], dict[str, dict]]:
    """The calibrated version of every calibratable condition (others unchanged; a level that duplicates a
    lower one of its family dropped), notes for the user, and per calibrated condition its record
    (``LevelRecord.to_json``, for ``run.json``).

    ``samples``: (case, raw image, spacing) of the calibration cases.
    """
    from nnunet_robustness.corruptions import get_corruption
    from nnunet_robustness.corruptions.specs import item_seed

    clean = [(case, image, spacing, space.normalise(image)) for case, image, spacing in samples]
    cache: dict[tuple[str, float], tuple[float, ...]] = {}

    def case_ssims(condition: Condition, severity: float) -> tuple[float, ...]:
        # a family's levels share each case's draw (item_seed), so their bisections share evaluations
        # (severity 5 and 2.5 for every level)
        key = (condition.family, severity)
        if key not in cache:
            corruption = get_corruption(condition.family, severity=severity)
            cache[key] = tuple(space.change(normalised, corruption(image, spacing,
                                                                   seed=item_seed(seed, case, condition))).ssim
                               for case, image, spacing, normalised in clean)
        return cache[key]

    found: list[tuple[Condition, LevelRecord]] = []
    for condition in conditions:
        if not calibratable(condition):
            continue
        target = target_ssim(condition.severity)
        measured = {float(MAX_SEVERITY): case_ssims(condition, MAX_SEVERITY)}
        low, high = 0.0, float(MAX_SEVERITY)
        if np.mean(measured[high]) <= target:
            for _ in range(BISECTION_STEPS):
                middle = (low + high) / 2
                measured[middle] = case_ssims(condition, middle)
                low, high = (middle, high) if np.mean(measured[middle]) > target else (low, middle)
        # not rounded: on a step function a rounded severity can fall on the other side of a step
        found.append((condition, LevelRecord(condition.family, condition.severity, target, high, measured[high])))

    kept, duplicate_of = _duplicates(found)
    notes = _level_notes(found, duplicate_of)
    calibrated_at = {id(found[k][0]): found[k][1] for k in kept}
    merged = {id(found[lower][0]): [] for lower in duplicate_of.values()}
    for index, lower in sorted(duplicate_of.items()):
        merged[id(found[lower][0])].append(found[index][0].severity)
    merged = {key: sorted(levels) for key, levels in merged.items()}
    calibrated: list[Condition] = []
    records: dict[str, dict] = {}
    for condition in conditions:
        if not calibratable(condition):
            calibrated.append(condition)
        elif id(condition) in calibrated_at:
            record = calibrated_at[id(condition)]
            name = f"{condition.family}_cal{severity_label(condition.severity)}"
            calibrated.append(replace(condition, name=name, calibrated_severity=record.severity))
            records[name] = {**record.to_json(), **({"merged_levels": merged[id(condition)]}
                                                     if id(condition) in merged else {})}
    return calibrated, notes, records


def _duplicates(found: Sequence[tuple[Condition, LevelRecord]]) -> tuple[list[int], dict[int, int]]:
    """The levels kept (indices into ``found``) and, for each dropped one, the kept level it duplicates: the
    lowest level of each set of duplicates stays (whatever order the user gave the levels in)."""
    kept: list[int] = []  # indices into found
    duplicate_of: dict[int, int] = {}
    for index in sorted(range(len(found)), key=lambda i: (found[i][0].family, found[i][0].severity)):
        lower = next((k for k in kept if found[k][1].same_as(found[index][1])), None)
        if lower is None:
            kept.append(index)
        else:
            duplicate_of[index] = lower
    return kept, duplicate_of


def _level_notes(found: Sequence[tuple[Condition, LevelRecord]], duplicate_of: dict[int, int]) -> list[str]:
    """Notes for the user: each dropped duplicate level, and each level that missed its target."""
    notes: list[str] = []
    for index, (condition, record) in enumerate(found):
        level = severity_label(condition.severity)
        if index in duplicate_of:
            lower, lower_record = found[duplicate_of[index]]
            notes.append(f"{condition.family} level {level} (target SSIM {record.target:.2f}, reached "
                         f"{record.reached:.3f} at severity {record.severity:g}) duplicates level "
                         f"{severity_label(lower.severity)} (reached {lower_record.reached:.3f} at severity "
                         f"{lower_record.severity:g}): the model gets the same input, so "
                         f"{condition.family}_cal{level} is dropped and curves and areas count that severity once")
        elif not record.reachable:
            why = ("even its strongest level (severity 5) keeps more" if record.severity == MAX_SEVERITY
                   and record.reached > record.target else "its SSIM jumps over the target")
            notes.append(f"{condition.family} level {level}: target SSIM {record.target:.2f} not reached, "
                         f"reached {record.reached:.3f} (mean of {len(record.ssims)} calibration cases) at severity "
                         f"{record.severity:g}; {why}")
    return notes

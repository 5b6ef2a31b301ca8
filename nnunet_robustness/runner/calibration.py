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
linear between the documented levels), found by bisection on the mean SSIM over a few of the user's
clean cases, with each case's shared random draw (``item_seed``: the draw does not depend on the
severity, so SSIM falls monotonically in ``s``). A family too weak to reach a target within its table
(s = 5) keeps s = 5 and says so. Calibrated conditions are named ``<family>_cal<k>`` (never mixed with
the physical ``_sev<k>`` folders) and carry ``calibrated_severity`` into ``run.json`` and ``eval``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from nnunet_robustness.conditions import MAX_SEVERITY, Condition, severity_label
from nnunet_robustness.runner.input_space import ModelInputSpace

TARGET_SSIM: dict[int, float] = {1: 0.95, 2: 0.90, 3: 0.80, 4: 0.70, 5: 0.60}
BISECTION_STEPS = 10  # severity resolution 5 / 2^10 ~ 0.005
CALIBRATION_CASES = 3


def target_ssim(level: float) -> float:
    """The target SSIM of a (possibly fractional) level, linear between the integer levels (1 at level 0)."""
    levels = [0.0, *TARGET_SSIM]
    values = [1.0, *TARGET_SSIM.values()]
    return float(np.interp(level, levels, values))


def calibratable(condition: Condition) -> bool:
    """Family conditions whose corruption needs nothing but the image (no label, no model)."""
    from nnunet_robustness.corruptions.specs import is_attack, requires_label

    return (condition.family is not None and condition.preset is None and condition.severity
            and not condition.is_context and not is_attack(condition) and not requires_label(condition))


def calibrate_conditions(conditions: Sequence[Condition], samples: Sequence[tuple[str, np.ndarray, tuple]],
                         space: ModelInputSpace, seed: int) -> tuple[list[Condition], list[str]]:
    """The calibrated version of every calibratable condition (others unchanged), and notes for the user.

    ``samples``: (case, raw image, spacing) of the calibration cases.
    """
    from nnunet_robustness.corruptions import get_corruption
    from nnunet_robustness.corruptions.specs import item_seed

    clean = [(case, image, spacing, space.normalise(image)) for case, image, spacing in samples]
    notes: list[str] = []

    def mean_ssim(condition: Condition, severity: float) -> float:
        corruption = get_corruption(condition.family, severity=severity)
        return float(np.mean([space.change(normalised, corruption(image, spacing, seed=item_seed(seed, case,
                                                                                                  condition))).ssim
                              for case, image, spacing, normalised in clean]))

    calibrated = []
    for condition in conditions:
        if not calibratable(condition):
            calibrated.append(condition)
            continue
        target = target_ssim(condition.severity)
        low, high = 0.0, float(MAX_SEVERITY)
        strongest = mean_ssim(condition, high)
        if strongest > target:
            notes.append(f"{condition.family}: even its strongest level keeps SSIM {strongest:.3f} "
                         f"> {target:.2f}; level {severity_label(condition.severity)} uses severity 5")
            severity = high
        else:
            for _ in range(BISECTION_STEPS):
                middle = (low + high) / 2
                low, high = (middle, high) if mean_ssim(condition, middle) > target else (low, middle)
            severity = round(high, 4)
        calibrated.append(replace(condition, name=f"{condition.family}_cal{severity_label(condition.severity)}",
                                  calibrated_severity=severity))
    return calibrated, notes

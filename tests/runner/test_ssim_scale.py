"""Calibrated severities: level k reaches the same SSIM in the model's input space in every family."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from scipy.ndimage import gaussian_filter

from nnunet_robustness.conditions import TARGET_SSIM, Condition, family_condition, severity_label, target_ssim
from nnunet_robustness.conditions.parsing import preset_condition
from nnunet_robustness.corruptions.specs import corruption_for, item_seed
from nnunet_robustness.runner.input_space import ModelInputSpace
from nnunet_robustness.runner.ssim_scale import (
    REACHED_WITHIN,
    RESOLUTION,
    ssim_scale_conditions,
)
from tests.helpers.plans import default_plans


def _space() -> ModelInputSpace:
    manager = PlansManager(default_plans())
    return ModelInputSpace(manager, manager.get_configuration("3d_fullres"))


def _samples(n: int = 2):
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 24)] * 3, indexing="ij"))
    for case in range(n):
        inside = np.sqrt((grid ** 2).sum(0)) < rng.uniform(0.4, 0.6)
        image = 120 + 60 * gaussian_filter(inside.astype(float), 1.0) + 15 * grid[1] + rng.normal(0, 2, inside.shape)
        yield f"case_{case}", image.astype(np.float32)[None], (1.0, 1.0, 1.0)


@pytest.mark.parametrize("family", ["gaussian_noise", "bias_field"])
def test_each_level_reaches_its_target_ssim(family):
    space, samples = _space(), list(_samples())
    conditions = [family_condition(family, level) for level in TARGET_SSIM]
    calibrated, notes, records = ssim_scale_conditions(conditions, samples, space, seed=0)
    assert [c.name for c in calibrated] == [f"{family}_cal{level}" for level in TARGET_SSIM]
    severities = [c.calibrated_severity for c in calibrated]
    assert severities == sorted(severities) and len(set(severities)) == len(severities)
    for condition in calibrated:
        if any(f"{condition.family} level {int(condition.severity)}:" in note for note in notes):
            assert not records[condition.name]["reachable"]
            continue  # the family's table ends before the target: it says so and uses severity 5
        assert records[condition.name]["reachable"]
        achieved = np.mean([space.change(space.normalise(image), corruption_for(condition)(
            image, spacing, seed=item_seed(0, case, condition))).ssim for case, image, spacing in samples])
        assert achieved == pytest.approx(target_ssim(condition.severity), abs=0.01), condition
    # the physical and calibrated conditions of a family share one random draw (the same item seed)
    assert item_seed(0, "case_0", calibrated[2]) == item_seed(0, "case_0", conditions[2])


def test_what_is_not_calibrated_stays_as_it_is_and_json_round_trips():
    space, samples = _space(), list(_samples(1))
    keep = [Condition("clean", severity=0), preset_condition("seed-study:harder"),
            family_condition("background_blur", 2)]  # needs the label: physical scale
    calibrated, _, records = ssim_scale_conditions(keep, samples, space, seed=0)
    assert calibrated == keep and records == {}
    (condition,), _, _ = ssim_scale_conditions([family_condition("gaussian_noise", 3)], samples, space, seed=0)
    assert Condition.from_json(condition.to_json()) == condition
    assert "calibrated_severity" not in family_condition("gaussian_noise", 3).to_json()  # old run.json form


def _reached(space, samples, condition) -> list[float]:
    """Per case, the SSIM the model's input has under ``condition`` (at its calibrated severity)."""
    return [space.change(space.normalise(image), corruption_for(condition)(
        image, spacing, seed=item_seed(0, case, condition))).ssim for case, image, spacing in samples]


def test_the_record_carries_target_reached_ssim_and_its_spread():
    space, samples = _space(), list(_samples(3))
    calibrated, notes, records = ssim_scale_conditions([family_condition("gaussian_noise", 1),
                                                       family_condition("gaussian_noise", 3)], samples, space, seed=0)
    assert notes == []
    for condition in calibrated:
        record, ssims = records[condition.name], _reached(space, samples, condition)
        assert record["target_ssim"] == target_ssim(condition.severity)
        assert record["reached_ssim_mean"] == pytest.approx(np.mean(ssims), abs=1e-4)
        assert record["reached_ssim_sd"] == pytest.approx(np.std(ssims, ddof=1), abs=1e-4)
        assert (record["reached_ssim_min"], record["reached_ssim_max"]) == pytest.approx((min(ssims), max(ssims)),
                                                                                          abs=1e-4)
        assert record["calibration_cases"] == 3 and record["reachable"] is True
        assert 0 < record["reached_ssim_sd"] < 0.05  # the cases differ, so the spread is not zero


def test_motion_flags_the_targets_its_step_function_jumps_over():
    """Motion replaces whole k-space lines (24 along the phase-encode axis here), so its SSIM falls
    in steps, one per line (on one case: 0.976, 0.968, 0.940, 0.825 for 8-11 lines): the bisection
    ends on a step whose SSIM lies well below the target while a hair less severity stays above it.
    Such a level is flagged, with the SSIM it did reach, and warned of. Levels 4 and 5 stay at the
    family's maximum (11 lines moved), which level 3 already reaches at severity 4.78 (moved_fraction
    0.417, 11 lines too): one input, merged into level 3."""
    space, samples = _space(), list(_samples())
    conditions = [family_condition("motion", level) for level in TARGET_SSIM]
    calibrated, notes, records = ssim_scale_conditions(conditions, samples, space, seed=0)
    assert [c.name for c in calibrated] == ["motion_cal1", "motion_cal2", "motion_cal3"]
    assert records["motion_cal3"]["merged_levels"] == [4, 5]
    for level in (4, 5):
        assert any(f"motion level {level} (target SSIM {TARGET_SSIM[level]:.2f}" in note
                   and "duplicates level 3" in note for note in notes), level
    jumped = 0
    for condition in calibrated:
        record, ssims = records[condition.name], _reached(space, samples, condition)
        assert record["reached_ssim_mean"] == pytest.approx(np.mean(ssims), abs=1e-4)
        missed = abs(np.mean(ssims) - record["target_ssim"]) > REACHED_WITHIN
        assert record["reachable"] is not missed
        milder = replace(condition, calibrated_severity=condition.calibrated_severity - RESOLUTION)
        if missed and condition.calibrated_severity < 5 and np.mean(_reached(space, samples, milder)) > \
                record["target_ssim"] + REACHED_WITHIN:
            jumped += 1  # a step, not a bisection that stopped short
            assert any(f"motion level {severity_label(condition.severity)}: target SSIM "
                       f"{record['target_ssim']:.2f} not reached, reached {record['reached_ssim_mean']:.3f}" in note
                       and "jumps over the target" in note for note in notes), condition.name
    assert jumped >= 2


def test_a_capped_family_counts_its_maximum_once():
    """speckle_noise keeps SSIM ~0.71 at its strongest level on these images: levels 4 (0.70) and 5
    (0.60) both end at severity 5, the same condition twice. Level 5 is dropped with a warning
    naming both levels, whatever order they were asked in."""
    space, samples = _space(), list(_samples())
    for order in ((3, 4, 5), (5, 4, 3)):
        calibrated, notes, records = ssim_scale_conditions([family_condition("speckle_noise", level)
                                                           for level in order], samples, space, seed=0)
        assert sorted(c.name for c in calibrated) == ["speckle_noise_cal3", "speckle_noise_cal4"], order
        assert records["speckle_noise_cal4"]["merged_levels"] == [5]
        assert records["speckle_noise_cal4"]["reachable"] is False
        assert records["speckle_noise_cal3"]["reachable"] is True
        (merge,) = [note for note in notes if "duplicates" in note]
        assert merge.startswith("speckle_noise level 5 (target SSIM 0.60") and "duplicates level 4" in merge
        assert "speckle_noise_cal5 is dropped" in merge
        assert any(note.startswith("speckle_noise level 4: target SSIM 0.70 not reached") for note in notes)
    assert next(c for c in calibrated if c.name == "speckle_noise_cal4").calibrated_severity == 5

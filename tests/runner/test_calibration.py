"""Calibrated severities: level k reaches the same SSIM in the model's input space in every family."""

from __future__ import annotations

import numpy as np
import pytest
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from scipy.ndimage import gaussian_filter

from nnunet_robustness.conditions import Condition, family_condition
from nnunet_robustness.corruptions.specs import corruption_for, item_seed, preset_condition
from nnunet_robustness.runner.calibration import TARGET_SSIM, calibrate_conditions, target_ssim
from nnunet_robustness.runner.input_space import ModelInputSpace
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
    calibrated, notes = calibrate_conditions(conditions, samples, space, seed=0)
    assert [c.name for c in calibrated] == [f"{family}_cal{level}" for level in TARGET_SSIM]
    severities = [c.calibrated_severity for c in calibrated]
    assert severities == sorted(severities) and len(set(severities)) == len(severities)
    for condition in calibrated:
        if any(condition.family in note and f"level {int(condition.severity)} " in note for note in notes):
            continue  # the family's table ends before the target: it says so and uses severity 5
        achieved = np.mean([space.change(space.normalise(image), corruption_for(condition)(
            image, spacing, seed=item_seed(0, case, condition))).ssim for case, image, spacing in samples])
        assert achieved == pytest.approx(target_ssim(condition.severity), abs=0.01), condition
    # the physical and calibrated conditions of a family share one random draw (the same item seed)
    assert item_seed(0, "case_0", calibrated[2]) == item_seed(0, "case_0", conditions[2])


def test_what_is_not_calibrated_stays_as_it_is_and_json_round_trips():
    space, samples = _space(), list(_samples(1))
    keep = [Condition("clean", severity=0), preset_condition("seed-study:harder"),
            family_condition("background_blur", 2)]  # needs the label: physical scale
    calibrated, _ = calibrate_conditions(keep, samples, space, seed=0)
    assert calibrated == keep
    (condition,), _ = calibrate_conditions([family_condition("gaussian_noise", 3)], samples, space, seed=0)
    assert Condition.from_json(condition.to_json()) == condition
    assert "calibrated_severity" not in family_condition("gaussian_noise", 3).to_json()  # old run.json form

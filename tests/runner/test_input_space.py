"""What the model saw: conditions measured after the model's own normalisation, and the conditions that
normalisation cancels named instead of scored as robustness."""

from __future__ import annotations

import numpy as np
import pytest
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from skimage.metrics import structural_similarity

from nnunet_robustness.conditions import family_condition
from nnunet_robustness.corruptions import get_corruption
from nnunet_robustness.evaluation import evaluate, write_report
from nnunet_robustness.records.input_change import CANCELLED_BELOW, InputChange
from nnunet_robustness.runner.input_space import ModelInputSpace, input_change
from tests.helpers.plans import default_plans
from tests.helpers.prediction_folders import write_study


def _input_space(scheme: str = "ZScoreNormalization") -> ModelInputSpace:
    plans = default_plans()
    plans["configurations"]["3d_fullres"]["normalization_schemes"] = [scheme]
    manager = PlansManager(plans)
    return ModelInputSpace(manager, manager.get_configuration("3d_fullres"))


def _blob_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 24)] * 3, indexing="ij"))
    inside = np.sqrt((grid ** 2).sum(0)) < 0.5
    return (120 + 60 * inside + rng.normal(0, 8, inside.shape)).astype(np.float32)[None]


def test_change_measures_are_skimage_ssim_and_relative_l2():
    rng = np.random.default_rng(1)
    a = rng.random((1, 20, 30)).astype(np.float32)
    b = (a + 0.1 * rng.random(a.shape)).astype(np.float32)
    change = input_change(a, b)
    assert change.ssim == pytest.approx(structural_similarity(a[0], b[0], data_range=float(a.max() - a.min())))
    assert change.relative_l2 == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-5)
    assert input_change(a, a) == InputChange(1.0, 0.0)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_zscore_plans_cancel_brightness_and_contrast_but_not_saturation_or_noise(severity):
    """The cancellation the issue measured on a real dataset, reproduced with a real plans file."""
    space, image = _input_space(), _blob_image()
    clean = space.normalise(image)
    assert space.schemes == ["ZScoreNormalization"]
    for family, cancelled in (("brightness", True), ("contrast", True), ("window_saturation", False),
                              ("gaussian_noise", False)):
        corrupted = get_corruption(family, severity=severity)(image, (1.0, 1.0, 1.0), seed=3)
        assert not np.array_equal(corrupted, image)  # the raw image did change
        change = space.change(clean, corrupted)
        assert change.cancelled is cancelled, (family, change)
    assert space.cancelled_families(["gaussian_noise", "contrast", "brightness", "contrast"]) == ["contrast",
                                                                                               "brightness"]


def test_ct_normalisation_does_not_cancel_an_hu_offset():
    space, image = _input_space("CTNormalization"), _blob_image()
    corrupted = get_corruption("brightness", severity=3)(image, (1.0, 1.0, 1.0), seed=3)
    assert not space.change(space.normalise(image), corrupted).cancelled
    assert space.cancelled_families(["brightness", "contrast"]) == []


def test_eval_names_cancelled_conditions_and_leaves_them_out(tmp_path):
    folders = write_study(tmp_path, conditions=(("clean", None, 0), ("noise_sev1", "noise", 1),
                                                ("noise_sev2", "noise", 2), ("contrast_sev3", "contrast", 3)))
    for folder in folders.values():  # what `run` records: noise reaches the model, contrast does not
        for case in sorted(p.name[:-len(".nii.gz")] for p in (tmp_path / "labelsTs").glob("*.nii.gz")):
            InputChange(0.8, 0.2).write(folder / "noise_sev1", case)
            InputChange(0.6, 0.4).write(folder / "noise_sev2", case)
            InputChange(1.0, CANCELLED_BELOW / 10).write(folder / "contrast_sev3", case)
    result = evaluate(folders, tmp_path / "labelsTs", tmp_path / "dataset.json", n_bootstrap=50, progress=False)
    flags = result.conditions.set_index(["model", "condition"])["cancelled"]
    assert flags[("A", "contrast_sev3")] and not flags[("A", "noise_sev2")] and not flags[("A", "clean")]
    assert "contrast_sev3" not in set(result.degradation["condition"])
    assert "contrast_sev3" not in set(result.pairwise_tests["condition"])
    assert "noise_sev2" in set(result.degradation["condition"])
    rows = result.per_case[result.per_case["condition"] == "noise_sev2"]
    assert (rows["input_ssim"] == 0.6).all() and (rows["input_rel_l2"] == 0.4).all()
    html = write_report(result, tmp_path / "report.html").read_text()
    assert "cancelled by the model&#x27;s normalisation" in html or "cancelled by the model's normalisation" in html


def test_family_condition_severity_zero_is_clean_not_a_condition():
    with pytest.raises(Exception, match="the unchanged image is the 'clean' condition"):
        family_condition("gaussian_noise", 0)

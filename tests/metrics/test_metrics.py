"""Per-structure metrics and the empty-mask policy."""

from __future__ import annotations

import math

import numpy as np
import pytest

surface_distance = pytest.importorskip("surface_distance")

from nnunet_robustness.metrics.masks import METRICS, compare_masks, image_diagonal_mm  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance.*")
SPACING = (2.0, 0.5, 0.75)


def _masks() -> tuple[np.ndarray, np.ndarray]:
    reference = np.zeros((10, 16, 14), bool)
    reference[2:7, 3:12, 4:10] = True
    prediction = np.zeros_like(reference)
    prediction[3:8, 4:13, 4:9] = True
    return reference, prediction


def test_overlap_volume_and_surface_values() -> None:
    reference, prediction = _masks()
    row = compare_masks(reference, prediction, SPACING, nsd_tolerance_mm=1.0)
    tp = int((reference & prediction).sum())
    fp, fn = int((prediction & ~reference).sum()), int((reference & ~prediction).sum())
    assert (row["tp"], row["fp"], row["fn"]) == (tp, fp, fn)
    assert row["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert row["iou"] == pytest.approx(tp / (tp + fp + fn))
    voxel = 2.0 * 0.5 * 0.75
    assert row["ref_volume"] == pytest.approx(reference.sum() * voxel)
    assert row["abs_volume_difference"] == pytest.approx(abs(int(prediction.sum()) - int(reference.sum())) * voxel)
    assert row["rel_volume_difference"] == pytest.approx((prediction.sum() - reference.sum()) / reference.sum())
    distances = surface_distance.compute_surface_distances(reference, prediction, SPACING)
    assert row["hd95_mm"] == pytest.approx(surface_distance.compute_robust_hausdorff(distances, 95), abs=1e-6)
    assert row["assd_mm"] == pytest.approx(np.mean(surface_distance.compute_average_surface_distance(distances)),
                                           abs=1e-6)
    assert row["nsd"] == pytest.approx(surface_distance.compute_surface_dice_at_tolerance(distances, 1.0), abs=1e-6)
    assert row["empty_mask"] == "none"


def test_both_empty_is_a_perfect_score() -> None:
    empty = np.zeros((6, 6, 6), bool)
    row = compare_masks(empty, empty, SPACING)
    assert row["empty_mask"] == "both"
    assert (row["dice"], row["iou"], row["nsd"], row["hd95_mm"], row["assd_mm"]) == (1.0, 1.0, 1.0, 0.0, 0.0)
    assert row["rel_volume_difference"] == 0.0 and row["abs_volume_difference"] == 0.0


@pytest.mark.parametrize("empty_side", ["reference", "prediction"])
def test_one_empty_mask_gets_the_worst_values_not_nan(empty_side: str) -> None:
    reference, prediction = _masks()
    if empty_side == "reference":
        reference = np.zeros_like(reference)
    else:
        prediction = np.zeros_like(prediction)
    row = compare_masks(reference, prediction, SPACING)
    diagonal = math.sqrt((10 * 2.0) ** 2 + (16 * 0.5) ** 2 + (14 * 0.75) ** 2)
    assert image_diagonal_mm(reference.shape, SPACING) == pytest.approx(diagonal)
    assert row["empty_mask"] == empty_side
    assert (row["dice"], row["iou"], row["nsd"]) == (0.0, 0.0, 0.0)
    assert row["hd95_mm"] == pytest.approx(diagonal) and row["assd_mm"] == pytest.approx(diagonal)
    # Every summarised metric with a direction is defined, so no aggregate can skip this structure.
    for name, metric in METRICS.items():
        if metric.higher_is_better is not None:
            assert not math.isnan(row[name]), name
    if empty_side == "reference":
        assert math.isnan(row["rel_volume_difference"])
        assert row["fp"] == int(prediction.sum()) and row["fn"] == 0
    else:
        assert row["rel_volume_difference"] == -1.0
        assert row["fn"] == int(reference.sum()) and row["tp"] == 0


def test_worst_distance_exceeds_any_real_distance() -> None:
    reference = np.zeros((8, 8, 8), bool)
    reference[0, 0, 0] = True
    prediction = np.zeros_like(reference)
    prediction[-1, -1, -1] = True
    opposite = compare_masks(reference, prediction, SPACING)
    missed = compare_masks(reference, np.zeros_like(reference), SPACING)
    assert missed["hd95_mm"] > opposite["hd95_mm"]


def test_ignored_voxels_count_nowhere() -> None:
    reference, prediction = _masks()
    ignore = np.zeros_like(reference)
    ignore[:, :, 9:] = True  # hides every voxel where the two masks differ along the last axis
    row = compare_masks(reference, prediction, SPACING, ignore=ignore)
    expected = compare_masks(reference & ~ignore, prediction & ~ignore, SPACING)
    assert row == expected
    assert row["fp"] == int((prediction & ~reference & ~ignore).sum())


def test_two_dimensional_masks() -> None:
    reference = np.zeros((20, 20), bool)
    reference[5:12, 4:15] = True
    prediction = np.roll(reference, 1, axis=0)
    row = compare_masks(reference, prediction, (0.7, 1.9), nsd_tolerance_mm=0.5)
    distances = surface_distance.compute_surface_distances(reference, prediction, (0.7, 1.9))
    assert row["hd95_mm"] == pytest.approx(surface_distance.compute_robust_hausdorff(distances, 95), abs=1e-6)
    assert row["nsd"] == pytest.approx(surface_distance.compute_surface_dice_at_tolerance(distances, 0.5), abs=1e-6)
    assert row["ref_volume"] == pytest.approx(reference.sum() * 0.7 * 1.9)

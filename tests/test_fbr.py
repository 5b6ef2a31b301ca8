"""The test-time context condition: crop boxes hit the intended foreground fractions, geometry is kept."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_robustness.conditions import CONTEXT_FBR_LEVELS, Condition, ConditionKind
from nnunet_robustness.conditions.parsing import parse_condition_spec, resolve_conditions
from nnunet_robustness.corruptions.specs import corruption_for, requires_label
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.foreground_ratio import context_box, foreground_fraction, paste_into_background


def _ellipsoid(shape=(24, 48, 48), centre=(12, 20, 26), radii=(4, 8, 8)) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii))
    return (distance <= 1).astype(np.uint8)


def test_condition_specs_and_manifest_form():
    conditions = parse_condition_spec("context")
    assert [c.context_fbr for c in conditions] == list(CONTEXT_FBR_LEVELS)
    (c,) = parse_condition_spec("context:0.2")
    assert c.name == "context_fbr0.20" and c.kind is ConditionKind.CONTEXT and requires_label(c) and not c.is_clean
    assert Condition.from_json(c.to_json()) == c
    assert "context_fbr" not in parse_condition_spec("spike:1")[0].to_json()  # older run.json form kept
    assert [x.name for x in resolve_conditions([], ["context"])][:2] == ["clean", "context_fbr0.50"]
    with pytest.raises(UserInputError, match="context level 1.5 must be a foreground fraction"):
        parse_condition_spec("context:1.5")
    with pytest.raises(ValueError, match="is no corruption"):
        corruption_for(c)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0)])
def test_boxes_reach_the_intended_fraction_and_keep_all_foreground(spacing):
    label = _ellipsoid()
    image_fbr = foreground_fraction(label)
    results = []
    for target in (0.5, 0.3, 0.15, 0.05, image_fbr / 2):
        box = context_box(label, spacing, target)
        crop = label[box.slices]
        assert crop.sum() == label.sum(), "the box holds every foreground voxel"
        assert box.fbr == pytest.approx(foreground_fraction(crop))
        assert box.image_fbr == pytest.approx(image_fbr)
        reachable = image_fbr <= target <= box.tight_fbr
        if reachable:
            assert abs(box.fbr - target) <= 0.15 * target, (target, box.fbr)
        elif target < image_fbr:
            assert box.box == [[0, s] for s in label.shape]  # the whole image: the lowest fraction
        else:
            assert box.margin_voxels == [0, 0, 0]  # the tight box: the highest fraction
        # the margin is the same physical distance on every axis
        assert box.margin_voxels[0] == round(box.margin_voxels[1] / spacing[0])
        results.append(box.fbr)
    assert results == sorted(results, reverse=True)
    assert results[0] > 0.3 > image_fbr  # levels really span from above to below a typical training range


def test_closest_margin_is_chosen():
    label = _ellipsoid()
    coords = np.nonzero(label)
    low, high = [int(c.min()) for c in coords], [int(c.max()) + 1 for c in coords]

    def fraction_with_margin(m: int) -> float:  # recounted independently of context_box
        crop = label[tuple(slice(max(0, lo - m), min(n, hi + m)) for lo, hi, n in zip(low, high, label.shape))]
        return crop.mean()

    for target in (0.4, 0.15, 0.08):
        box = context_box(label, (1, 1, 1), target)
        k = box.margin_voxels[1]
        assert box.fbr == pytest.approx(fraction_with_margin(k))
        for other in (k - 1, k + 1):
            if other >= 0:
                assert abs(box.fbr - target) <= abs(fraction_with_margin(other) - target)


def test_no_foreground_means_whole_image():
    box = context_box(np.zeros((5, 6), np.uint8), (1, 1), 0.3)
    assert box.box == [[0, 5], [0, 6]] and box.fbr == 0


def test_paste_back_keeps_the_input_geometry():
    label = _ellipsoid()
    box = context_box(label, (1, 1, 1), 0.3)
    prediction = label[box.slices].copy()
    probabilities = np.stack([1 - prediction, prediction]).astype(np.float32)
    full, full_probabilities = paste_into_background(prediction, label.shape, box, probabilities)
    assert full.shape == label.shape and np.array_equal(full, label)  # outside the box: background
    assert full_probabilities.shape == (2, *label.shape)
    np.testing.assert_allclose(full_probabilities.sum(0), 1)
    assert np.array_equal(full_probabilities.argmax(0), label)

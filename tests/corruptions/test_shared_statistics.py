"""Per-image statistics shared by every condition of one image: computed once, same results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunet_robustness.corruptions import CORRUPTIONS, _core, get_corruption
from nnunet_robustness.corruptions._core import intensity_reference, shared_image_statistics


def _case(seed: int = 0, channels: int = 1):
    rng = np.random.default_rng(seed)
    image = (rng.random((channels, 12, 24, 24)) * 200 - 50).astype(np.float32)
    label = np.zeros((1, 12, 24, 24), np.uint8)
    label[0, 3:9, 6:18, 6:18] = 1
    return image, label


@pytest.mark.parametrize("family", sorted(CORRUPTIONS))
def test_every_family_gives_the_same_arrays_with_shared_statistics(family):
    image, label = _case(channels=3 if family == "he_stain" else 1)  # stain needs RGB
    if family == "he_stain":
        image = np.abs(image) % 255
    spacing = (2.0, 1.0, 1.0)
    alone = [get_corruption(family, severity=s)(image, spacing, seed=7, label=label) for s in (1, 3, 5)]
    with shared_image_statistics():
        shared = [get_corruption(family, severity=s)(image, spacing, seed=7, label=label) for s in (1, 3, 5)]
    for a, b in zip(alone, shared):
        np.testing.assert_array_equal(a, b)


def test_the_reference_is_computed_once_per_image_and_anew_for_another_or_a_changed_one(monkeypatch):
    calls = []
    original = _core._intensity_reference
    monkeypatch.setattr(_core, "_intensity_reference", lambda image: calls.append(1) or original(image))
    image, label = _case()
    other, _ = _case(seed=1)
    with shared_image_statistics():
        for family in ("gaussian_noise", "bias_field", "contrast"):
            for severity in (1, 3, 5):
                get_corruption(family, severity=severity)(image, (2.0, 1.0, 1.0), seed=1)
        assert len(calls) == 1
        get_corruption("gaussian_noise", severity=2)(other, (2.0, 1.0, 1.0), seed=1)
        assert len(calls) == 2
        tensor = torch.from_numpy(image.copy())
        first = intensity_reference(tensor)
        tensor.mul_(2)  # changed in place: its version counter moves, the cached value is not reused
        assert intensity_reference(tensor).span == pytest.approx(tuple(2 * s for s in first.span))
    get_corruption("gaussian_noise", severity=2)(image, (2.0, 1.0, 1.0), seed=1)
    assert len(calls) == 5  # outside the block nothing is kept

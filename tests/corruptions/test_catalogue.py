"""The catalogue: names, severity tables, severity handling, presets and the one-call API."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from skimage.util import random_noise

from nnunet_robustness.corruptions import (
    CORRUPTIONS,
    MAX_SEVERITY,
    derive_seed,
    get_corruption,
    list_families,
)
from nnunet_robustness.errors import UserInputError
from tests.corruptions.phantoms import FAMILIES, phantom, spacing_for


def test_catalogue_has_at_least_16_families_covering_every_group():
    assert len(list_families()) >= 16
    groups = {cls.group for cls in CORRUPTIONS.values()}
    assert groups == {"noise", "blur", "resolution", "intensity", "kspace", "ct", "ultrasound", "microscopy"}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_documents_its_levels_and_physics(family):
    cls = CORRUPTIONS[family]
    assert cls.summary and "\n" not in cls.summary
    assert len(cls.table.meanings) == MAX_SEVERITY and all(m.strip() for m in cls.table.meanings)
    # physics in the docstring with a citation (author and year), as TorchIO documents its transforms
    assert cls.__doc__ and re.search(r"\b(19|20)\d\d\b", cls.__doc__), f"{family}: no citation (author, year)"
    # Each level differs from the previous one (otherwise two severities would be the same condition).
    rows = [cls.table.identity, *cls.table.levels]
    for previous, current in zip(rows, rows[1:]):
        assert previous != current


def test_unknown_family_is_a_user_error_with_a_suggestion():
    with pytest.raises(UserInputError, match="unknown corruption 'gausian_noise'.*did you mean 'gaussian_noise'"):
        get_corruption("gausian_noise", severity=1)


@pytest.mark.parametrize("severity", [-1, 5.5, 6, math.nan, math.inf, True, "3"])
def test_severity_out_of_range_is_rejected(severity):
    with pytest.raises(UserInputError, match="severity"):
        get_corruption("gaussian_noise", severity=severity)


def test_missing_severity_names_the_parameters_needed():
    with pytest.raises(UserInputError, match="give a severity.*std_fraction"):
        get_corruption("gaussian_noise")


def test_unknown_and_invalid_parameters_are_rejected():
    with pytest.raises(UserInputError, match="unknown parameter.*sigma"):
        get_corruption("gaussian_noise", severity=1, sigma=3)
    with pytest.raises(UserInputError, match="amount must be in \\[0, 1\\], got 2"):
        get_corruption("salt_pepper_noise", amount=2)
    with pytest.raises(UserInputError, match="slice_profile"):
        get_corruption("anisotropy", severity=2, slice_profile="gauss")


def test_float_severity_interpolates_the_table_and_integers_hit_it_exactly():
    table = CORRUPTIONS["gaussian_noise"].table
    assert get_corruption("gaussian_noise", severity=3).values == dict(table.levels[2])
    assert get_corruption("gaussian_noise", severity=3.0).values == dict(table.levels[2])
    halfway = get_corruption("gaussian_noise", severity=2.5).values["std_fraction"]
    assert halfway == pytest.approx((table.levels[1]["std_fraction"] + table.levels[2]["std_fraction"]) / 2)
    assert get_corruption("gaussian_noise", severity=0.5).values["std_fraction"] == pytest.approx(
        table.levels[0]["std_fraction"] / 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_severity_zero_leaves_the_image_unchanged(family):
    image, label = phantom(2)
    out = get_corruption(family, severity=0)(image, spacing_for(2), seed=1, label=label)
    torch.testing.assert_close(out, image, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_explicit_values_reproduce_the_table_level(family):
    image, label = phantom(2)
    level = dict(CORRUPTIONS[family].table.levels[2])
    by_severity = get_corruption(family, severity=3)(image, spacing_for(2), seed=5, label=label)
    by_values = get_corruption(family, **level)(image, spacing_for(2), seed=5, label=label)
    assert torch.equal(by_severity, by_values)


def test_seed_study_presets_grade_like_the_study():
    """'harder' conditions change the image less than 'hardest'; 'easier' blurs the background less than
    'easiest' (the study's ordering), and a preset's parameters are fixed."""
    image, label = phantom(2)

    def change(name: str) -> float:
        corrupted = get_corruption(name)(image, spacing_for(2), seed=1, label=label)
        return float((corrupted - image).norm() / image.norm())

    assert 0 < change("seed-study:harder") < change("seed-study:hardest")
    assert 0 < change("seed-study:easier") < change("seed-study:easiest")
    with pytest.raises(UserInputError, match="fixes its parameters"):
        get_corruption("seed-study:harder", severity=2)


@pytest.mark.parametrize("name,variance", [("seed-study:harder", 0.1), ("seed-study:hardest", 0.3)])
def test_seed_study_speckle_matches_skimage_random_noise_in_distribution(name, variance):
    """skimage draws from numpy's RNG, so values differ; the distribution of the change must match.
    Both work on the min-max [0, 1] scaled image and clip to [0, 1]."""
    image, _ = phantom(2, low=-50.0, high=250.0)  # not [0, 1]: the preset must do the scaling itself
    lo, hi = float(image.min()), float(image.max())
    scaled = ((image - lo) / (hi - lo)).numpy()
    ours = (get_corruption(name)(image, spacing_for(2), seed=0).numpy() - lo) / (hi - lo)
    reference = random_noise(scaled, mode="speckle", var=variance, rng=0)
    ours_change, reference_change = ours - scaled, reference - scaled
    assert ours.min() >= 0 and ours.max() <= 1 + 1e-6
    assert abs(ours_change.std() - reference_change.std()) < 0.06 * reference_change.std()
    assert abs(ours_change.mean() - reference_change.mean()) < 0.01
    background = scaled == 0
    assert np.all(ours[background] == 0)  # multiplicative: no signal, no speckle


@pytest.mark.parametrize("name,sigma", [("seed-study:easier", 3.0), ("seed-study:easiest", 7.0)])
def test_seed_study_background_blur_blurs_only_the_background_in_pixels(name, sigma):
    from scipy.ndimage import gaussian_filter

    image, label = phantom(2)
    out = get_corruption(name)(image, spacing=(0.5, 2.0), seed=0, label=label)  # pixels, not mm
    expected = gaussian_filter(image[0].numpy(), sigma, mode="reflect")
    foreground = label.numpy() > 0
    assert torch.equal(out[0][label > 0], image[0][label > 0])
    np.testing.assert_allclose(out[0].numpy()[~foreground], expected[~foreground], atol=1e-3)


def test_background_blur_needs_the_label():
    image, _ = phantom(2)
    with pytest.raises(UserInputError, match="background_blur needs the reference label"):
        get_corruption("background_blur", severity=2)(image, spacing_for(2))


def test_derive_seed_is_stable_and_distinguishes_parts():
    assert derive_seed(0, "case_001", "gaussian_noise", 3) == derive_seed(0, "case_001", "gaussian_noise", 3)
    assert derive_seed(0, "case_001", "gaussian_noise", 3) != derive_seed(0, "case_002", "gaussian_noise", 3)
    assert 0 <= derive_seed("x") < 2**63
    assert derive_seed(1, "a") == 3673330623977531562  # pinned: changing it re-randomises every study

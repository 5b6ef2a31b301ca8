from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from skimage.feature import local_binary_pattern

from nnunet_robustness.datasets.complexity import (
    LBP_BINS,
    case_complexity,
    contrast_to_noise_ratio,
    kl_divergence_bits,
    lbp_slice_axis,
    uniform_lbp_histograms,
)
from nnunet_robustness.datasets.texture_sources import get_texture


def two_texture_image(shape=(96, 96), foreground="noise-coarse", background="noise-fine", seed=0):
    """A disc of one texture on another, as 8-bit grey levels."""
    rng = np.random.default_rng(seed)
    a = get_texture(foreground, len(shape)).sample(shape, rng)
    b = get_texture(background, len(shape)).sample(shape, rng)
    grid = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    mask = sum(g ** 2 for g in grid) < (min(shape) / 3) ** 2
    return np.round(np.where(mask, a, b) * 255).astype(np.uint8), mask.astype(np.uint8)


def test_kl_divergence_in_bits_over_shared_bins():
    p = np.array([2, 2, 0, 4])  # normalised: 0.25, 0.25, 0, 0.5
    q = np.array([1, 0, 1, 2])  # normalised: 0.25, 0, 0.25, 0.5
    # only bins 0 and 3 are non-zero in both: 0.25 log2(1) + 0.5 log2(1) = 0
    assert kl_divergence_bits(p, q) == 0.0
    p, q = np.array([1, 1]), np.array([1, 3])
    assert kl_divergence_bits(p, q) == pytest.approx(0.5 * math.log2(0.5 / 0.25) + 0.5 * math.log2(0.5 / 0.75))
    assert math.isnan(kl_divergence_bits(np.zeros(3), np.ones(3)))


def test_texture_disparity_matches_a_direct_computation_with_scikit_image():
    image, label = two_texture_image()
    # independent re-statement of the study's recipe: uniform LBP(P=24, R=3) of the whole image, the
    # 3-pixel border left out, 26-bin histograms of fg and bg, KL in bits over bins non-zero in both
    codes = local_binary_pattern(image.astype(np.int64), 24, 3, method="uniform")[3:-3, 3:-3].astype(int)
    inner = label[3:-3, 3:-3].astype(bool)
    p = np.bincount(codes[inner], minlength=26) / inner.sum()
    q = np.bincount(codes[~inner], minlength=26) / (~inner).sum()
    both = (p > 0) & (q > 0)
    expected = float(np.sum(p[both] * np.log2(p[both] / q[both])))
    assert LBP_BINS == 26 and codes.max() <= 25
    assert case_complexity(image, label, (1.0, 1.0)).texture_disparity_bits == pytest.approx(expected, rel=1e-12)


def test_different_textures_score_higher_than_alike_ones():
    different = case_complexity(*two_texture_image(foreground="noise-coarse", background="noise-fine"), (1, 1))
    alike = case_complexity(*two_texture_image(foreground="noise-fine", background="noise-fine"), (1, 1))
    assert different.texture_disparity_bits > 0.5
    assert 0 <= alike.texture_disparity_bits < 0.05


def test_texture_disparity_is_grey_scale_invariant():
    # LBP only compares neighbours with the centre: any increasing grey-value map leaves it unchanged
    image, label = two_texture_image()
    original = case_complexity(image, label, (1, 1)).texture_disparity_bits
    stretched = case_complexity(image.astype(np.int64) * 3 + 1000, label, (1, 1)).texture_disparity_bits
    assert stretched == original


def test_non_integer_images_are_quantized_without_warnings():
    image, label = two_texture_image()
    as_float = image / 255.0  # same ordering of grey values, non-integer
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-image warns for float input; we must not pass floats
        score = case_complexity(as_float, label, (1, 1)).texture_disparity_bits
    assert score == pytest.approx(case_complexity(image, label, (1, 1)).texture_disparity_bits, abs=0.02)


def test_3d_slices_cut_across_the_lowest_resolution_axis_and_pool():
    assert lbp_slice_axis((1.0, 1.0, 5.0)) == 2
    assert lbp_slice_axis((3.0, 0.8, 0.8)) == 0
    assert lbp_slice_axis((1.0, 1.0, 1.0)) == 0
    slices = [two_texture_image(shape=(40, 48), seed=s) for s in range(4)]
    volume = np.stack([image for image, _ in slices])
    labels = np.stack([label for _, label in slices])
    fg_total, bg_total = np.zeros(LBP_BINS, int), np.zeros(LBP_BINS, int)
    for image, label in slices:
        fg, bg = uniform_lbp_histograms(image[None], label[None] > 0, label[None] == 0, slice_axis=0)
        fg_total, bg_total = fg_total + fg, bg_total + bg
    pooled = kl_divergence_bits(fg_total, bg_total)
    assert case_complexity(volume, labels, (4.0, 1.0, 1.0)).texture_disparity_bits == pytest.approx(pooled)
    # the same volume stored with the coarse axis last gives the same score
    moved = case_complexity(np.moveaxis(volume, 0, -1), np.moveaxis(labels, 0, -1), (1.0, 1.0, 4.0))
    assert moved.texture_disparity_bits == pytest.approx(pooled)


def test_empty_foreground_gives_nan_and_a_warning_not_a_crash():
    image, _ = two_texture_image()
    with pytest.warns(RuntimeWarning, match="case_7: texture disparity is undefined.*no foreground"):
        result = case_complexity(image, np.zeros_like(image), (1, 1), case_name="case_7")
    assert math.isnan(result.texture_disparity_bits) and math.isnan(result.contrast_to_noise)
    assert result.foreground_fraction == 0 and result.foreground_voxels == 0
    with pytest.warns(RuntimeWarning, match="no background"):
        result = case_complexity(image, np.ones_like(image), (1, 1))
    assert math.isnan(result.texture_disparity_bits) and result.foreground_fraction == 1


def test_contrast_to_noise_and_foreground_fraction():
    assert contrast_to_noise_ratio(np.array([1.0, 3.0]), np.array([0.0, 2.0])) == pytest.approx(1.0)
    assert contrast_to_noise_ratio(np.array([5.0, 5.0]), np.array([1.0, 1.0])) == math.inf
    image = np.zeros((20, 20), dtype=np.uint8)
    label = np.zeros((20, 20), dtype=np.uint8)
    label[5:10, 5:10] = 2  # any label > 0 is foreground
    image[label > 0] = 10
    image[::2] += 1  # some noise in both regions
    result = case_complexity(image, label, (1, 1))
    assert result.foreground_voxels == 25 and result.foreground_fraction == pytest.approx(25 / 400)
    assert result.contrast_to_noise > 10


def test_ignore_label_belongs_to_neither_region():
    image, label = two_texture_image()
    with_ignore = label.copy()
    with_ignore[:, :20] = 9  # a band of "ignore" over both textures
    result = case_complexity(image, with_ignore, (1, 1), ignore_label=9)
    cropped = case_complexity(image[:, 20 - 3:], label[:, 20 - 3:], (1, 1))  # keep 3 px for the LBP ring
    assert result.foreground_voxels == int(label[:, 20:].sum())
    assert result.texture_disparity_bits == pytest.approx(cropped.texture_disparity_bits, rel=1e-9)

"""Task-complexity measures of one segmentation case.

The main score is the *texture disparity* (TD) between foreground and background: the
Kullback-Leibler divergence KL(P_fg || P_bg), in bits, between the histograms of rotation-invariant
uniform local binary patterns (LBP; Ojala, Pietikainen & Maenpaa 2002, "Multiresolution gray-scale
and rotation invariant texture classification with local binary patterns", IEEE TPAMI 24(7)) of the
foreground and of the background pixels, with P = 24 neighbours on a circle of radius R = 3 pixels
(P + 2 = 26 bins), summed over the bins where both histograms are non-zero. Higher TD = the textures
differ more = an easier task.

Conventions (see docs/datasets.md):
- LBP is computed on 2D slices. A 3D image is cut perpendicular to its axis of largest spacing (the
  lowest-resolution axis; the first of equal ones), so every slice lies in the best-resolved plane;
  the codes of all slices are pooled into one foreground and one background histogram.
- Pixels within R of the slice border are left out of both histograms: their LBP codes come from
  zero padding, not from the image.
- LBP needs integer grey levels (ties between neighbours are meaningful); images with non-integer
  values are quantized to 4096 levels between their minimum and maximum first.
- Foreground = every label > 0; an ``ignore`` label's voxels belong to neither region.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

LBP_POINTS = 24
LBP_RADIUS = 3
LBP_BINS = LBP_POINTS + 2  # P + 1 uniform patterns plus one bin for all non-uniform ones
FLOAT_QUANTIZATION_LEVELS = 4096


@dataclass(frozen=True)
class CaseComplexity:
    """Complexity measures of one case. NaN marks a measure that is undefined for this case."""

    texture_disparity_bits: float
    contrast_to_noise: float
    foreground_fraction: float
    foreground_voxels: int


def lbp_slice_axis(spacing: Sequence[float]) -> int:
    """The axis that LBP slices are cut perpendicular to: the one with the largest spacing."""
    return int(np.argmax(np.asarray(spacing, dtype=float)))


def _integer_grey_levels(image: np.ndarray) -> np.ndarray:
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.int64)
    if np.all(np.isfinite(image)) and np.array_equal(image, np.round(image)):
        return image.astype(np.int64)
    low, high = float(np.nanmin(image)), float(np.nanmax(image))
    if high <= low:
        return np.zeros(image.shape, dtype=np.int64)
    scaled = (np.nan_to_num(image, nan=low) - low) / (high - low) * (FLOAT_QUANTIZATION_LEVELS - 1)
    return np.round(scaled).astype(np.int64)


def uniform_lbp_histograms(image: np.ndarray, foreground: np.ndarray, background: np.ndarray,
                           slice_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the 26 uniform LBP(24, 3) codes over the foreground and background voxels.

    ``image``, ``foreground`` and ``background`` are 3D arrays of one shape (a 2D image is a 3D array
    with one slice); codes are computed per slice perpendicular to ``slice_axis`` and pooled.
    """
    from skimage.feature import local_binary_pattern  # slow import, only needed here

    grey = _integer_grey_levels(image)
    inner = (slice(LBP_RADIUS, -LBP_RADIUS), slice(LBP_RADIUS, -LBP_RADIUS))
    fg_counts = np.zeros(LBP_BINS, dtype=np.int64)
    bg_counts = np.zeros(LBP_BINS, dtype=np.int64)
    for index in range(image.shape[slice_axis]):
        fg_slice = np.take(foreground, index, axis=slice_axis)[inner]
        bg_slice = np.take(background, index, axis=slice_axis)[inner]
        if not (fg_slice.any() or bg_slice.any()):
            continue
        codes = local_binary_pattern(np.take(grey, index, axis=slice_axis), LBP_POINTS, LBP_RADIUS,
                                     method="uniform")[inner].astype(np.int64)
        fg_counts += np.bincount(codes[fg_slice], minlength=LBP_BINS)
        bg_counts += np.bincount(codes[bg_slice], minlength=LBP_BINS)
    return fg_counts, bg_counts


def kl_divergence_bits(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """KL(P || Q) in bits of two histograms, over the bins where both are non-zero (as in the study;
    the bins where only one is non-zero would make it infinite). NaN if either histogram is empty."""
    p_total, q_total = p_counts.sum(), q_counts.sum()
    if p_total == 0 or q_total == 0:
        return math.nan
    p = p_counts / p_total
    q = q_counts / q_total
    both = (p > 0) & (q > 0)
    return float(np.sum(p[both] * np.log2(p[both] / q[both])))


def contrast_to_noise_ratio(values_fg: np.ndarray, values_bg: np.ndarray) -> float:
    """|mean_fg - mean_bg| / sqrt((var_fg + var_bg) / 2): the mean difference in units of the pooled
    standard deviation. NaN if a region is empty or both are constant."""
    if values_fg.size == 0 or values_bg.size == 0:
        return math.nan
    difference = abs(float(values_fg.mean()) - float(values_bg.mean()))
    pooled_std = math.sqrt((float(values_fg.var()) + float(values_bg.var())) / 2)
    if pooled_std == 0:
        return math.inf if difference > 0 else math.nan
    return difference / pooled_std


def case_complexity(image: np.ndarray, label: np.ndarray, spacing: Sequence[float],
                    ignore_label: int | None = None, case_name: str = "case") -> CaseComplexity:
    """All complexity measures of one case.

    ``image`` and ``label`` share one shape with 2 or 3 axes; ``spacing`` has one entry per axis
    (the same axis order). An empty foreground or background gives NaN measures and a RuntimeWarning
    naming ``case_name`` rather than an error.
    """
    if image.shape != label.shape:
        raise ValueError(f"{case_name}: image shape {image.shape} != label shape {label.shape}")
    if len(spacing) != image.ndim:
        raise ValueError(f"{case_name}: {len(spacing)} spacings for an image with {image.ndim} axes")
    if image.ndim == 2:
        # one slice; any spacing larger than the in-plane ones makes axis 0 the slice axis
        image, label = image[None], label[None]
        spacing = (math.inf, *spacing)

    valid = label != ignore_label if ignore_label is not None else np.ones(label.shape, dtype=bool)
    foreground = (label > 0) & valid
    background = (label == 0) & valid
    num_fg = int(foreground.sum())
    num_valid = int(valid.sum())
    fraction = num_fg / num_valid if num_valid else math.nan

    fg_counts, bg_counts = uniform_lbp_histograms(image, foreground, background, lbp_slice_axis(spacing))
    disparity = kl_divergence_bits(fg_counts, bg_counts)
    if math.isnan(disparity):
        empty = "foreground" if fg_counts.sum() == 0 else "background"
        warnings.warn(f"{case_name}: texture disparity is undefined (NaN): no {empty} pixels "
                      f"{LBP_RADIUS} or more pixels away from the slice border", RuntimeWarning,
                      stacklevel=2)
    contrast = contrast_to_noise_ratio(image[foreground].astype(np.float64),
                                       image[background].astype(np.float64))
    return CaseComplexity(texture_disparity_bits=disparity, contrast_to_noise=contrast,
                          foreground_fraction=fraction, foreground_voxels=num_fg)

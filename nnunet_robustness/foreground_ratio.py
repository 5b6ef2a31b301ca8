"""Foreground-to-background ratio (FBR): the foreground fraction and the context condition of ``run``.
The files these computations go into are records: ``<condition>/<case>.fbr.json``
(:mod:`nnunet_robustness.records.context_fbr`) and the training log ``fbr_train.json``
(:class:`~nnunet_robustness.records.training_fbr.TrainingFBR`) that ``eval`` compares test FBRs with.

**Context condition** (``run --conditions context:0.5,0.15``): for each test case the image is cropped
to a box around the reference foreground, grown until the box's foreground fraction is as close as
possible to the level: the tight bounding box has the highest fraction, the whole image the lowest,
and between them the fraction only falls as the box grows (the box always holds all foreground), so
the closest margin is found by bisection. The margin is the same physical distance on every axis
(voxels of the finest axis, converted per axis with the spacing), clipped at the image border. The
crop goes through nnU-Net's complete inference (``predict_single_npy_array``) as an image of its own;
its prediction is pasted into a background canvas of the full image, so the output keeps the input
geometry and is compared with the full reference. Outside the box the reference is background by
construction, so the comparison equals one on the crop. ``<condition>/<case>.fbr.json`` records
the achieved fraction, the box and the margin (written before the segmentation, which marks the
item done).

**Eval**: each case's test FBR is the fraction of its evaluated image: the whole reference for
ordinary conditions, the crop's for context conditions. The training range of a model comes from
the ``fbr_train.json`` logs of its folds (fg trainers, ``nnunet_robustness.trainers.fbr_logging``): the
range of the foreground fraction of the patches the network was trained on (after augmentation),
pooled over folds. Cases outside it are flagged (``fbr_outside_training``, :mod:`nnunet_robustness.analysis.fbr`).

Torch-free: the trainers (``nnunet_robustness.trainers.fbr_logging``) measure fractions with this module and
write the log through :mod:`nnunet_robustness.records.training_fbr`; ``eval`` reads it without torch.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from nnunet_robustness.records.context_fbr import ContextBox


def foreground_fraction(label: Any, ignore_label: int | None = None) -> float:
    """Foreground voxels / annotated voxels of a label map or patch (numpy array or torch tensor, any
    shape): labels > 0 are foreground; the ignore label is neither foreground nor counted; negative
    values (nnU-Net's -1 padding) are background. NaN when nothing is annotated."""
    if hasattr(label, "detach"):  # a torch tensor; duck-typed so that this module needs no torch
        label = label.detach().cpu().numpy()
    label = np.asarray(label)
    if ignore_label is None:
        annotated_voxels = label.size
        foreground = np.count_nonzero(label > 0)
    else:
        annotated = label != ignore_label
        annotated_voxels = int(np.count_nonzero(annotated))
        foreground = np.count_nonzero((label > 0) & annotated)
    return float(foreground) / annotated_voxels if annotated_voxels else math.nan


# --- the context condition -----------------------------------------------------------------------------

def context_box(label: np.ndarray, spacing: Sequence[float], target_fbr: float,
                ignore_label: int | None = None) -> ContextBox:
    """The box around the foreground of ``label`` (spatial axes only) whose foreground fraction is
    closest to ``target_fbr``. Without foreground: the whole image."""
    shape = label.shape
    full = [[0, s] for s in shape]
    foreground = (label > 0) if ignore_label is None else (label > 0) & (label != ignore_label)
    image_fbr = foreground_fraction(label, ignore_label)
    if not foreground.any():
        return ContextBox(target_fbr, image_fbr, full, [0] * len(shape), math.nan, image_fbr)
    coords = np.nonzero(foreground)
    low = [int(c.min()) for c in coords]
    high = [int(c.max()) + 1 for c in coords]
    finest = min(float(s) for s in spacing)

    def margins(k: int) -> list[int]:
        return [int(round(k * finest / float(s))) for s in spacing]

    def box(k: int) -> list[list[int]]:
        return [[max(0, lo - m), min(n, hi + m)] for lo, hi, m, n in zip(low, high, margins(k), shape)]

    def fbr(k: int) -> float:
        return foreground_fraction(label[tuple(slice(a, b) for a, b in box(k))], ignore_label)

    # the smallest k whose box is the whole image
    k_full = max(math.ceil(max(lo, n - hi) * float(s) / finest) for lo, hi, n, s in zip(low, high, shape, spacing))
    while box(k_full) != full:  # rounding of the per-axis margins
        k_full += 1
    # bisection for the first k with fbr(k) <= target (fbr is non-increasing in k)
    lo_k, hi_k = 0, k_full
    if fbr(0) <= target_fbr:
        hi_k = 0
    else:
        while hi_k - lo_k > 1:
            mid = (lo_k + hi_k) // 2
            lo_k, hi_k = (lo_k, mid) if fbr(mid) <= target_fbr else (mid, hi_k)
    best = min({max(0, hi_k - 1), hi_k}, key=lambda k: (abs(fbr(k) - target_fbr), k))
    return ContextBox(target_fbr, fbr(best), box(best), margins(best), fbr(0), image_fbr)


def paste_into_background(prediction: np.ndarray, full_shape: Sequence[int], box: ContextBox,
                          probabilities: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The crop's segmentation (and class probabilities) in a full-size canvas: background outside."""
    canvas = np.zeros(tuple(full_shape), dtype=prediction.dtype)
    canvas[box.slices] = prediction
    full_probabilities = None
    if probabilities is not None:
        full_probabilities = np.zeros((probabilities.shape[0], *full_shape), dtype=probabilities.dtype)
        full_probabilities[0] = 1
        full_probabilities[(slice(None), *box.slices)] = probabilities
    return canvas, full_probabilities

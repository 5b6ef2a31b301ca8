"""Per-structure segmentation metrics with one explicit empty-mask policy.

Overlap metrics follow nnU-Net (``nnunetv2.evaluation.evaluate_predictions.compute_metrics``:
TP/FP/FN counted outside the ignore label); surface metrics follow DeepMind's ``surface-distance``
(see ``surface``). Definitions, units and the policy are in ``docs/evaluation.md``.

Empty-mask policy (the cases Maier-Hein et al. 2024, "Metrics Reloaded", Nat Methods 21:195-212,
ask every evaluation to state, rather than leave to NaN handling downstream):

* both masks empty (structure correctly absent): Dice = IoU = NSD = 1, HD95 = ASSD = 0, volume
  differences 0; ``empty_mask = "both"``.
* reference empty, prediction not (a false-positive structure): Dice = IoU = NSD = 0, HD95 = ASSD =
  the image diagonal in mm (the largest distance two surfaces inside the image can have), relative
  volume difference undefined (NaN); ``empty_mask = "reference"``.
* prediction empty, reference not (a missed structure): Dice = IoU = NSD = 0, HD95 = ASSD = the image
  diagonal, relative volume difference -1; ``empty_mask = "prediction"``.

Every case is kept as a row; distances of a missing surface are the worst possible value rather
than NaN, so means, confidence intervals and rankings count a missed structure instead of skipping
it (the failure pattern of MONAI issue #9095).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from nnunet_robustness.metrics.surface import (
    average_symmetric_surface_distance,
    normalized_surface_dice,
    robust_hausdorff,
    surface_distances,
)


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    unit: str
    # True: higher is better; False: lower is better; None: no direction (signed quantities).
    higher_is_better: bool | None


# Per-case summary metrics, in the order of the output tables. Counts (tp, fp, fn, voxels) are in
# the per-case table too but are not summarised.
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("dice", "Dice similarity coefficient 2TP / (2TP + FP + FN)", "", True),
    Metric("iou", "intersection over union TP / (TP + FP + FN)", "", True),
    Metric("nsd", "normalised surface Dice at the tolerance (Nikolov et al. 2021)", "", True),
    Metric("hd95_mm", "95th percentile symmetric Hausdorff distance", "mm", False),
    Metric("assd_mm", "average symmetric surface distance", "mm", False),
    Metric("abs_volume_difference", "|V_pred - V_ref|", "mm^3 (mm^2 for 2D images)", False),
    Metric("rel_volume_difference", "(V_pred - V_ref) / V_ref", "", None),
)}

EMPTY_MASK_VALUES = ("none", "both", "reference", "prediction")
EMPTY_MASK_POLICY = {
    "both": "Dice = IoU = NSD = 1, HD95 = ASSD = 0, volume differences 0",
    "reference": "Dice = IoU = NSD = 0, HD95 = ASSD = image diagonal (mm), relative volume difference undefined",
    "prediction": "Dice = IoU = NSD = 0, HD95 = ASSD = image diagonal (mm), relative volume difference -1",
}


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length of the image diagonal in mm: no two surface points inside the image are further apart."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """2TP / (2TP + FP + FN) of two boolean masks, and 1 when both are empty (the policy above); the
    same value as ``compare_masks(...)["dice"]`` without the surface metrics."""
    tp = np.count_nonzero(reference & prediction)
    total = np.count_nonzero(reference) + np.count_nonzero(prediction)
    return 1.0 if total == 0 else 2 * tp / total


def compare_masks(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
                  nsd_tolerance_mm: float = 1.0, ignore: np.ndarray | None = None,
                  device: str | None = None) -> dict[str, Any]:
    """All metrics of one structure in one case: the columns of the per-case table.

    ``reference``/``prediction``: boolean 2D or 3D masks of one label or region; ``spacing``: voxel
    size in mm per axis; ``ignore``: voxels excluded from every metric (nnU-Net's ignore label),
    removed from both masks before the surfaces are computed. ``device``: "cuda" computes the surface
    distances with torch on the GPU (``surface_torch``) when torch sees one; None, "cpu" or no CUDA:
    the NumPy code of ``surface``, and torch is not imported.
    """
    reference = np.asarray(reference, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if reference.shape != prediction.shape:
        raise ValueError(f"masks have different shapes {reference.shape} and {prediction.shape}")
    if ignore is not None:
        reference = reference & ~ignore
        prediction = prediction & ~ignore
    tp = int(np.count_nonzero(reference & prediction))
    ref_voxels = int(np.count_nonzero(reference))
    pred_voxels = int(np.count_nonzero(prediction))
    fp, fn = pred_voxels - tp, ref_voxels - tp
    voxel_volume = float(np.prod(spacing))
    ref_volume, pred_volume = ref_voxels * voxel_volume, pred_voxels * voxel_volume
    row: dict[str, Any] = {
        "tp": tp, "fp": fp, "fn": fn, "ref_voxels": ref_voxels, "pred_voxels": pred_voxels,
        "ref_volume": ref_volume, "pred_volume": pred_volume,
        "abs_volume_difference": abs(pred_volume - ref_volume),
    }
    if ref_voxels == 0 and pred_voxels == 0:
        return {**row, "dice": 1.0, "iou": 1.0, "nsd": 1.0, "hd95_mm": 0.0, "assd_mm": 0.0,
                "rel_volume_difference": 0.0, "empty_mask": "both"}
    if ref_voxels == 0 or pred_voxels == 0:
        worst_distance = image_diagonal_mm(reference.shape, spacing)
        return {**row, "dice": 0.0, "iou": 0.0, "nsd": 0.0, "hd95_mm": worst_distance, "assd_mm": worst_distance,
                "rel_volume_difference": math.nan if ref_voxels == 0 else -1.0,
                "empty_mask": "reference" if ref_voxels == 0 else "prediction"}
    distances = _surface_distances(reference, prediction, spacing, device)
    return {
        **row,
        "dice": dice(reference, prediction),
        "iou": tp / (tp + fp + fn),
        "nsd": normalized_surface_dice(distances, nsd_tolerance_mm),
        "hd95_mm": robust_hausdorff(distances, 95.0),
        "assd_mm": average_symmetric_surface_distance(distances),
        "rel_volume_difference": (pred_volume - ref_volume) / ref_volume,
        "empty_mask": "none",
    }


def _surface_distances(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
                       device: str | None):
    if device is not None and str(device).startswith("cuda"):
        # torch only on request: eval and card stay torch-free on the CPU
        from nnunet_robustness.metrics.surface_torch import cuda_device, surface_distances_torch

        torch_device = cuda_device(device)
        if torch_device is not None:
            return surface_distances_torch(reference, prediction, spacing, device=torch_device)
    return surface_distances(reference, prediction, spacing)

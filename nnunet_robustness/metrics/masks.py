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

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from nnunet_robustness.metrics.surface import (
    SurfaceDistances,
    average_symmetric_surface_distance,
    normalized_surface_dice,
    robust_hausdorff,
    surface_distances,
)


@dataclass(frozen=True)
class Pair:
    """One structure in one case, reference against prediction: what every metric reads. The surface
    distances are computed on first use, and only when both masks have a surface."""

    reference: np.ndarray
    prediction: np.ndarray
    spacing: Sequence[float]
    nsd_tolerance_mm: float
    device: str | None
    tp: int
    ref_voxels: int
    pred_voxels: int

    @property
    def fp(self) -> int:
        return self.pred_voxels - self.tp

    @property
    def fn(self) -> int:
        return self.ref_voxels - self.tp

    @property
    def voxel_volume(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def ref_volume(self) -> float:
        return self.ref_voxels * self.voxel_volume

    @property
    def pred_volume(self) -> float:
        return self.pred_voxels * self.voxel_volume

    @property
    def empty_mask(self) -> str:
        """The empty-mask case of the policy above: none, both, reference or prediction."""
        if self.ref_voxels == 0 and self.pred_voxels == 0:
            return "both"
        if self.ref_voxels == 0 or self.pred_voxels == 0:
            return "reference" if self.ref_voxels == 0 else "prediction"
        return "none"

    @functools.cached_property
    def distances(self) -> SurfaceDistances:
        return _surface_distances(self.reference, self.prediction, self.spacing, self.device)

    @property
    def diagonal_mm(self) -> float:
        return image_diagonal_mm(self.reference.shape, self.spacing)


@dataclass(frozen=True)
class Metric:
    """One per-case summary metric: the one place its name, meaning, unit, report title, direction and
    computation are declared (the per-case table, the statistics, the report and the degradation read it)."""

    name: str
    description: str
    unit: str
    # True: higher is better; False: lower is better; None: no direction (signed quantities).
    higher_is_better: bool | None
    title: str
    compute: Callable[[Pair], float]
    # shown in the report's summary table (mean [95% CI] per model and condition)
    reported: bool = False


def _overlap(value: Callable[[Pair], float]) -> Callable[[Pair], float]:
    """An overlap metric under the empty-mask policy: 1 when both masks are empty, 0 when one is."""
    def compute(pair: Pair) -> float:
        empty = pair.empty_mask
        return value(pair) if empty == "none" else 1.0 if empty == "both" else 0.0
    return compute


def _distance(value: Callable[[Pair], float]) -> Callable[[Pair], float]:
    """A surface distance under the empty-mask policy: 0 when both masks are empty, the image diagonal when
    one is (the worst value, so a missed structure counts instead of being skipped as NaN)."""
    def compute(pair: Pair) -> float:
        empty = pair.empty_mask
        return value(pair) if empty == "none" else 0.0 if empty == "both" else pair.diagonal_mm
    return compute


def _relative_volume_difference(pair: Pair) -> float:
    if pair.ref_voxels == 0:  # undefined for a false-positive structure, 0 when both are empty
        return 0.0 if pair.pred_voxels == 0 else math.nan
    return (pair.pred_volume - pair.ref_volume) / pair.ref_volume


# Per-case summary metrics, in the order of the output tables. Counts (tp, fp, fn, voxels) are in
# the per-case table too but are not summarised. A new metric is one entry here (and a test).
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("dice", "Dice similarity coefficient 2TP / (2TP + FP + FN)", "", True, "Dice",
           _overlap(lambda p: 2 * p.tp / (p.ref_voxels + p.pred_voxels)), reported=True),
    Metric("iou", "intersection over union TP / (TP + FP + FN)", "", True, "IoU",
           _overlap(lambda p: p.tp / (p.tp + p.fp + p.fn))),
    Metric("nsd", "normalised surface Dice at the tolerance (Nikolov et al. 2021)", "", True, "NSD",
           _overlap(lambda p: normalized_surface_dice(p.distances, p.nsd_tolerance_mm)), reported=True),
    Metric("hd95_mm", "95th percentile symmetric Hausdorff distance", "mm", False, "HD95 (mm)",
           _distance(lambda p: robust_hausdorff(p.distances, 95.0)), reported=True),
    Metric("assd_mm", "average symmetric surface distance", "mm", False, "ASSD (mm)",
           _distance(lambda p: average_symmetric_surface_distance(p.distances)), reported=True),
    Metric("abs_volume_difference", "|V_pred - V_ref|", "mm^3 (mm^2 for 2D images)", False, "|volume difference|",
           lambda p: abs(p.pred_volume - p.ref_volume)),
    Metric("rel_volume_difference", "(V_pred - V_ref) / V_ref", "", None, "relative volume difference",
           _relative_volume_difference),
)}


def directed_metrics() -> list[str]:
    """The registered metrics with a direction (compared, ranked and turned into degradation), read at call time."""
    return [name for name, metric in METRICS.items() if metric.higher_is_better is not None]


def metric_title(name: str) -> str:
    """The report's title of a metric (its name when it is not a registered metric)."""
    return METRICS[name].title if name in METRICS else name


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
    pair = Pair(reference, prediction, spacing, nsd_tolerance_mm, device, tp=int(np.count_nonzero(reference & prediction)),
                ref_voxels=int(np.count_nonzero(reference)), pred_voxels=int(np.count_nonzero(prediction)))
    return {"tp": pair.tp, "fp": pair.fp, "fn": pair.fn, "ref_voxels": pair.ref_voxels,
            "pred_voxels": pair.pred_voxels, "ref_volume": pair.ref_volume, "pred_volume": pair.pred_volume,
            **{name: metric.compute(pair) for name, metric in METRICS.items()}, "empty_mask": pair.empty_mask}


def _surface_distances(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
                       device: str | None):
    if device is not None and str(device).startswith("cuda"):
        # torch only on request: eval and card stay torch-free on the CPU
        from nnunet_robustness.metrics.surface_torch import cuda_device, surface_distances_torch

        torch_device = cuda_device(device)
        if torch_device is not None:
            return surface_distances_torch(reference, prediction, spacing, device=torch_device)
    return surface_distances(reference, prediction, spacing)

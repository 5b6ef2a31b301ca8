"""Segmentation metrics of one prediction against its reference, and reading prediction folders.

- :mod:`.masks`: Dice, IoU, HD95, ASSD, NSD and volume differences of two masks, with one cited
  empty-mask policy (``compare_masks``);
- :mod:`.surface`: the surface distances behind HD95, ASSD and NSD (equal to DeepMind's
  surface-distance);
- :mod:`.inputs`: dataset labels/regions, prediction folders and their conditions, label maps;
- :mod:`.per_case`: the per-case table (one row per model x condition x case x label).
"""

from nnunet_robustness.metrics.masks import METRICS, compare_masks, dice, image_diagonal_mm
from nnunet_robustness.metrics.surface import (
    SurfaceDistances,
    average_symmetric_surface_distance,
    normalized_surface_dice,
    robust_hausdorff,
    surface_distances,
)

__all__ = [
    "METRICS", "SurfaceDistances", "average_symmetric_surface_distance", "compare_masks", "dice",
    "image_diagonal_mm", "normalized_surface_dice", "robust_hausdorff", "surface_distances",
]

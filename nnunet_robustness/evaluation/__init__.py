"""Robustness evaluation of nnU-Net-style prediction folders (``nnunet-robust eval``).

Example::

    from nnunet_robustness.evaluation import evaluate, write_report
    result = evaluate({"A": "out_A", "B": "out_B"}, "labelsTs", "dataset.json", output="eval")
    write_report(result, "eval/report.html")

Metric definitions, the empty-mask policy, the statistics and the output files are described in
``docs/evaluation.md``.
"""

from nnunet_robustness.evaluation.evaluate import EvaluationResult, evaluate, write_tables
from nnunet_robustness.evaluation.metrics import METRICS, compare_masks, image_diagonal_mm
from nnunet_robustness.evaluation.report import write_report
from nnunet_robustness.evaluation.surface import (
    SurfaceDistances, average_symmetric_surface_distance, normalized_surface_dice, robust_hausdorff,
    surface_distances,
)

__all__ = [
    "METRICS", "EvaluationResult", "SurfaceDistances", "average_symmetric_surface_distance", "compare_masks",
    "evaluate", "image_diagonal_mm", "normalized_surface_dice", "robust_hausdorff", "surface_distances",
    "write_report", "write_tables",
]

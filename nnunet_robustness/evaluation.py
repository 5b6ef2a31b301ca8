"""The public entry point of robustness evaluation (``nnunet-robust eval``) for use from Python.

Example::

    from nnunet_robustness.evaluation import evaluate, write_report
    result = evaluate({"A": "out_A", "B": "out_B"}, "labelsTs", "dataset.json", output="eval")
    write_report(result, "eval/report.html")

The work is done in the packages of each stage: :mod:`nnunet_robustness.metrics` (per-case metrics of
prediction files), :mod:`nnunet_robustness.analysis` (statistics) and :mod:`nnunet_robustness.reports`
(HTML). Metric definitions, the empty-mask policy, the statistics and the output files are described
in ``docs/evaluation.md``.
"""

from nnunet_robustness.analysis.eval_pipeline import EvaluationResult, evaluate, write_tables
from nnunet_robustness.metrics import (
    METRICS,
    SurfaceDistances,
    average_symmetric_surface_distance,
    compare_masks,
    image_diagonal_mm,
    normalized_surface_dice,
    robust_hausdorff,
    surface_distances,
)
from nnunet_robustness.reports.eval_report import write_report

__all__ = [
    "METRICS", "EvaluationResult", "SurfaceDistances", "average_symmetric_surface_distance", "compare_masks",
    "evaluate", "image_diagonal_mm", "normalized_surface_dice", "robust_hausdorff", "surface_distances",
    "write_report", "write_tables",
]

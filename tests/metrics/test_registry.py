"""The metric registry (``metrics/masks.py``'s ``METRICS``) drives the per-case table, the statistics, the
report's titles and the direction of the degradation: a metric is one entry there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnunet_robustness import evaluation  # noqa: F401  (the per-case module loaded before a metric is added)
from nnunet_robustness.metrics import masks
from nnunet_robustness.metrics.masks import METRICS, Metric, compare_masks, metric_title

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance.*")

# false positives per reference voxel: lower is better; 0 when the reference is empty and nothing is predicted
TOY = Metric("fp_per_ref_voxel", "false-positive voxels per reference voxel", "", False, "FP per ref. voxel",
             lambda p: p.fp / max(p.ref_voxels, 1), reported=True)


@pytest.fixture
def toy_metric(monkeypatch):
    monkeypatch.setitem(METRICS, TOY.name, TOY)
    return TOY


def test_every_metric_has_a_title_and_the_report_uses_it():
    assert metric_title("hd95_mm") == "HD95 (mm)" and metric_title("not_a_metric") == "not_a_metric"
    assert all(metric.title for metric in METRICS.values())


def test_compare_masks_computes_every_registered_metric(toy_metric):
    reference = np.zeros((6, 6), bool)
    reference[1:4, 1:4] = True
    prediction = np.zeros((6, 6), bool)
    prediction[1:4, 1:5] = True  # 3 false-positive voxels
    row = compare_masks(reference, prediction, (1.0, 1.0))
    assert set(METRICS) <= set(row)
    assert row["fp_per_ref_voxel"] == pytest.approx(3 / 9)
    assert row["dice"] == pytest.approx(2 * 9 / (9 + 12))


def test_the_empty_mask_policy_comes_from_the_registry_entries():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    both = compare_masks(empty, empty, (1.0, 1.0))
    missed = compare_masks(full, empty, (1.0, 2.0))
    assert (both["dice"], both["nsd"], both["hd95_mm"], both["rel_volume_difference"]) == (1.0, 1.0, 0.0, 0.0)
    assert (missed["iou"], missed["rel_volume_difference"], missed["empty_mask"]) == (0.0, -1.0, "prediction")
    assert missed["assd_mm"] == pytest.approx(masks.image_diagonal_mm((4, 4), (1.0, 2.0)))
    assert np.isnan(compare_masks(empty, full, (1.0, 1.0))["rel_volume_difference"])


def test_a_registered_metric_reaches_the_per_case_table_the_statistics_and_the_report(toy_metric, study, tmp_path):
    from nnunet_robustness.evaluation import evaluate, write_report

    result = evaluate({"A": study["A"], "B": study["B"]}, study["reference"], study["dataset_json"],
                      tmp_path / "eval", n_bootstrap=20, progress=False)
    assert "fp_per_ref_voxel" in result.per_case.columns
    assert "fp_per_ref_voxel" in set(result.statistics["metric"])
    # lower is better: its degradation is the rise from clean, as for HD95
    drops = result.degradation[result.degradation["metric"] == "fp_per_ref_voxel"]
    assert len(drops) and np.allclose(drops["absolute"], drops["condition_mean"] - drops["clean_mean"], equal_nan=True)
    csv_header = (tmp_path / "eval" / "per_case.csv").read_text().splitlines()[0].split(",")
    assert "fp_per_ref_voxel" in csv_header
    html = Path(write_report(result, tmp_path / "report.html")).read_text()
    assert "FP per ref. voxel" in html

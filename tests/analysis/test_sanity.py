"""The sanity gate: failed models are left out of the verdict with their reason; short schedules marked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_robustness.evaluation import evaluate
from nnunet_robustness.reports.eval_report import write_report


def _empty_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for path in target.rglob("*.nii.gz"):
        image = sitk.ReadImage(str(path))
        empty = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(image)))
        empty.CopyInformation(image)
        sitk.WriteImage(empty, str(path))
    return target


def test_a_model_with_empty_clean_predictions_is_left_out_with_its_reason(study, tmp_path):
    empty = _empty_copy(Path(study["A"]), tmp_path / "pred_E")
    models = {"A": study["A"], "B": study["B"], "E": empty}
    result = evaluate(models, study["reference"], study["dataset_json"], n_bootstrap=50, progress=False)
    checks = {c["model"]: c for c in result.model_checks}
    assert checks["A"]["passed"] and checks["B"]["passed"] and not checks["E"]["passed"]
    assert checks["E"]["empty_share"] == 1.0
    assert any(s.startswith("E fails the sanity gate: predicts empty masks on 100% of the clean structures")
               for s in result.verdict)
    compared = set(result.robustness_comparisons["model_a"]) | set(result.robustness_comparisons["model_b"])
    assert compared == {"A", "B"}
    kept = evaluate(models, study["reference"], study["dataset_json"], n_bootstrap=50, progress=False,
                    allow_weak_models=True)
    assert "E" in set(kept.robustness_comparisons["model_b"])
    assert "sanity gate: E" in write_report(result, tmp_path / "report.html").read_text()


def test_a_tiny_schedule_is_marked_short(study, tmp_path):
    folder = tmp_path / "pred_T"
    shutil.copytree(study["A"], folder)
    manifest = json.loads((folder / "run.json").read_text())
    model_folder = tmp_path / "nnUNetTrainer_tiny__nnUNetPlans__2d"
    (model_folder / "fold_0").mkdir(parents=True)
    # what nnU-Net writes for nnUNetTrainer_tiny (values are strings in debug.json)
    (model_folder / "fold_0" / "debug.json").write_text(json.dumps({"num_epochs": "1",
                                                                    "num_iterations_per_epoch": "10"}))
    manifest["model"]["model_folder"] = str(model_folder)
    (folder / "run.json").write_text(json.dumps(manifest))
    result = evaluate({"T": folder, "B": study["B"]}, study["reference"], study["dataset_json"], n_bootstrap=50,
                      progress=False)
    check = next(c for c in result.model_checks if c["model"] == "T")
    assert check["iterations"] == 10 and check["short_schedule"] and check["passed"]
    assert any("T was trained for 10 iterations" in s and "short schedule" in s for s in result.verdict)
    assert next(c for c in result.model_checks if c["model"] == "B")["iterations"] is None  # no log: unknown


def test_failed_models_are_marked_in_the_report_tables(study, tmp_path):
    empty = _empty_copy(Path(study["A"]), tmp_path / "pred_E")
    result = evaluate({"A": study["A"], "E": empty}, study["reference"], study["dataset_json"], n_bootstrap=50,
                      progress=False)
    html = write_report(result, tmp_path / "report.html").read_text()
    assert html.count("E (fails sanity gate)") >= 3  # summary, degradation, worst cases, ...


def test_two_failed_models_get_no_comparison_and_no_best_model(study, tmp_path):
    """Both models fail the gate: no paired tests between them, no best-model share, a plain statement."""
    import re

    first = _empty_copy(Path(study["A"]), tmp_path / "pred_E")
    second = _empty_copy(Path(study["B"]), tmp_path / "pred_F")
    result = evaluate({"E": first, "F": second}, study["reference"], study["dataset_json"], n_bootstrap=50,
                      progress=False)
    assert not any(c["passed"] for c in result.model_checks) and len(result.pairwise_tests)
    assert any(s.startswith("Fewer than two of the 2 models passed the sanity gate (passed: none)")
               for s in result.verdict), result.verdict
    html = write_report(result, tmp_path / "report.html").read_text()
    comparison = html[html.index("<h2>Model comparison"):]
    comparison = comparison[:comparison.index("</section>")]
    assert "fewer than two models passed the sanity gate (passed: none)" in comparison
    assert "Paired Wilcoxon" not in comparison and "Share of cases" not in comparison
    # the overview names each model with its folder, marked or not; never an empty "()"
    assert "()" not in html and re.search(r"E \(fails sanity gate\) \([^)]*pred_E\)", html)


def test_a_failed_model_is_left_out_of_the_paired_tests(study, tmp_path):
    empty = _empty_copy(Path(study["A"]), tmp_path / "pred_E")
    result = evaluate({"A": study["A"], "B": study["B"], "E": empty}, study["reference"], study["dataset_json"],
                      n_bootstrap=50, progress=False)
    html = write_report(result, tmp_path / "report.html").read_text()
    comparison = html[html.index("<h2>Model comparison"):]
    comparison = comparison[:comparison.index("</section>")]
    assert ">A vs B<" in comparison and " vs E (fails sanity gate)<" not in comparison
    assert "left out: E (fails sanity gate)" in comparison

"""The HTML report: one self-contained file with embedded plots, readable values, worst cases."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN
from nnunet_robustness.evaluation import write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _images(document: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", document)]


def test_report_is_self_contained_with_plots(study_result, tmp_path: Path) -> None:
    result, _ = study_result
    path = write_report(result, tmp_path / "report.html")
    document = path.read_text()
    images = _images(document)
    # curves (one family), degradation heatmap, per-case scatter
    assert len(images) == 3 and all(image.startswith(PNG_SIGNATURE) for image in images)
    assert not re.search(r"(src|href)=['\"](?!data:)", document)  # nothing fetched from elsewhere
    assert "<script" not in document
    for section in ("Metric vs severity", "Degradation vs clean", "Model comparison", "Worst 15 structures"):
        assert section in document
    worst = result.per_case.sort_values("dice").iloc[0]
    assert Path(worst["prediction_file"]).name in document and "Full paths of the prediction and reference files" in document


def test_undefined_values_are_shown_as_na(study_result, tmp_path: Path) -> None:
    result, _ = study_result
    statistics = result.statistics.copy()
    hit = (statistics["label"] == FOREGROUND_MEAN) & (statistics["metric"] == "hd95_mm")
    statistics.loc[hit, ["mean", "mean_ci_low"]] = np.nan
    document = write_report(result.replace(statistics=statistics), tmp_path / "r.html").read_text()
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", document)
    assert "n/a [n/a," in text
    assert not re.search(r"[>\s\[(](nan|NaN|inf|-inf|None)[<\s,\])]", text)


def test_single_model_without_clean_condition(study, tmp_path: Path) -> None:
    from nnunet_robustness.evaluation import evaluate

    result = evaluate({"A": study["A"] / "noise_sev1"}, study["reference"], study["dataset_json"], progress=False,
                      n_bootstrap=20)
    document = write_report(result, tmp_path / "report.html").read_text()
    assert "degradation not computed" in document and "Model comparison" not in document
    assert _images(document) == []


def test_the_definitions_table_shows_what_each_condition_applied(study, tmp_path):
    import shutil

    from nnunet_robustness.evaluation import evaluate
    from nnunet_robustness.records.run_manifest import RunManifest

    folder = tmp_path / "pred_A"
    shutil.copytree(study["A"], folder)
    manifest = RunManifest.read(folder)
    RunManifest(**{**manifest.__dict__, "parameters": {"noise_sev2": {"std_fraction": 0.05}}}).write(folder)
    result = evaluate({"A": folder}, study["reference"], study["dataset_json"], n_bootstrap=20, progress=False)
    html = write_report(result, tmp_path / "report.html").read_text()
    assert "Conditions: what each one applied" in html and "std_fraction" in html
    assert result.settings["versions"]["nnunet-robustness"]


def test_the_conditions_table_says_each_condition_in_words(study_result, tmp_path):
    """The row of a condition carries its plain sentence: what it simulates and how strong it is."""
    result, _ = study_result
    conditions = result.conditions.copy()
    conditions.loc[conditions["condition"] == "noise_sev2", ["family", "parameters"]] = [
        "gaussian_noise", '{"std_fraction": 0.05}']
    html = write_report(dataclasses.replace(result, conditions=conditions), tmp_path / "r.html").read_text()
    section = html[html.index("Conditions: what each one applied"):html.index("Summary (foreground mean")]
    row = next(r for r in section.split("<tr>") if ">noise_sev2<" in r)
    assert ("Simulates grainy images: random electronic noise added to every pixel; strength: mild, severity 2 of 5 "
            "(std_fraction 0.05).") in row
    clean = next(r for r in section.split("<tr>") if ">clean<" in r)
    assert "The unchanged test images." in clean


def test_a_calibrated_condition_shows_its_target_and_the_ssim_reached_on_all_test_cases(study_result, tmp_path):
    """The calibration cases' mean is the run.json record; the row shows what every test case reached."""
    result, _ = study_result
    conditions, per_case = result.conditions.copy(), result.per_case.copy()
    calibrated = conditions["condition"] == "noise_sev2"
    record = {"target_ssim": 0.9, "reached_ssim_mean": 0.883, "reached_ssim_sd": 0.01, "reached_ssim_min": 0.87,
              "reached_ssim_max": 0.89, "calibration_cases": 2, "reachable": False, "merged_levels": [3]}
    conditions.loc[calibrated, ["family", "calibrated_severity", "parameters"]] = [
        "motion", 4.5, json.dumps({"moved_fraction": 0.375, "calibration": record})]
    cases = sorted(per_case["case"].unique())
    assert len(cases) == 4
    by_case = dict(zip(cases, (0.70, 0.80, 0.90, 0.95)))  # median 0.85, IQR 0.775-0.9125
    rows = per_case["condition"] == "noise_sev2"
    per_case.loc[rows, "input_ssim"] = per_case.loc[rows, "case"].map(by_case)
    html = write_report(dataclasses.replace(result, conditions=conditions, per_case=per_case),
                        tmp_path / "r.html").read_text()
    section = html[html.index("Conditions: what each one applied"):html.index("Summary (foreground mean")]
    row = next(r for r in section.split("<tr>") if ">noise_sev2<" in r)
    assert ("4.500; target SSIM 0.90; reached on 4 test cases: median 0.850 (IQR 0.775-0.912, range 0.700-0.950); "
            "not reached on the calibration cases (mean 0.883); also stands for level(s) 3 (same input)") in row
    assert "calibration {" not in row  # the record is no strength in the sentence
    clean = next(r for r in section.split("<tr>") if ">clean<" in r)
    assert "target SSIM" not in clean

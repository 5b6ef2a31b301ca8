"""``evaluate`` and ``nnunet-robust eval`` on folders: layouts, outputs, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_robustness.analysis.eval_pipeline import OUTPUT_FILES, PER_CASE_COLUMNS
from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN
from nnunet_robustness.cli import main
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.evaluation import evaluate
from tests.helpers.prediction_folders import SPACING, write_dataset_json, write_label

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance.*")


def _strict_json(path: Path):
    def reject(constant: str):
        raise AssertionError(f"{path} contains {constant}")
    return json.loads(path.read_text(), parse_constant=reject)


def test_outputs_of_a_two_model_run(study_result) -> None:
    result, output = study_result
    per_case = result.per_case
    assert list(per_case.columns) == PER_CASE_COLUMNS
    assert len(per_case) == 2 * 3 * 4 * 2  # models x conditions x cases x labels
    assert not per_case.duplicated(["model", "condition", "case", "label"]).any()
    parquet = pd.read_parquet(output / "per_case.parquet")
    csv = pd.read_csv(output / "per_case.csv")
    pd.testing.assert_frame_equal(parquet, per_case)
    np.testing.assert_allclose(csv["hd95_mm"], per_case["hd95_mm"], rtol=1e-12)
    # Family and severity come from run.json.
    noise = per_case[per_case["condition"] == "noise_sev2"]
    assert set(noise["family"]) == {"noise"} and set(noise["severity"]) == {2.0}
    summary = _strict_json(output / "summary.json")
    assert summary["clean_condition"] == "clean"
    assert set(summary["per_model"]) == {"A", "B"}
    assert summary["per_model"]["A"]["clean"]["foreground_mean"]["dice"] == pytest.approx(1.0)
    assert set(summary["per_model"]["A"]["clean"]["mean"]) == {"1", "2"}  # nnU-Net's label keys
    assert summary["settings"]["nsd_tolerance_mm"] == 1.0
    assert not (output / "report.html").exists()  # the report is written separately


def test_summaries_follow_the_data(study_result) -> None:
    result, _ = study_result
    stats = result.statistics.set_index(["model", "condition", "label", "metric"])
    # Model B is built one voxel worse than A everywhere: worse mean Dice, larger HD95.
    for condition in ("clean", "noise_sev1", "noise_sev2"):
        assert stats.loc[("A", condition, FOREGROUND_MEAN, "dice"), "mean"] > \
            stats.loc[("B", condition, FOREGROUND_MEAN, "dice"), "mean"]
    shares = result.best_model_shares
    overall = shares[(shares["condition"] == "(all conditions)") & (shares["label"] == FOREGROUND_MEAN)
                     & (shares["metric"] == "dice")].set_index("model")["best_share"]
    assert overall["A"] > overall["B"] and overall.sum() == pytest.approx(1.0)
    assert len(result.pairwise_tests) > 0 and result.pairwise_tests["p_holm"].between(0, 1).all()
    degradation = result.degradation.set_index(["model", "condition", "label", "metric"])
    assert degradation.loc[("A", "noise_sev2", FOREGROUND_MEAN, "dice"), "absolute"] > 0
    assert degradation.loc[("A", "noise_sev2", FOREGROUND_MEAN, "hd95_mm"), "absolute"] > 0
    curve = result.severity_curves
    curve = curve[(curve["model"] == "A") & (curve["label"] == FOREGROUND_MEAN) & (curve["metric"] == "dice")].iloc[0]
    assert curve["severities"] == [0.0, 1.0, 2.0] and curve["conditions"][0] == "clean"


def test_same_result_with_workers_and_for_the_same_seed(study, study_result, tmp_path: Path) -> None:
    result, _ = study_result
    again = evaluate({"A": study["A"], "B": study["B"]}, study["reference"], study["dataset_json"], tmp_path,
                     n_bootstrap=200, num_processes=2, progress=False)
    pd.testing.assert_frame_equal(again.per_case, result.per_case)
    pd.testing.assert_frame_equal(again.statistics, result.statistics)
    other_seed = evaluate({"A": study["A"]}, study["reference"], study["dataset_json"], n_bootstrap=200, seed=1,
                          progress=False)
    merged = result.statistics.merge(other_seed.statistics, on=["model", "condition", "label", "metric"])
    assert (merged["mean_x"] == merged["mean_y"]).all()
    assert (merged["mean_ci_low_x"] != merged["mean_ci_low_y"]).any()


def test_folder_layouts_without_run_json(study, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(study["A"], plain)
    (plain / "run.json").unlink()
    result = evaluate({"A": plain}, study["reference"], study["dataset_json"], progress=False, n_bootstrap=20)
    conditions = result.conditions.set_index("condition")
    assert list(conditions.index) == ["clean", "noise_sev1", "noise_sev2"]
    assert conditions.loc["noise_sev1", "family"] == "noise" and conditions.loc["noise_sev1", "severity"] == 1.0
    assert result.clean_condition == "clean"
    single = evaluate({"A": plain / "noise_sev2"}, study["reference"], study["dataset_json"], progress=False,
                      n_bootstrap=20)
    assert list(single.conditions["condition"]) == ["noise_sev2"]
    assert single.clean_condition is None and single.degradation.empty
    assert single.settings["unpredicted_reference_cases"] == []


def test_two_dimensional_images(tmp_path: Path) -> None:
    reference = np.zeros((30, 40), np.uint8)
    reference[8:20, 10:30] = 1
    prediction = np.roll(reference, 2, axis=0)
    write_label(tmp_path / "ref" / "img.nii.gz", reference, (0.6, 1.4))
    write_label(tmp_path / "pred" / "img.nii.gz", prediction, (0.6, 1.4))
    dataset_json = write_dataset_json(tmp_path / "dataset.json", {"background": 0, "thing": 1})
    row = evaluate({"m": tmp_path / "pred"}, tmp_path / "ref", dataset_json, progress=False,
                   n_bootstrap=10).per_case.iloc[0]
    # Evaluated as a 2D image: the 2-row shift is 1.2 mm, areas in mm^2 (no placeholder slice thickness).
    assert row["hd95_mm"] == pytest.approx(1.2)
    assert row["ref_volume"] == pytest.approx(reference.sum() * 0.6 * 1.4)


# --- bad input -----------------------------------------------------------------------------------------

def _break_missing_reference(study_copy: dict[str, Path]) -> Path:
    path = study_copy["A"] / "noise_sev1" / "case_999.nii.gz"
    shutil.copy(study_copy["A"] / "noise_sev1" / "case_000.nii.gz", path)
    return path


def _break_shape(study_copy: dict[str, Path]) -> Path:
    path = study_copy["B"] / "noise_sev2" / "case_001.nii.gz"
    write_label(path, np.zeros((12, 24, 19), np.uint8), SPACING)
    return path


def _break_spacing(study_copy: dict[str, Path]) -> Path:
    path = study_copy["A"] / "clean" / "case_002.nii.gz"
    write_label(path, np.zeros((12, 24, 20), np.uint8), (2.5, 0.8, 1.2))
    return path


def _break_label(study_copy: dict[str, Path]) -> Path:
    path = study_copy["B"] / "clean" / "case_003.nii.gz"
    array = np.zeros((12, 24, 20), np.uint8)
    array[3, 3, 3] = 7
    write_label(path, array, SPACING)
    return path


def _break_file(study_copy: dict[str, Path]) -> Path:
    path = study_copy["A"] / "noise_sev2" / "case_000.nii.gz"
    path.write_bytes(b"this is not a NIfTI file")
    return path


def _break_missing_prediction(study_copy: dict[str, Path]) -> Path:
    (study_copy["B"] / "noise_sev1" / "case_002.nii.gz").unlink()
    return study_copy["B"] / "noise_sev1"


@pytest.mark.parametrize("breaker, problem", [
    (_break_missing_reference, "no reference"),
    (_break_shape, "shape"),
    (_break_spacing, "spacing"),
    (_break_label, "not in"),
    (_break_file, "cannot be read"),
    (_break_missing_prediction, "case_002.nii.gz: missing"),
], ids=["missing-reference", "shape", "spacing", "unknown-label", "unreadable", "missing-prediction"])
def test_bad_input_names_the_file_and_writes_nothing(study, tmp_path: Path, breaker, problem: str) -> None:
    copy = {key: tmp_path / Path(value).relative_to(study["root"]) for key, value in study.items() if key != "root"}
    shutil.copytree(study["root"], tmp_path, dirs_exist_ok=True)
    bad = breaker(copy)
    output = tmp_path / "eval"
    output.mkdir()
    for name in OUTPUT_FILES:  # files already there are never touched by a failing evaluation
        (output / name).write_text("earlier")
    with pytest.raises(UserInputError) as error:
        evaluate({"A": copy["A"], "B": copy["B"]}, copy["reference"], copy["dataset_json"], output,
                 progress=False, n_bootstrap=10)
    message = str(error.value)
    assert str(bad) in message and problem in message and "\n" not in message
    assert all((output / name).read_text() == "earlier" for name in OUTPUT_FILES)


def test_cli_reports_bad_input_in_one_line(study, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = main(["eval", "--model", "A", "-ref", str(study["reference"]), "-djfile", str(study["dataset_json"]),
                   "-o", str(tmp_path)])
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnunet-robust: error: --model 'A'")


def test_cli_writes_every_output(study, tmp_path: Path) -> None:
    status = main(["eval", "--model", f"A={study['A']}", "--model", f"B={study['B']}", "-ref", str(study["reference"]),
                   "-djfile", str(study["dataset_json"]), "-o", str(tmp_path), "--n-bootstrap", "50",
                   "--nsd-tolerance", "2", "-np", "1"])
    assert status == 0
    assert all((tmp_path / name).is_file() for name in OUTPUT_FILES)
    assert _strict_json(tmp_path / "summary.json")["settings"]["nsd_tolerance_mm"] == 2.0


def test_dataset_json_problems_are_user_errors(study, tmp_path: Path) -> None:
    broken = write_dataset_json(tmp_path / "dataset.json", {"organ": 1})  # no background
    with pytest.raises(UserInputError, match=str(broken)):
        evaluate({"A": study["A"]}, study["reference"], broken, progress=False)
    with pytest.raises(UserInputError, match="does not exist"):
        evaluate({"A": tmp_path / "nowhere"}, study["reference"], study["dataset_json"], progress=False)


def test_a_failing_rerun_keeps_the_earlier_outputs_and_foreign_files_are_refused(study, tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture) -> None:
    arguments = ["eval", "--model", f"A={study['A']}", "-ref", str(study["reference"]), "-djfile",
                 str(study["dataset_json"]), "--n-bootstrap", "20", "-np", "1"]
    output = tmp_path / "eval"
    assert main([*arguments, "-o", str(output)]) == 0
    before = {name: (output / name).read_bytes() for name in OUTPUT_FILES}
    broken = tmp_path / "dataset.json"
    broken.write_text("{not json")
    assert main([*arguments[:-6], "-djfile", str(broken), "--n-bootstrap", "20", "-np", "1", "-o", str(output)]) == 2
    assert {name: (output / name).read_bytes() for name in OUTPUT_FILES} == before
    assert not [p for p in output.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    capsys.readouterr()
    # nnU-Net's own summary.json in a prediction folder is not eval's to overwrite
    foreign = tmp_path / "nnunet_eval"
    foreign.mkdir()
    (foreign / "summary.json").write_text('{"foreground_mean": {"Dice": 0.9}, "metric_per_case": []}')
    assert main([*arguments, "-o", str(foreign)]) == 2
    assert "not written by nnunet-robust eval" in capsys.readouterr().err
    assert main([*arguments, "-o", str(Path(study["A"]) / "eval")]) == 2
    assert "inside model A's prediction folder" in capsys.readouterr().err


def test_rood_mri_summary_sits_next_to_our_auc(study_result) -> None:
    """ROOD-MRI's weights (2/3)^s over the study's noise severities 1 and 2, from eval's own means."""
    result, _ = study_result
    rood = result.rood_mri.set_index(["model", "family", "metric"])
    means = result.statistics.set_index(["model", "condition", "label", "metric"])["mean"]
    for model in ("A", "B"):
        clean, m1, m2 = (means[(model, c, "foreground_mean", "dice")] for c in ("clean", "noise_sev1", "noise_sev2"))
        w1, w2 = 2 / 3, (2 / 3) ** 2
        row = rood.loc[(model, "noise", "dice")]
        assert row["degradation"] == pytest.approx((w1 * (clean - m1) + w2 * (clean - m2)) / (w1 + w2))
        assert row["overall"] == pytest.approx((clean + w1 * m1 + w2 * m2) / (1 + w1 + w2))
        assert list(row["severities"]) == [1.0, 2.0]


def test_several_references_use_their_consensus_and_compare_each_rater(study, tmp_path: Path) -> None:
    """Two raters: the study's reference and a dilated copy. Statistics use the STAPLE consensus, and
    raters.csv places each prediction within or outside the raters' own agreement."""
    import SimpleITK as sitk
    from scipy import ndimage

    rater2 = tmp_path / "rater2"
    rater2.mkdir()
    for path in sorted(Path(study["reference"]).glob("*.nii.gz")):
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
        grown = np.where(ndimage.binary_dilation(array > 0) & (array == 0), 1, array).astype(array.dtype)
        copy = sitk.GetImageFromArray(grown)
        copy.CopyInformation(image)
        sitk.WriteImage(copy, str(rater2 / path.name))
    output = tmp_path / "eval"
    assert main(["eval", "--model", f"A={study['A']}", "-ref", str(study["reference"]), "-ref", str(rater2),
                 "-djfile", str(study["dataset_json"]), "-o", str(output), "--n-bootstrap", "20", "-np", "1"]) == 0
    consensus = output / "consensus_reference"
    assert sorted(p.name for p in consensus.glob("*.nii.gz")) == sorted(p.name for p in rater2.glob("*.nii.gz"))
    raters = pd.read_csv(output / "raters.csv")
    assert {"model_vs_consensus_dice", "inter_rater_dice_mean", "model_within_inter_rater_range",
            "disagreement_rank", "model_vs_rater1_dice", "model_vs_rater2_dice"} <= set(raters.columns)
    organ = raters[raters["label"] == "organ"]  # the dilation moved the organ's outer boundary only
    assert ((organ["inter_rater_dice_mean"] > 0.5) & (organ["inter_rater_dice_mean"] < 1)).all()
    per_case = pd.read_csv(output / "per_case.csv")
    assert (per_case["reference_file"].str.contains("consensus_reference")).all()
    summary = _strict_json(output / "summary.json")
    assert summary["settings"]["consensus_method"] == "staple" and len(summary["settings"]["raters"]) == 2
    assert "Rater disagreement" in (output / "report.html").read_text()


def test_several_training_runs_per_model_and_three_models(tmp_path: Path) -> None:
    """eval --model NAME=RUN1,RUN2: runs named NAME:1.., compared with the two-level bootstrap; three models
    are ranked with their stability; --equivalence reaches the verdict; the report shows the ranking."""
    from tests.helpers.prediction_folders import write_study

    folders = write_study(tmp_path, n_cases=6, models=("A1", "A2", "B1", "B2", "C"))
    output = tmp_path / "eval"
    status = main(["eval", "--model", f"A={folders['A1']},{folders['A2']}", "--model",
                   f"B={folders['B1']},{folders['B2']}", "--model", f"C={folders['C']}",
                   "-ref", str(tmp_path / "labelsTs"), "-djfile", str(tmp_path / "dataset.json"), "-o", str(output),
                   "--n-bootstrap", "200", "-np", "1", "--equivalence", "0.05"])
    assert status == 0
    summary = _strict_json(output / "summary.json")
    assert summary["runs"] == {"A": ["A:1", "A:2"], "B": ["B:1", "B:2"], "C": ["C"]}
    assert summary["settings"]["equivalence_margin"] == 0.05
    assert summary["verdict"][0].startswith("Training runs per model: A 2, B 2, C 1")
    comparisons = pd.DataFrame(summary["robustness_comparisons"])
    ab = comparisons[(comparisons["model_a"] == "A") & (comparisons["model_b"] == "B")]
    assert (ab["runs_a"] == 2).all() and ab["test"].str.startswith("two-level bootstrap").all()
    assert {r["model"] for r in summary["ranking"]} == {"A", "B", "C"}
    per_case = pd.read_parquet(output / "per_case.parquet")
    assert {"A:1", "A:2", "B:1", "B:2", "C"} == set(per_case["model"])
    report = (output / "report.html").read_text()
    assert "Ranking and its stability" in report and "P(rank 1)" in report


@pytest.mark.parametrize("spec, problem", [("A=", "expected NAME=FOLDER"), ("A=x,,y", "an empty folder"),
                                           ("A:1=x", "cannot contain ':'")])
def test_bad_run_lists_are_one_line_errors(spec: str, problem: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    status = main(["eval", "--model", spec, "-ref", str(tmp_path), "-djfile", str(tmp_path / "d.json"),
                   "-o", str(tmp_path / "out")])
    assert status == 2 and problem in capsys.readouterr().err

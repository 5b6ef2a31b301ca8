"""``calibrate`` and ``rate`` end to end on tiny synthetic prediction folders (npz + nii.gz + labels),
through the command line, with two fold folders and a corrupted condition."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from nnunet_robustness.cli import main
from tests.trust.synthetic import write_prediction_study


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("trust")
    calibration = write_prediction_study(root / "cal", 30, [("clean", 0.0)], n_folds=2, seed=0, prefix="cal")
    test = write_prediction_study(root / "test", 16, [("clean", 0.0), ("noise_sev2", 1.5)], n_folds=2, seed=1,
                                  prefix="test")
    return {"root": root, "cal": calibration, "test": test}


@pytest.fixture(scope="module")
def rated(studies):
    root, cal, test = studies["root"], studies["cal"], studies["test"]
    calibrator = root / "calibrator.json"
    folds = [a for f in cal["folds"] for a in ("-i", str(f))]
    assert main(["calibrate", *folds, "-ref", str(cal["labels"]), "-djfile", str(cal["dataset_json"]),
                 "-o", str(calibrator), "--alpha", "0.2", "--fnr-target", "0.1", "--temperature-scaling",
                 "--bands", "A=0.85,B=0.7,C=0", "--seed", "3"]) == 0
    output = root / "rated"
    folds = [a for f in test["folds"] for a in ("-i", str(f))]
    assert main(["rate", "-c", str(calibrator), *folds, "-djfile", str(test["dataset_json"]),
                 "-ref", str(test["labels"]), "-o", str(output), "--save-masks"]) == 0
    return calibrator, output


def test_calibrator_file(rated):
    data = json.loads(rated[0].read_text())
    assert data["alpha"] == 0.2 and data["n_members"] == 2
    assert data["feature_names"][-2:] == ["fold_dice_disagreement", "fold_std"]
    assert [b["name"] for b in data["bands"]] == ["A", "B", "C"]
    assert 0.3 < data["temperature"] < 5
    assert sorted(data["settings"]["cases"]["fit"] + data["settings"]["cases"]["conformal"]) == \
        [f"cal_{i:03d}" for i in range(30)]
    for label in ("organ", "tumour"):
        entry = data["labels"][label]
        assert entry["dice_bound"]["n_conformal"] == 15 and entry["dice_bound"]["quantile"] is not None
        assert entry["dice_bound"]["conformal_rank"] == 13  # ceil(16 * 0.8)
        assert 0 < entry["risk_control"]["lambda"] < 0.5 and entry["risk_control"]["feasible"]
        assert entry["calibration_coverage"] >= 0.8
        assert entry["ece"] >= 0 and len(entry["reliability"]["count"]) == 15


def test_ratings_coverage_and_report(rated, studies):
    _, output = rated
    ratings = pd.read_csv(output / "ratings.csv")
    assert len(ratings) == 16 * 2 * 2  # cases x conditions x labels
    for column in ("case", "condition", "expected_dice", "fold_std", "predicted_dice", "lower_bound", "rating",
                   "flagged", "case_rating", "dice", "bound_held", "safe_mask_fnr", "size_cost"):
        assert column in ratings
    assert ratings["lower_bound"].between(0, 1).all() and (ratings["lower_bound"] > 0).any()
    assert set(ratings["rating"]) <= {"A", "B", "C"}
    assert (ratings["flagged"] == (ratings["rating"] == "C")).all()
    # the corruption lowers Dice and the bounds follow it down
    means = ratings.groupby("condition")[["dice", "lower_bound"]].mean()
    assert means.loc["noise_sev2", "dice"] < means.loc["clean", "dice"]
    assert means.loc["noise_sev2", "lower_bound"] < means.loc["clean", "lower_bound"]
    coverage = pd.read_csv(output / "coverage.csv")
    assert set(coverage["condition"]) == {"clean", "noise_sev2"} and (coverage["n"] == 16).all()
    recomputed = ratings.groupby(["condition", "label"])["bound_held"].mean()
    for _, row in coverage.iterrows():
        assert row["coverage"] == pytest.approx(recomputed[(row["condition"], row["label"])])
    report = (output / "report.html").read_text()
    for text in ("Coverage of the Dice lower bound per condition", "noise_sev2", "exchangeable",
                 "Reliability diagrams", "Lower bound vs actual Dice", "Flagged cases", "data:image/png;base64"):
        assert text in report
    assert "<script" not in report and report.count("<img") >= 2
    summary = json.loads((output / "summary.json").read_text())
    assert len(summary["coverage"]) == 4 and "exchangeable" in summary["guarantee"]


def test_safe_masks_contain_prediction_and_match_reported_size(rated, studies):
    _, output = rated
    ratings = pd.read_csv(output / "ratings.csv")
    row = ratings[(ratings["condition"] == "noise_sev2") & (ratings["label"] == "tumour")].iloc[0]
    mask = sitk.GetArrayFromImage(sitk.ReadImage(row["safe_mask_file"]))
    ensemble = sitk.GetArrayFromImage(sitk.ReadImage(str(output / "ensemble" / "noise_sev2" / f"{row['case']}.nii.gz")))
    reference = sitk.ReadImage(str(studies["test"]["labels"] / f"{row['case']}.nii.gz"))
    assert mask.shape == ensemble.shape == sitk.GetArrayFromImage(reference).shape
    assert np.all(mask[ensemble == 2] == 1) and np.count_nonzero(mask) == row["safe_mask_voxels"]
    assert ImageSpacing(row["safe_mask_file"]) == pytest.approx(reference.GetSpacing())


def ImageSpacing(path: str) -> tuple[float, ...]:
    return sitk.ReadImage(path).GetSpacing()


def test_input_errors_name_the_file(rated, studies, tmp_path, capsys):
    calibrator, _ = rated
    test = studies["test"]
    broken = tmp_path / "fold0"
    shutil.copytree(test["folds"][0], broken)
    (broken / "clean" / "test_003.npz").unlink()
    args = ["rate", "-c", str(calibrator), "-i", str(broken), "-i", str(test["folds"][1]),
            "-djfile", str(test["dataset_json"]), "-o", str(tmp_path / "out")]
    assert main(args) == 2
    assert "test_003.npz: missing; predict with `nnunet-robust run --save-probabilities`" in capsys.readouterr().err
    assert main(["rate", "-c", str(calibrator), "-i", str(test["folds"][0]), "-djfile", str(test["dataset_json"]),
                 "-o", str(tmp_path / "out")]) == 2
    assert "fitted on 2 prediction folder(s)" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["rate", "-c", str(bad), "-i", str(test["folds"][0]), "-djfile", str(test["dataset_json"]),
                 "-o", str(tmp_path / "out")]) == 2
    assert "bad.json: not an nnunet-robust calibrator" in capsys.readouterr().err
    assert main(["calibrate", "-i", str(test["folds"][0]), "-ref", str(test["labels"]), "-djfile",
                 str(test["dataset_json"]), "-o", str(tmp_path / "c.json"), "--bands", "A=0.8,B=0.5"]) == 2
    assert "lowest band must start at 0" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


def test_rate_without_references_one_condition_and_own_bands(rated, studies, tmp_path):
    calibrator, _ = rated
    test = studies["test"]
    output = tmp_path / "plain"
    (output).mkdir()
    (output / "coverage.csv").write_text("stale")  # from an earlier run with references
    folds = [a for f in test["folds"] for a in ("-i", str(f))]
    assert main(["rate", "-c", str(calibrator), *folds, "-djfile", str(test["dataset_json"]), "-o", str(output),
                 "--condition", "noise_sev2", "--bands", "high=0.5,low=0"]) == 0
    ratings = pd.read_csv(output / "ratings.csv")
    assert set(ratings["condition"]) == {"noise_sev2"} and "dice" not in ratings
    assert set(ratings["rating"]) <= {"high", "low"} and (ratings["flagged"] == (ratings["rating"] == "low")).all()
    assert not (output / "coverage.csv").exists()
    assert "No reference labels given to rate" in (output / "report.html").read_text()


@pytest.mark.parametrize("verb", ["calibrate", "rate"])
def test_an_output_path_blocked_by_a_file_is_one_line_naming_it(verb, studies, rated, tmp_path, capsys):
    """(tests/test_bad_inputs.py holds the other verbs' rows; these two need probability files.)"""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    data = studies["cal"] if verb == "calibrate" else studies["test"]
    folds = [a for f in data["folds"] for a in ("-i", str(f))]
    common = ["-djfile", str(data["dataset_json"]), "-ref", str(data["labels"])]
    argv = (["calibrate", *folds, *common, "-o", str(blocker / "calibrator.json")] if verb == "calibrate"
            else ["rate", "-c", str(rated[0]), *folds, *common, "-o", str(blocker / "rated")])
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert [line for line in error.splitlines() if line.startswith("nnunet-robust: error:")] == [
        line for line in error.splitlines() if "a_file" in line and line.startswith("nnunet-robust: error:")]
    assert "a_file" in error and "Traceback" not in error


def test_too_few_calibration_cases_print_no_statement_instead_of_a_coverage(studies, tmp_path, capsys):
    """6 conformal cases cannot certify 1 - alpha = 0.9 (9 are needed): every bound is 0 and so "holds" for
    every case; the CLI must say so, as the HTML report does, not print "coverage 1.000"."""
    cal, test = studies["cal"], studies["test"]
    calibrator = tmp_path / "calibrator.json"
    folds = [a for f in cal["folds"] for a in ("-i", str(f))]
    assert main(["calibrate", *folds, "-ref", str(cal["labels"]), "-djfile", str(cal["dataset_json"]),
                 "-o", str(calibrator), "--alpha", "0.1", "--fit-fraction", "0.8"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("6 conformal cases, no statement possible") == 2  # organ and tumour
    assert "needs >= 9 conformal cases" in printed and "Q = inf" not in printed
    folds = [a for f in test["folds"] for a in ("-i", str(f))]
    assert main(["rate", "-c", str(calibrator), *folds, "-djfile", str(test["dataset_json"]),
                 "-ref", str(test["labels"]), "-o", str(tmp_path / "rated")]) == 0
    coverage_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("rate: coverage")]
    assert len(coverage_lines) == 4  # 2 conditions x 2 labels
    assert all("no statement possible" in line and "1.000" not in line for line in coverage_lines)
    # the bound really is 0 everywhere (what the words stand for), and the HTML says the same
    assert (pd.read_csv(tmp_path / "rated" / "ratings.csv")["lower_bound"] == 0).all()
    assert "no statement possible" in (tmp_path / "rated" / "report.html").read_text()

"""eval's before/after table: a model with a robust-training record against a baseline, seen vs unseen."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_robustness.analysis.robust_training import sentences
from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN
from nnunet_robustness.analysis.strata import ALL_CASES, STRATUM
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.records.training_record import RECORD_FILE, TrainingRecord
from tests.helpers.prediction_folders import write_study

CONDITIONS = (("clean", None, 0), ("noise_sev1", "noise", 1), ("noise_sev2", "noise", 2),
              ("blur_sev1", "blur", 1), ("blur_sev2", "blur", 2))


def test_record_round_trip_and_refusal(tmp_path):
    record = TrainingRecord("nnUNetTrainerCorruptionAug", {"corruption_augmentation": {"families": ["noise"]}})
    record.write(tmp_path)
    assert TrainingRecord.read_if_present(tmp_path) == record and record.seen_families == ("noise",)
    assert TrainingRecord.read_if_present(tmp_path / "elsewhere") is None
    (tmp_path / RECORD_FILE).write_text('{"families": []}')
    with pytest.raises(UserInputError, match="not a robust-training record"):
        TrainingRecord.read_if_present(tmp_path)


def test_before_after_separates_seen_from_unseen_and_states_the_clean_cost(tmp_path):
    from nnunet_robustness.evaluation import evaluate
    from nnunet_robustness.reports.eval_report import write_report

    folders = write_study(tmp_path, n_cases=8, conditions=CONDITIONS)
    # model A (degrades less in write_study) trained on noise; B is the baseline
    TrainingRecord("nnUNetTrainerCorruptionAug", {"corruption_augmentation": {"families": ["noise"]}}).write(
        tmp_path / "model_A")
    result = evaluate(folders, tmp_path / "labelsTs", tmp_path / "dataset.json", tmp_path / "eval",
                      n_bootstrap=200, progress=False, allow_weak_models=True)
    table = result.robust_training
    assert set(table["robust"]) == {"A"} and set(table["baseline"]) == {"B"}
    families = table[table["scope"] == "family"].set_index("name")
    assert families.loc["noise", "seen"] and not families.loc["blur", "seen"]
    # the verdict's own family comparisons, oriented robust - baseline
    verdict_rows = result.robustness_comparisons
    for family in ("noise", "blur"):
        row = verdict_rows[(verdict_rows["scope"] == "family") & (verdict_rows["name"] == family)
                           & (verdict_rows["metric"] == "dice") & (verdict_rows["label"] == FOREGROUND_MEAN)
                           & (verdict_rows[STRATUM] == ALL_CASES)].iloc[0]
        sign = 1 if row["model_a"] == "A" else -1
        assert families.loc[family, "mean_difference"] == pytest.approx(sign * row["mean_difference"])
        assert families.loc[family, "p_fdr"] == row["p_fdr"]
    pooled = table[table["scope"] == "pooled"].set_index("seen")
    assert pooled.loc[True, "mean_difference"] == pytest.approx(families.loc["noise", "mean_difference"])
    assert pooled.loc[False, "mean_difference"] == pytest.approx(families.loc["blur", "mean_difference"])
    clean = table[table["scope"] == "clean"].iloc[0]
    dice = result.per_case[(result.per_case["condition"] == "clean")].groupby(["model", "case"])["dice"].mean()
    assert clean["mean_difference"] == pytest.approx(float(np.mean(dice["A"] - dice["B"])))
    assert clean["ci_low"] <= clean["mean_difference"] <= clean["ci_high"]
    text = sentences(table)
    assert any(s.startswith("Clean cost: A") for s in text) and any("Seen families (noise)" in s for s in text)
    assert (tmp_path / "eval" / "robust_training.csv").is_file()
    html = write_report(result, tmp_path / "report.html").read_text()
    assert "Robust training: before and after" in html and "trained on noise" in html


def test_a_family_counts_as_seen_when_its_effect_group_was_trained_on(tmp_path):
    """Microscope defocus is a blur: after training on Gaussian blur it is seen; MR motion is not."""
    from nnunet_robustness.evaluation import evaluate
    from nnunet_robustness.reports.eval_report import write_report

    conditions = (("clean", None, 0), *((f"{family}_sev{k}", family, k) for family in ("gaussian_blur", "defocus_blur",
                                                                                         "motion") for k in (1, 2)))
    folders = write_study(tmp_path, n_cases=6, conditions=conditions)
    TrainingRecord("nnUNetTrainerCorruptionAug", {"corruption_augmentation": {"families": ["gaussian_blur"]}}).write(
        tmp_path / "model_A")
    result = evaluate(folders, tmp_path / "labelsTs", tmp_path / "dataset.json", n_bootstrap=50, progress=False,
                      allow_weak_models=True)
    families = result.robust_training[result.robust_training["scope"] == "family"].set_index("name")
    assert families.loc["defocus_blur", "seen"] and families.loc["gaussian_blur", "seen"]
    assert not families.loc["motion", "seen"]
    assert families.loc["defocus_blur", "group"] == "blur" and families.loc["motion", "group"] == "kspace"
    pooled = result.robust_training[result.robust_training["scope"] == "pooled"].set_index("seen")
    assert pooled.loc[True, "name"] == "seen families (defocus_blur, gaussian_blur)"
    assert pooled.loc[True, "group"] == "blur" and pooled.loc[False, "group"] == "kspace"
    html = write_report(result, tmp_path / "report.html").read_text()
    assert "effect group" in html and "defocus blur is seen after training on Gaussian blur" in html

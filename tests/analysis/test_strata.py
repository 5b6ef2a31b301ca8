"""Strata: a CSV or a make-dataset record splits the cases; eval judges each group on its own cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN
from nnunet_robustness.analysis.strata import ALL_CASES, STRATUM, resolve_strata
from nnunet_robustness.errors import UserInputError

CASES = [f"case_{i:03d}" for i in range(4)]


@pytest.mark.parametrize("text, message", [
    ("case,group\ncase_000,a\n", "columns 'case' and 'stratum'"),
    ("case,stratum\ncase_000,a\ncase_000,b\n", "listed twice"),
    ("case,stratum\ncase_000, \n", "empty stratum"),
    ("case,stratum\ncase_000,a\n", "no row for case"),
])
def test_bad_strata_files_are_refused_naming_the_file(tmp_path, text, message):
    path = tmp_path / "strata.csv"
    path.write_text(text)
    with pytest.raises(UserInputError, match=message) as error:
        resolve_strata(path, tmp_path / "dataset.json", CASES)
    assert "strata.csv" in str(error.value)


def test_make_dataset_records_give_the_levels_and_other_datasets_none(tmp_path):
    assert resolve_strata(None, tmp_path / "dataset.json", CASES) is None
    record = {"cases": [{"case": c, "split": "test", "alpha": 0.1 if i < 2 else 0.9} for i, c in enumerate(CASES)]
              + [{"case": "tr_0", "split": "train", "alpha": 0.5}]}
    (tmp_path / "textures_generation.json").write_text(json.dumps(record))
    assert resolve_strata(None, tmp_path / "dataset.json", CASES) == {
        "case_000": "alpha 0.1", "case_001": "alpha 0.1", "case_002": "alpha 0.9", "case_003": "alpha 0.9"}


def test_eval_judges_each_stratum_on_its_own_cases(study, tmp_path):
    from nnunet_robustness.evaluation import evaluate

    strata = tmp_path / "strata.csv"
    strata.write_text("case,stratum\n" + "".join(f"{c},{'first' if i < 2 else 'second'}\n"
                                                   for i, c in enumerate(CASES)))
    result = evaluate({"A": study["A"], "B": study["B"]}, study["reference"], study["dataset_json"], tmp_path / "out",
                      n_bootstrap=200, progress=False, strata_file=strata)
    assert list(result.strata_verdicts) == ["first", "second"]
    assert set(result.per_case[STRATUM]) == {"first", "second"}
    comparisons = result.robustness_comparisons
    for name, size in (("first", 2), ("second", 2), (ALL_CASES, 4)):
        rows = comparisons[comparisons[STRATUM] == name]
        assert len(rows) and (rows["n"] == size).all() and rows["p_fdr"].notna().all()
    # a stratum's mean is the mean over its own cases' foreground means
    per_case = result.per_case
    first = per_case[(per_case[STRATUM] == "first") & (per_case["model"] == "A") & (per_case["condition"] == "clean")]
    expected = first.groupby("case")["dice"].mean().mean()
    stats = result.strata_statistics
    row = stats[(stats[STRATUM] == "first") & (stats["model"] == "A") & (stats["condition"] == "clean")
                & (stats["metric"] == "dice") & (stats["label"] == FOREGROUND_MEAN)]
    assert np.isclose(row["mean"].iloc[0], expected)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["settings"]["strata"]["cases"] == {"first": 2, "second": 2}
    assert set(summary["strata"]["verdicts"]) == {"first", "second"}
    from nnunet_robustness.evaluation import write_report

    html = write_report(result, tmp_path / "report.html").read_text()
    assert "Strata and subgroups" in html and "second (2 cases)" in html

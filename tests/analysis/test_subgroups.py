"""Subgroups from case metadata (eval --metadata --by): a grouping per column, judged like strata, with the
group sizes and a warning for small groups; the metadata file is refused loudly, naming it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnunet_robustness.analysis.strata import STRATUM, parse_by, resolve_subgroups
from nnunet_robustness.conditions import Condition
from nnunet_robustness.errors import UserInputError
from tests.helpers.prediction_folders import SPACING, degrade, reference_case, write_dataset_json, write_label, write_manifest

CASES = [f"case_{i:03d}" for i in range(4)]


@pytest.mark.parametrize("text, by, message", [
    ("id,scanner\ncase_000,A\n", "scanner", "columns 'case' and 'scanner'"),
    ("case,scanner\n" + "".join(f"{c},A\n" for c in CASES), "scanner,sex", "columns 'case', 'scanner' and 'sex'"),
    ("case,scanner\n" + "".join(f"{c},A\n" for c in CASES[:3]), "scanner", "no row for case(s) case_003"),
    ("case,scanner\n" + "".join(f"{c},{'' if c == 'case_002' else 'A'}\n" for c in CASES), "scanner",
     "case 'case_002' has an empty scanner"),
    ("case,scanner\ncase_000,A\ncase_000,B\n", "scanner", "listed twice"),
    ("case,scanner,sex\n", "", "name the columns to group the cases by with --by (the file's columns: scanner, sex)"),
])
def test_bad_metadata_is_refused_naming_the_file(tmp_path, text, by, message):
    path = tmp_path / "cases.csv"
    path.write_text(text)
    with pytest.raises(UserInputError) as error:
        resolve_subgroups(path, parse_by(by) if by else [], CASES)
    assert message in str(error.value) and f"--metadata {path}" in str(error.value)


def test_by_needs_metadata_and_names_real_columns():
    with pytest.raises(UserInputError, match="needs --metadata"):
        resolve_subgroups(None, ["scanner"], CASES)
    for bad in ("scanner,", "case"):
        with pytest.raises(UserInputError, match="--by"):
            parse_by(bad)
    assert parse_by(" scanner , sex,scanner") == ["scanner", "sex"]
    assert resolve_subgroups(None, [], CASES) == {}


def _write_scanner_study(root, n_per_scanner=12):
    """The known truth: model A falls under noise on the old scanner's cases only (2 voxels per severity) and
    not at all on the new scanner's; model B falls by one voxel everywhere. Clean is perfect for both. ``sex``
    is unrelated to the degradation, with a small group (6 cases)."""
    rng = np.random.default_rng(3)
    cases = [f"case_{i:03d}" for i in range(2 * n_per_scanner)]
    scanner = {c: "old" if i % 2 else "new" for i, c in enumerate(cases)}
    sex = {c: "M" if i < 6 else "F" for i, c in enumerate(cases)}
    references = {c: reference_case(rng) for c in cases}
    for case, label in references.items():
        write_label(root / "labelsTs" / f"{case}.nii.gz", label, SPACING)
    write_dataset_json(root / "dataset.json", {"background": 0, "organ": 1, "tumour": 2})
    conditions = [Condition("clean", None, 0), Condition("noise_sev1", "noise", 1), Condition("noise_sev2", "noise", 2)]
    strength = {"A": lambda case, severity: 2 * severity if scanner[case] == "old" else 0,
                "B": lambda case, severity: 1 if severity else 0}
    folders = {}
    for model, rule in strength.items():
        folder = root / f"pred_{model}"
        for condition in conditions:
            for case in cases:
                write_label(folder / condition.name / f"{case}.nii.gz",
                            degrade(references[case], rng, rule(case, condition.severity)), SPACING)
        write_manifest(folder, conditions, cases, model)
        folders[model] = folder
    metadata = root / "cases.csv"
    # extra rows (cases not evaluated) and columns not grouped by are allowed: metadata of a whole cohort
    metadata.write_text("case,scanner,sex,age\n" + "".join(f"{c},{scanner[c]},{sex[c]},{50 + i}\n"
                                                           for i, c in enumerate(cases)) + "case_999,old,F,70\n")
    return folders, metadata


def test_subgroups_built_with_different_degradation_are_found(tmp_path):
    from nnunet_robustness.evaluation import evaluate, write_report

    folders, metadata = _write_scanner_study(tmp_path)
    result = evaluate(folders, tmp_path / "labelsTs", tmp_path / "dataset.json", tmp_path / "out", n_bootstrap=300,
                      progress=False, metadata_file=metadata, by="scanner,sex", command="nnunet-robust eval ...")
    # degradation by group: A falls on the old scanner (interval above 0.1 Dice) and not on the new one
    drops = result.strata_degradation
    dice = drops[(drops["metric"] == "dice") & (drops["model"] == "A") & (drops["condition"] == "noise_sev2")]
    old, new = (dice[dice[STRATUM] == f"scanner={s}"].iloc[0] for s in ("old", "new"))
    assert old["absolute_ci_low"] > 0.1 and old["absolute"] > old["absolute_ci_low"]
    assert new["absolute"] == 0 and new["absolute_ci_high"] == 0
    # the verdict per group finds the reversal the pooled verdict averages over
    verdicts = result.strata_verdicts
    assert any(s.startswith("noise: B is more robust than A") for s in verdicts["scanner=old"]), verdicts["scanner=old"]
    assert any(s.startswith("noise: A is more robust than B") for s in verdicts["scanner=new"]), verdicts["scanner=new"]
    # every group's comparisons are in the one FDR family (adjusted together with the pooled ones)
    comparisons = result.robustness_comparisons
    assert set(comparisons[STRATUM]) == {"", "scanner=new", "scanner=old", "sex=F", "sex=M"}
    assert comparisons["p_fdr"].notna().all() and (comparisons["p_fdr"] >= comparisons["p_value"] - 1e-12).all()
    assert result.settings["fdr_tests"] >= len(comparisons)
    # sizes and the small-group warning
    assert verdicts["sex=M"][0].startswith("sex=M: only 6 cases (fewer than 10)")
    assert not any("fewer than" in s for name in ("scanner=old", "scanner=new", "sex=F") for s in verdicts[name])
    per_case = result.per_case
    assert set(per_case.loc[per_case["case"] == "case_001", STRATUM]) == {"scanner=old; sex=M"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    record = summary["settings"]["strata"]
    assert record["groupings"] == {"scanner": ["scanner=new", "scanner=old"], "sex": ["sex=F", "sex=M"]}
    assert record["cases"] == {"scanner=new": 12, "scanner=old": 12, "sex=F": 18, "sex=M": 6}
    assert record["by"] == ["scanner", "sex"] and record["source"] is None
    assert summary["settings"]["command"] == "nnunet-robust eval ..."
    assert {r[STRATUM] for r in summary["strata"]["degradation"]} == set(record["cases"])
    html = write_report(result, tmp_path / "report.html").read_text()
    assert "Strata and subgroups" in html and "Dice degradation by scanner" in html and "small (&lt; 10)" in html


def test_eval_refuses_a_bad_by_column_before_computing_metrics(study, tmp_path, capsys):
    from nnunet_robustness.cli import main

    metadata = tmp_path / "cases.csv"
    metadata.write_text("case,scanner\n" + "".join(f"{c},A\n" for c in CASES))
    status = main(["eval", "--model", f"A={study['A']}", "-ref", str(study["reference"]), "-djfile",
                   str(study["dataset_json"]), "-o", str(tmp_path / "out"), "--metadata", str(metadata),
                   "--by", "scanner,site"])
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1 and str(metadata) in error and "'site'" in error
    assert not (tmp_path / "out" / "summary.json").exists()

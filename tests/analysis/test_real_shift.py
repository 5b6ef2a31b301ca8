"""Real shift (issue #34): a shifted test set next to the synthetic conditions, and which synthetic condition
predicts it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_robustness.analysis.real_shift import benchmark_agreement, read_shift_sets, shift_sentences, shift_summary
from nnunet_robustness.analysis.robustness import per_case_degradation
from nnunet_robustness.cli import main
from nnunet_robustness.errors import UserInputError

LABEL = "foreground_mean"


def _synthetic(n_models: int = 6, n_clean: int = 30, n_shift: int = 25, seed: int = 0):
    """Models with their own sensitivity to ghosting and (independently) to noise; the real shift is
    ghosting-like: each model loses on it what its ghosting sensitivity says."""
    rng = np.random.default_rng(seed)
    ghost = rng.uniform(0.02, 0.3, n_models)
    noise = rng.permutation(ghost) + rng.uniform(-0.02, 0.02, n_models)  # same spread, unrelated order
    base = rng.uniform(0.75, 0.9, n_clean)
    rows, shifted = [], []
    for m in range(n_models):
        for condition, loss in (("clean", 0.0), ("ghosting_sev3", ghost[m]), ("gaussian_noise_sev3", noise[m])):
            values = base - loss + (rng.normal(0, 0.01, n_clean) if loss else 0.0)
            rows += [{"model": f"M{m}", "condition": condition, "label": LABEL, "case": f"c{i}", "dice": v,
                      "nsd": v, "hd95_mm": 1 - v} for i, v in enumerate(values)]
        other = rng.uniform(0.75, 0.9, n_shift) - ghost[m] + rng.normal(0, 0.01, n_shift)
        shifted += [{"shift": "siteB", "model": f"M{m}", "case": f"s{i}", "dice": v} for i, v in enumerate(other)]
    table = pd.DataFrame(rows)
    conditions = pd.DataFrame([{"condition": "clean", "family": None, "severity": 0.0},
                               {"condition": "ghosting_sev3", "family": "ghosting", "severity": 3.0},
                               {"condition": "gaussian_noise_sev3", "family": "gaussian_noise", "severity": 3.0}])
    return table, conditions, pd.DataFrame(shifted), [f"M{m}" for m in range(n_models)]


def test_a_shift_made_by_one_family_is_predicted_best_by_that_family():
    table, conditions, shifted, models = _synthetic()
    degradation = per_case_degradation(table, conditions, "clean")
    clean = table[table["condition"] == "clean"][["model", "case", "dice"]]
    agreement = benchmark_agreement(shifted, clean, degradation, models, seed=0, n_bootstrap=300)
    best = agreement.iloc[0]
    assert best["name"] == "ghosting_sev3" and best["kendall_tau"] > 0.8 and best["tau_ci_low"] > 0.3
    noise = agreement.set_index("name").loc["gaussian_noise_sev3"]
    assert noise["kendall_tau"] < best["kendall_tau"] and noise["pearson"] < best["pearson"]
    summary = shift_summary(shifted, clean, seed=0, n_bootstrap=200)
    assert (summary["degradation_ci_low"] > 0).sum() >= 4  # most models lose on the shifted set
    sentences = shift_sentences(summary, agreement)
    assert sentences[1].startswith("ghosting_sev3 ranks the models like siteB does (Kendall tau")


def test_shift_file_errors_name_the_file(tmp_path: Path):
    path = tmp_path / "shift.json"
    path.write_text(json.dumps({"siteB": {"reference": "missing", "predictions": {"A": "a"}}}))
    with pytest.raises(UserInputError, match=r"shift.json: shift 'siteB': reference folder .* does not exist"):
        read_shift_sets(path, ["A"])
    (tmp_path / "labels").mkdir()
    path.write_text(json.dumps({"siteB": {"reference": "labels", "predictions": {"A": "a"}}}))
    with pytest.raises(UserInputError, match="missing: B"):
        read_shift_sets(path, ["A", "B"])
    path.write_text(json.dumps(["x"]))
    with pytest.raises(UserInputError, match="shift.json: expected"):
        read_shift_sets(path, ["A"])


def test_eval_with_a_shifted_set_end_to_end(tmp_path: Path):
    from tests.helpers.prediction_folders import write_study

    folders = write_study(tmp_path / "main", n_cases=6, models=("A", "B"))
    shifted = write_study(tmp_path / "siteB", n_cases=5, models=("A", "B"), seed=3,
                          conditions=(("clean", None, 2),))  # other cases, both models worse
    config = tmp_path / "shift.yaml"
    config.write_text(f"siteB:\n  reference: {tmp_path / 'siteB' / 'labelsTs'}\n  predictions:\n"
                      f"    A: {shifted['A']}\n    B: {shifted['B']}\n")
    out = tmp_path / "eval"
    assert main(["eval", "--model", f"A={folders['A']}", "--model", f"B={folders['B']}",
                 "-ref", str(tmp_path / "main" / "labelsTs"), "-djfile", str(tmp_path / "main" / "dataset.json"),
                 "-o", str(out), "--n-bootstrap", "100", "-np", "1", "--shift", str(config)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {r["model"] for r in summary["real_shift"]} == {"A", "B"}
    assert all(r["degradation"] > 0 for r in summary["real_shift"])
    assert any(r["scope"] == "shift" and r["name"] == "siteB" for r in summary["robustness_comparisons"])
    assert (out / "real_shift.csv").is_file() and (out / "shift_agreement.csv").is_file()
    report = (out / "report.html").read_text()
    assert "Real shift: does the synthetic benchmark predict it?" in report and "real: siteB" in report
    # the robustness card carries it, valid against its schema
    import jsonschema

    from nnunet_robustness.analysis.card import card_files, schema

    assert main(["card", str(out), "-o", str(tmp_path / "cards")]) == 0
    card = json.loads(card_files(tmp_path / "cards", "A")["json"].read_text())
    jsonschema.Draft202012Validator(schema()).validate(card)
    (shift,) = card["real_shift"]
    assert shift["shift"] == "siteB" and shift["cases"] == 5 and shift["degradation"] > 0
    assert "Real shift (other sites or scanners)" in card_files(tmp_path / "cards", "A")["md"].read_text()

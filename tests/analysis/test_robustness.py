"""Which model is more robust: paired comparisons on two axes (drop, score under the condition), FDR, the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnunet_robustness.analysis.robustness import (
    benjamini_hochberg,
    compare_models,
    hodges_lehmann,
    per_case_degradation,
    wilcoxon_p_floor,
)
from nnunet_robustness.analysis.verdict import verdict

LABEL = "foreground_mean"
SEVERITIES = (1, 3, 5)


def _study(drops: dict[str, float], n_cases: int = 12, seed: int = 0, noise: float = 0.02) -> tuple:
    """Per-case Dice of models under clean and noise_sev1/3/5: model m loses ``drops[m] * severity / 5``
    (plus case noise) from a clean Dice shared by all models."""
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0.75, 0.95, n_cases)
    rows = []
    for model, drop in drops.items():
        for severity in (0, *SEVERITIES):
            condition = "clean" if severity == 0 else f"noise_sev{severity}"
            dice = clean - drop * severity / 5 + (rng.normal(0, noise, n_cases) if severity else 0)
            for case, value in enumerate(dice):
                rows.append({"model": model, "condition": condition, "label": LABEL, "case": f"c{case}",
                             "dice": value, "nsd": value, "hd95_mm": 10 * (1 - value)})
    conditions = pd.DataFrame([{"condition": "clean", "family": None, "severity": 0.0}]
                              + [{"condition": f"noise_sev{s}", "family": "noise", "severity": float(s)}
                                 for s in SEVERITIES])
    return pd.DataFrame(rows), conditions


def _compare(drops, **kwargs):
    table, conditions = _study(drops, **kwargs)
    degradation = per_case_degradation(table, conditions, "clean")
    return compare_models(degradation, list(drops), seed=0, n_bootstrap=500)


def test_identical_models_show_no_detectable_difference():
    table, conditions = _study({"A": 0.2})
    twin = table.assign(model="B")
    comparisons = compare_models(per_case_degradation(pd.concat([table, twin]), conditions, "clean"),
                                      ["A", "B"], seed=0, n_bootstrap=500)
    sentences = verdict(comparisons, ["A", "B"], LABEL)
    assert sentences[0].startswith("Each model is one training run")
    assert "no model is more robust under any of them" in sentences[1] and "1 no detectable difference" in sentences[1]
    # the detectable size is stated for the family
    assert any(s.startswith("No detectable difference in Dice drop between A and B under noise (0.") for s in sentences)


def test_the_model_that_degrades_more_is_named_correctly():
    comparisons = _compare({"A": 0.05, "B": 0.30})
    sentences = verdict(comparisons, ["A", "B"], LABEL)
    assert sentences[1].startswith("Overall (Dice, 1 family/condition judged") and \
        "A is more robust under 1 (noise)" in sentences[1]
    assert any(s.startswith("noise: A is more robust than B: its Dice falls") for s in sentences)
    drop = comparisons[(comparisons["axis"] == "drop") & (comparisons["metric"] == "dice")]
    family = drop[drop["scope"] == "family"].iloc[0]
    # the degradation difference, not the score difference: both start from the same clean Dice
    assert family["mean_difference"] < 0 and family["ci_high"] < 0
    # the same comparison through a distance metric (lower is better) points the same way
    hd = comparisons[(comparisons["scope"] == "family") & (comparisons["metric"] == "hd95_mm")
                     & (comparisons["axis"] == "drop")].iloc[0]
    assert hd["mean_difference"] < 0


def test_a_better_clean_model_is_not_called_more_robust():
    """A scores higher everywhere but loses as much as B: equal robustness."""
    table, conditions = _study({"A": 0.2, "B": 0.2}, noise=0.0)
    table.loc[table["model"] == "A", "dice"] += 0.05
    comparisons = compare_models(per_case_degradation(table, conditions, "clean"), ["A", "B"], seed=0,
                                      n_bootstrap=200)
    dice = comparisons[(comparisons["metric"] == "dice") & (comparisons["axis"] == "drop")]
    assert np.allclose(dice["mean_difference"], 0)
    sentences = verdict(comparisons, ["A", "B"], LABEL)
    assert "more robust" not in " ".join(sentences[2:])
    # the score axis sees A's head start, and the verdict says it is not robustness
    assert any(s.startswith("noise: no detectable difference between A and B in how far Dice falls") and "A scores higher" in s
               for s in sentences), sentences


def test_effect_sizes_and_p_floor():
    d = np.array([0.3, -0.1, 0.2, 0.4])
    walsh = [(d[i] + d[j]) / 2 for i in range(4) for j in range(i, 4)]
    assert hodges_lehmann(d) == pytest.approx(np.median(walsh))
    assert wilcoxon_p_floor(8) == pytest.approx(1 / 128)  # the 8 cases: no p below 0.0078
    comparisons = _compare({"A": 0.05, "B": 0.3}, n_cases=8)
    comparisons = comparisons[comparisons["axis"] == "drop"]
    assert np.allclose(comparisons["p_floor"], 1 / 128)
    assert (comparisons["p_value"] >= comparisons["p_floor"] - 1e-12).all()


def test_benjamini_hochberg_equals_a_reference_computation():
    p = np.array([0.01, 0.04, 0.03, 0.20, np.nan, 0.001])
    defined = p[~np.isnan(p)]
    order = np.argsort(defined)
    m = len(defined)
    ranked = defined[order] * m / np.arange(1, m + 1)
    reference = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1)
    expected = np.empty(m)
    expected[order] = reference
    adjusted = benjamini_hochberg(p)
    assert np.isnan(adjusted[4])
    np.testing.assert_allclose(adjusted[~np.isnan(p)], expected)


def test_identical_data_in_two_conditions_gives_identical_intervals():
    table, conditions = _study({"A": 0.1, "B": 0.2})
    copy = table[table["condition"] == "noise_sev3"].assign(condition="noise_copy")
    conditions = pd.concat([conditions, pd.DataFrame([{"condition": "noise_copy", "family": "other",
                                                       "severity": 3.0}])])
    comparisons = compare_models(per_case_degradation(pd.concat([table, copy]), conditions, "clean"),
                                      ["A", "B"], seed=3, n_bootstrap=300)
    rows = comparisons[(comparisons["scope"] == "condition") & (comparisons["metric"] == "dice")
                       & (comparisons["axis"] == "drop")].set_index("name")
    assert rows.loc["noise_sev3", ["ci_low", "ci_high"]].tolist() == rows.loc["noise_copy", ["ci_low", "ci_high"]].tolist()


def test_clean_only_evaluation_has_nothing_to_compare():
    """A study that predicts clean images only (string-typed columns, as read from parquet) degrades nothing."""
    table, conditions = _study({"A": 0.1, "B": 0.2})
    clean = table[table["condition"] == "clean"].astype({"metric": "string"} if "metric" in table else {})
    clean = clean.astype({"model": "string[pyarrow]", "condition": "string[pyarrow]"})
    degradation = per_case_degradation(clean, conditions, "clean")
    assert degradation.empty
    comparisons = compare_models(degradation, ["A", "B"])
    assert comparisons.empty
    assert "No condition besides clean" in verdict(comparisons, ["A", "B"], LABEL)[1]


def test_report_fdr_is_one_family_over_the_comparisons_and_the_shown_score_tests():
    from nnunet_robustness.analysis.robustness import report_fdr

    comparisons = pd.DataFrame({"p_value": [0.001, 0.04, 0.2]})
    pairwise = pd.DataFrame({"label": [LABEL, LABEL, "organ"], "metric": ["dice", "nsd", "dice"],
                             "p_value": [0.01, 0.001, 0.001]})
    assert report_fdr(comparisons, pairwise, LABEL) == 4
    # reference: BH by hand over the four shown tests, p sorted 0.001, 0.01, 0.04, 0.2 -> p * 4 / rank, monotone
    expected = {0.001: 0.004, 0.01: 0.02, 0.04: 0.04 * 4 / 3, 0.2: 0.2}
    assert comparisons["p_fdr"].tolist() == pytest.approx([expected[0.001], expected[0.04], expected[0.2]])
    assert pairwise["p_fdr"].iloc[0] == pytest.approx(expected[0.01])
    assert pairwise["p_fdr"].iloc[1:].isna().all()  # not shown in the report: not in the family

"""Robustness statistics on hand-made per-case tables, where the right answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from nnunet_robustness.analysis.statistics import (
    ALL_CONDITIONS,
    best_model_shares,
    bootstrap_statistics,
    degradation,
    holm,
    pairwise_tests,
    severity_curves,
    summary_statistics,
)
from nnunet_robustness.metrics.masks import METRICS


def _table(values: dict[tuple[str, str], list[float]], label: str = "organ") -> pd.DataFrame:
    """Per-case table with every metric set from ``values[(model, condition)]`` (one value per case):
    Dice-like metrics = v, distances = 10 * (1 - v)."""
    rows = []
    for (model, condition), per_case in values.items():
        for index, value in enumerate(per_case):
            row = {"model": model, "condition": condition, "case": f"c{index}", "label": label}
            for name, metric in METRICS.items():
                row[name] = value if metric.higher_is_better in (True, None) else 10 * (1 - value)
            rows.append(row)
    return pd.DataFrame(rows)


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    values = np.random.default_rng(0).normal(0.8, 0.1, size=(30, 2))
    first = bootstrap_statistics(values, np.random.default_rng(5), 500)
    again = bootstrap_statistics(values, np.random.default_rng(5), 500)
    other = bootstrap_statistics(values, np.random.default_rng(6), 500)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["mean_ci_low"], other["mean_ci_low"])
    assert np.all(first["mean_ci_low"] < first["mean"]) and np.all(first["mean"] < first["mean_ci_high"])
    assert np.all(first["median_ci_low"] <= first["median"]) and np.all(first["median"] <= first["median_ci_high"])
    # A normal-theory interval has about the same width (n = 30).
    width = first["mean_ci_high"] - first["mean_ci_low"]
    expected = 2 * 1.96 * values.std(axis=0, ddof=1) / math.sqrt(30)
    np.testing.assert_allclose(width, expected, rtol=0.25)


def test_bootstrap_of_constant_and_undefined_values() -> None:
    values = np.array([[0.5, math.nan], [0.5, 2.0], [0.5, 4.0]])
    stats = bootstrap_statistics(values, np.random.default_rng(0), 200)
    assert stats["mean_ci_low"][0] == stats["mean_ci_high"][0] == 0.5
    assert stats["n"].tolist() == [3, 2]  # the undefined value is left out, and counted as such
    assert stats["mean"][1] == 3.0


def test_summary_statistics_do_not_depend_on_other_groups() -> None:
    alone = summary_statistics(_table({("A", "clean"): [0.9, 0.8, 0.85, 0.7]}), seed=3, n_bootstrap=100)
    together = summary_statistics(_table({("B", "x"): [0.1, 0.2, 0.3, 0.4], ("A", "clean"): [0.9, 0.8, 0.85, 0.7]}),
                                  seed=3, n_bootstrap=100)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True),
                                  together[together["model"] == "A"].reset_index(drop=True))


def test_holm_step_down() -> None:
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.4]), [0.8, 0.8])
    adjusted = holm([0.2, math.nan, 0.001])
    assert math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.002) and adjusted[0] == pytest.approx(0.2)


def test_pairwise_tests_equal_scipy_and_are_holm_adjusted() -> None:
    rng = np.random.default_rng(1)
    a, b, c = (rng.uniform(0.6, 0.9, 12) for _ in range(3))
    table = _table({("A", "clean"): list(a), ("B", "clean"): list(b + 0.05), ("C", "clean"): list(a)})
    tests = pairwise_tests(table, ["A", "B", "C"])
    dice = tests[tests["metric"] == "dice"].set_index(["model_a", "model_b"])
    assert dice.loc[("A", "B"), "p_value"] == pytest.approx(wilcoxon(a, b + 0.05).pvalue)
    assert dice.loc[("A", "C"), "p_value"] == 1.0  # identical predictions: no difference observed
    np.testing.assert_allclose(dice["p_holm"], holm(dice["p_value"].to_numpy()))
    assert dice.loc[("A", "B"), "mean_difference"] == pytest.approx(np.mean(a - b - 0.05))


def test_best_model_shares_split_ties() -> None:
    table = _table({("A", "clean"): [0.9, 0.5, 0.7], ("B", "clean"): [0.8, 0.6, 0.7],
                    ("A", "noise"): [0.9, 0.9, 0.9], ("B", "noise"): [0.1, 0.1, 0.1]})
    shares = best_model_shares(table, ["A", "B"])
    dice = shares[shares["metric"] == "dice"].set_index(["condition", "model"])["best_share"]
    assert dice[("clean", "A")] == pytest.approx(1.5 / 3) and dice[("clean", "B")] == pytest.approx(1.5 / 3)
    assert dice[(ALL_CONDITIONS, "A")] == pytest.approx(4.5 / 6)
    # Lower is better for distances: the same winner.
    hd = shares[shares["metric"] == "hd95_mm"].set_index(["condition", "model"])["best_share"]
    assert hd[("noise", "A")] == 1.0
    assert shares.groupby(["condition", "label", "metric"])["best_share"].sum().round(12).eq(1).all()


def test_degradation_is_positive_when_worse() -> None:
    table = _table({("A", "clean"): [0.9, 0.8], ("A", "blur_sev1"): [0.6, 0.6]})
    rows = degradation(table, "clean", seed=0, n_bootstrap=50).set_index("metric")
    assert rows.loc["dice", "absolute"] == pytest.approx(0.25)
    assert rows.loc["dice", "relative"] == pytest.approx(0.25 / 0.85)
    assert rows.loc["hd95_mm", "absolute"] == pytest.approx(2.5)  # distances grow from 1.5 to 4 mm
    assert "rel_volume_difference" not in rows.index  # no better/worse direction
    assert degradation(table, None, seed=0, n_bootstrap=50).empty


def test_severity_curve_area_and_variation() -> None:
    table = _table({("A", "clean"): [1.0, 1.0], ("A", "blur_sev1"): [0.8, 0.8], ("A", "blur_sev2"): [0.6, 0.6],
                    ("A", "odd"): [0.1, 0.1]})
    statistics = summary_statistics(table, seed=0, n_bootstrap=20)
    conditions = pd.DataFrame({"condition": ["clean", "blur_sev1", "blur_sev2", "odd"],
                               "family": [None, "blur", "blur", None], "severity": [0.0, 1.0, 2.0, None]})
    curves = severity_curves(statistics, conditions, "clean")
    dice = curves[curves["metric"] == "dice"].iloc[0]
    assert dice["family"] == "blur" and dice["severities"] == [0.0, 1.0, 2.0]
    assert dice["auc"] == pytest.approx((0.9 + 0.7) / 2)
    assert dice["cv"] == pytest.approx(np.std([1.0, 0.8, 0.6]) / 0.8)
    assert set(curves["family"]) == {"blur"}  # conditions without a family/severity have no curve


def test_identical_per_case_data_gives_identical_intervals_in_every_condition():
    """One stream of case resamples for every group: the same data cannot get two different intervals."""
    import pandas as pd

    from nnunet_robustness.analysis.statistics import add_foreground_mean, degradation, summary_statistics

    rng = np.random.default_rng(0)
    values = rng.uniform(0.5, 0.9, 12)
    rows = [{"model": "A", "condition": condition, "case": f"c{i}", "label": "organ",
             **{m: (v if condition == "clean" else v - 0.1) for m in METRICS}}
            for condition in ("clean", "noise_sev1", "blur_sev1") for i, v in enumerate(values)]
    table = add_foreground_mean(pd.DataFrame(rows))
    stats = summary_statistics(table, seed=3, n_bootstrap=200).set_index(["condition", "label", "metric"])
    for column in ("mean_ci_low", "mean_ci_high", "median_ci_low", "median_ci_high"):
        assert stats.loc[("noise_sev1", "organ", "dice"), column] == stats.loc[("blur_sev1", "organ", "dice"), column]
    change = degradation(table, "clean", seed=3, n_bootstrap=200).set_index(["condition", "label", "metric"])
    assert (change.loc[("noise_sev1", "organ", "dice"), ["absolute_ci_low", "absolute_ci_high"]].tolist()
            == change.loc[("blur_sev1", "organ", "dice"), ["absolute_ci_low", "absolute_ci_high"]].tolist())

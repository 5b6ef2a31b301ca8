"""Which model is more robust: paired comparisons of models on two axes, per condition and family.

A model that starts lower has less to lose, so robustness is judged on two axes together (issue #28):

- the **drop**: per case, ``sign * (clean - condition)`` (positive = worse; the sign flips for
  distances); per family, the per-case area under the drop-vs-severity curve (clean = severity 0 = no
  drop; trapezoid divided by the severity range: the average drop over the range, in the metric's unit);
- the **score under the condition**: per case, the metric under the condition; per family, its mean over
  the family's severities; and the clean score, whose gap explains a drop difference when the scores
  under the condition are the same.

Every pair of models is compared on the paired per-case differences ``A - B`` of each axis: mean,
median and Hodges-Lehmann estimate (the estimate of the signed-rank test); the 95 % interval of the
mean that covered on Dice-like data in simulation (``analysis.intervals.mean_interval``: t united with
the studentized bootstrap) and its 90 % twin for equivalence; a two-sided Wilcoxon signed-rank test with
its direction (the sign of R+ - R-) and its smallest attainable p-value; the standard deviation of the
differences and the smallest mean difference this n and spread detect with 80 % power.
With several training runs per model (``runs``), the interval and the test come from the two-level
bootstrap over runs and cases (``analysis.intervals.two_level``) and the median/Hodges-Lehmann from the
run-averaged per-case differences. Benjamini-Hochberg FDR runs over every test the report shows.

A row is **detected** when its FDR-adjusted p < 0.05, its interval excludes 0, and the mean, the
Hodges-Lehmann estimate and the test point the same way. ``analysis.verdict`` turns rows into sentences.
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.analysis import intervals
from nnunet_robustness.metrics.masks import METRICS

CONFIDENCE = intervals.CONFIDENCE
FDR_LEVEL = 0.05
SMALL_SAMPLE = 30  # below this many cases the report says that intervals are rough
VERDICT_METRIC = "dice"
COMPARISON_METRICS = ("dice", "nsd", "hd95_mm")
DROP, SCORE = "drop", "score"  # the two axes of a comparison
FAMILY, CONDITION, CLEAN = "family", "condition", "clean"  # scopes: graded family (area), one condition, clean
COMPARISON_COLUMNS = ["scope", "name", "family", "axis", "label", "metric", "model_a", "model_b", "runs_a", "runs_b", "n",
                      "value_a", "value_b", "mean_difference", "median_difference", "hodges_lehmann", "ci_low",
                      "ci_high", "ci90_low", "ci90_high", "sd", "detectable", "test", "statistic", "direction",
                      "p_value", "p_floor", "p_fdr"]


def per_case_degradation(table: pd.DataFrame, conditions: pd.DataFrame, clean: str | None,
                         metrics: Sequence[str] = COMPARISON_METRICS) -> pd.DataFrame:
    """Long table: model, condition, family, severity, label, case, metric, clean, value, degradation
    (``value`` = the metric under the condition, ``degradation`` positive = worse)."""
    columns = ["model", "condition", "family", "severity", "label", "case", "metric", "clean", "value", "degradation"]
    if clean is None:
        return pd.DataFrame(columns=columns)
    long = table.melt(id_vars=["model", "condition", "label", "case"], value_vars=list(metrics),
                      var_name="metric", value_name="value")
    reference = long[long["condition"] == clean].drop(columns="condition").rename(columns={"value": "clean"})
    merged = long[long["condition"] != clean].merge(reference, on=["model", "label", "case", "metric"])
    if not len(merged):  # clean only: nothing degrades
        return pd.DataFrame(columns=columns)
    sign = merged["metric"].map({m: 1.0 if METRICS[m].higher_is_better else -1.0 for m in metrics}).astype(float)
    merged["degradation"] = sign * (merged["clean"] - merged["value"])
    info = conditions.drop_duplicates("condition")[["condition", "family", "severity"]]
    return merged.merge(info, on="condition", how="left")[columns]


def family_area(degradation: pd.DataFrame) -> pd.DataFrame:
    """Per model x family x label x case x metric, for families graded at two or more severities: ``area``,
    the area under drop vs severity (clean = 0 at severity 0) over the severity range, and ``score``, the
    metric's mean over the family's severities."""
    columns = ["model", "family", "label", "case", "metric", "area", "score"]
    graded = degradation.dropna(subset=["family", "severity"])
    if not len(graded):
        return pd.DataFrame(columns=columns)
    counts = graded.groupby("family")["severity"].nunique()
    graded = graded[graded["family"].isin(counts[counts >= 2].index)].sort_values("severity")
    rows = []
    for (model, family, label, case, metric), group in graded.groupby(
            ["model", "family", "label", "case", "metric"], sort=False):
        if group["severity"].nunique() < 2:
            continue
        x = np.concatenate([[0.0], group["severity"].to_numpy(dtype=float)])
        y = np.concatenate([[0.0], group["degradation"].to_numpy(dtype=float)])
        if np.isnan(y).any():
            continue
        rows.append({"model": model, "family": family, "label": label, "case": case, "metric": metric,
                     "area": float(np.trapezoid(y, x) / (x[-1] - x[0])),
                     "score": float(group["value"].to_numpy(dtype=float).mean())})
    return pd.DataFrame(rows, columns=columns)


def hodges_lehmann(differences: np.ndarray) -> float:
    """Median of the Walsh averages (d_i + d_j) / 2, i <= j: the location estimate of the signed-rank test."""
    d = np.asarray(differences, dtype=float)
    i, j = np.triu_indices(len(d))
    return float(np.median((d[i] + d[j]) / 2)) if len(d) else math.nan


def wilcoxon_p_floor(n: int) -> float:
    """The smallest two-sided p-value the exact signed-rank test can give with n non-zero pairs."""
    return min(1.0, 2.0 / 2.0 ** n) if n > 0 else math.nan


def signed_rank_direction(differences: np.ndarray) -> float:
    """The sign of the signed-rank statistic R+ - R- (ranks of |d| over the non-zero differences, ties
    averaged): which way the test points, which a two-sided p does not say."""
    from scipy.stats import rankdata

    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if not len(d):
        return 0.0
    ranks = rankdata(np.abs(d))
    return float(np.sign(ranks[d > 0].sum() - ranks[d < 0].sum()))


def paired_difference(differences: np.ndarray, seed: int, n_bootstrap: int) -> dict:
    """Effect sizes, intervals, power and the Wilcoxon test of paired differences ``a - b`` (one per case)."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=float)
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        statistic, p_value = 0.0, 1.0
    else:
        result = wilcoxon(d)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    low, high = intervals.mean_interval(d, np.random.default_rng(seed), n_bootstrap)
    low90, high90 = intervals.mean_interval(d, np.random.default_rng(seed), n_bootstrap, confidence=0.90)
    sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
    return {"n": len(d), "mean_difference": float(d.mean()) if len(d) else math.nan,
            "median_difference": float(np.median(d)) if len(d) else math.nan,
            "hodges_lehmann": hodges_lehmann(d), "ci_low": low, "ci_high": high, "ci90_low": low90,
            "ci90_high": high90, "sd": sd, "detectable": intervals.detectable_with_interval(sd, len(d), low, high,
                                                                                             float(d.mean())),
            "test": "Wilcoxon signed-rank", "statistic": statistic, "direction": signed_rank_direction(d),
            "p_value": p_value, "p_floor": wilcoxon_p_floor(nonzero)}


def runs_difference(a: np.ndarray, b: np.ndarray, seed: int, n_bootstrap: int) -> dict:
    """``paired_difference`` for models with several training runs: ``a``, ``b`` are run x case arrays over
    the same cases; interval, test and power from the two-level bootstrap (runs, then cases)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a.mean(axis=0) - b.mean(axis=0)  # per case, run-averaged: the typical case
    result = intervals.two_level(a, b, np.random.default_rng(seed), n_bootstrap)
    return {"n": len(d), "mean_difference": result.estimate, "median_difference": float(np.median(d)),
            "hodges_lehmann": hodges_lehmann(d), "ci_low": result.ci_low, "ci_high": result.ci_high,
            "ci90_low": result.ci90_low, "ci90_high": result.ci90_high, "sd": float(d.std(ddof=1)) if len(d) > 1
            else math.nan, "detectable": result.detectable,
            "test": f"two-level bootstrap t (df {result.df:.1f})", "statistic": result.estimate / result.se
            if result.se else math.nan, "direction": float(np.sign(result.estimate)), "p_value": result.p_value,
            "p_floor": math.nan}


def runs_of(models: Sequence[str] | Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Model name -> the names of its runs in the per-case table (a plain list: one run each)."""
    if isinstance(models, Mapping):
        return {name: list(runs) for name, runs in models.items()}
    return {name: [name] for name in models}


def compare_pairs(values: pd.DataFrame, value: str, arms: dict[str, list[str]], seed: int, n_bootstrap: int
                  ) -> list[dict]:
    """Every pair of models on one column of ``values`` (rows: model (= run), case)."""
    wide = values.pivot_table(index="case", columns="model", values=value, aggfunc="first")
    rows = []
    for arm_a, arm_b in itertools.combinations(arms, 2):
        runs_a, runs_b = arms[arm_a], arms[arm_b]
        if not set(runs_a + runs_b) <= set(wide.columns):
            continue
        both = wide[runs_a + runs_b].dropna()
        if len(both) == 0:
            continue
        a, b = both[runs_a].to_numpy(dtype=float).T, both[runs_b].to_numpy(dtype=float).T
        if len(runs_a) == 1 and len(runs_b) == 1:
            statistics = paired_difference(a[0] - b[0], seed, n_bootstrap)
        else:
            statistics = runs_difference(a, b, seed, n_bootstrap)
        rows.append({"model_a": arm_a, "model_b": arm_b, "runs_a": len(runs_a), "runs_b": len(runs_b),
                     "value_a": float(a.mean()), "value_b": float(b.mean()), **statistics})
    return rows


def compare_models(degradation: pd.DataFrame, models: Sequence[str] | Mapping[str, Sequence[str]], seed: int = 0,
                   n_bootstrap: int = 2000) -> pd.DataFrame:
    """Every pair of models, per label and metric: per graded family (area of the drop, mean score over the
    severities), per condition (drop and score) and on clean (score); BH over all rows. ``models``: names,
    or model -> its runs' names in ``degradation``."""
    arms = runs_of(models)
    if len(arms) < 2 or not len(degradation):
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    rows = []

    def add(scope: str, name: str, axis: str, label: str, metric: str, group: pd.DataFrame, column: str) -> None:
        family = group["family"].iloc[0] if "family" in group and len(group) else None
        for row in compare_pairs(group, column, arms, seed, n_bootstrap):
            rows.append({"scope": scope, "name": name, "family": None if pd.isna(family) else family, "axis": axis,
                         "label": label, "metric": metric, **row})

    areas = family_area(degradation)
    for (family, label, metric), group in areas.groupby(["family", "label", "metric"], sort=False):
        add(FAMILY, family, DROP, label, metric, group, "area")
        add(FAMILY, family, SCORE, label, metric, group, "score")
    for (condition, label, metric), group in degradation.groupby(["condition", "label", "metric"], sort=False):
        add(CONDITION, condition, DROP, label, metric, group, "degradation")
        add(CONDITION, condition, SCORE, label, metric, group, "value")
    clean = degradation.drop_duplicates(["model", "label", "case", "metric"]).assign(family=None)
    for (label, metric), group in clean.groupby(["label", "metric"], sort=False):
        add(CLEAN, CLEAN, SCORE, label, metric, group, "clean")
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    frame["p_fdr"] = benjamini_hochberg(frame["p_value"].to_numpy(dtype=float))
    return frame


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (``scipy.stats.false_discovery_control``); NaN stays NaN."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, math.nan)
    defined = ~np.isnan(p)
    if defined.any():
        adjusted[defined] = false_discovery_control(p[defined], method="bh")
    return adjusted


def report_fdr(comparisons: pd.DataFrame, pairwise: pd.DataFrame, label: str, metric: str = VERDICT_METRIC) -> int:
    """Benjamini-Hochberg over every test the report shows, as one family: all comparisons, and the paired
    Wilcoxon tests of ``metric`` on ``label`` under each condition that are not already a comparison (the
    score axis of a single-run pair is the same test: it is counted once and its adjusted p shown in both
    tables). Sets ``p_fdr`` on both frames (NaN for pairwise rows the report does not show) and returns the
    number of tests."""
    shown = ((pairwise["label"] == label) & (pairwise["metric"] == metric)).to_numpy() if len(pairwise) else \
        np.zeros(0, bool)
    twins = _score_twins(comparisons, pairwise, label, metric) if len(pairwise) else {}
    alone = [i for i in np.flatnonzero(shown) if i not in twins]
    p_values = np.concatenate([comparisons["p_value"].to_numpy(dtype=float),
                               pairwise["p_value"].to_numpy(dtype=float)[alone] if len(pairwise) else []])
    adjusted = benjamini_hochberg(p_values)
    comparisons["p_fdr"] = adjusted[:len(comparisons)]
    pairwise["p_fdr"] = math.nan
    if len(pairwise):
        column = pairwise.columns.get_loc("p_fdr")
        for position, index in enumerate(alone):
            pairwise.iloc[index, column] = adjusted[len(comparisons) + position]
        for index, twin in twins.items():
            pairwise.iloc[index, column] = comparisons["p_fdr"].iloc[twin]
    return int(np.count_nonzero(~np.isnan(p_values)))


def _score_twins(comparisons: pd.DataFrame, pairwise: pd.DataFrame, label: str, metric: str) -> dict[int, int]:
    """Position of a pairwise test -> position of the comparison that is the same test (score axis of one
    condition or clean, one run per model, all cases)."""
    needed = {"scope", "name", "axis", "label", "metric", "model_a", "model_b", "test"}
    if not needed <= set(comparisons.columns):
        return {}
    keys = {}
    for position, (_, row) in enumerate(comparisons.iterrows()):
        if (row["axis"] == SCORE and row["scope"] in (CONDITION, CLEAN) and row["label"] == label
                and row["metric"] == metric and row["test"] == "Wilcoxon signed-rank"
                and row.get("stratum", None) in (None, "(all cases)")):
            keys[(row["name"], frozenset((row["model_a"], row["model_b"])))] = (position, row["scope"])
    twins = {}
    for position, (_, row) in enumerate(pairwise.iterrows()):
        if row["label"] != label or row["metric"] != metric:
            continue
        match = keys.get((row["condition"], frozenset((row["model_a"], row["model_b"]))))
        if match is not None:  # (a clean condition named otherwise than "clean" stays a test of its own)
            twins[position] = match[0]
    return twins


def direction_agrees(row: Mapping) -> bool:
    """The mean and the test's direction point the same way, and neither the median nor the Hodges-Lehmann
    estimate (the typical case) points the other way (they may be 0: cases a condition leaves unchanged)."""
    sign = float(np.sign(row["mean_difference"]))
    typical = [float(np.sign(row[key])) for key in ("median_difference", "hodges_lehmann") if key in row]
    return sign != 0 and float(row["direction"]) == sign and all(t != -sign for t in typical)


def detected(row: Mapping) -> bool:
    """The rule of every verdict: FDR-adjusted p < 0.05, the 95 % interval excludes 0, and the directions
    of mean, Hodges-Lehmann and test agree."""
    return bool(row["p_fdr"] < FDR_LEVEL and (row["ci_low"] > 0 or row["ci_high"] < 0) and direction_agrees(row))


def interval_test_note(row: Mapping) -> str:
    """Why a row is not detected although one of its parts says so ("" when interval, test and direction
    agree): no table shows an interval that excludes 0 beside a test that does not confirm it unexplained."""
    excludes = row["ci_low"] > 0 or row["ci_high"] < 0
    significant = row["p_fdr"] < FDR_LEVEL
    if excludes and not significant:
        return "interval excludes 0, test not significant after FDR: not detected"
    if significant and not excludes:
        return "test significant, interval spans 0: not detected"
    if excludes and significant and not direction_agrees(row):
        return "mean and typical case (Hodges-Lehmann) disagree in direction: not detected"
    return ""

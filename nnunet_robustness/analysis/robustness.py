"""Which model is more robust: the paired difference in *degradation* between models, and a verdict.

The question a robustness study asks is not "which model scores higher under noise" (that mixes in
the clean gap) but "whose score falls less when the input degrades". So, per case, a model's
degradation under a condition is ``sign * (clean - condition)`` (positive = worse; sign flips for
distances), and two models are compared on the paired differences of their degradations:

- per condition, and per family as the per-case area under the degradation-vs-severity curve
  (clean = severity 0 = no degradation; trapezoid divided by the severity range, so it is the
  average degradation over the range, in the metric's unit);
- effect sizes: mean, median and the Hodges-Lehmann estimator (median of the Walsh averages, the
  estimate that goes with the signed-rank test) of ``degradation_A - degradation_B``;
- a BCa bootstrap interval of the mean difference (Efron 1987; ``scipy.stats.bootstrap``, cases
  resampled in pairs). Every comparison uses the same seed, so the same paired data always gives the
  same interval (issue: one set of resamples per comparison);
- a two-sided paired Wilcoxon signed-rank test, its smallest attainable p-value at this n (exact test:
  2 / 2^n; with 8 cases 1/128), and Benjamini-Hochberg FDR over every comparison reported
  (``scipy.stats.false_discovery_control``).

The verdict per family says which model degrades least, by how much, with its interval, or "no
detectable difference" when the interval spans zero or the FDR-adjusted p is not below 0.05.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.analysis.statistics import bootstrap_interval
from nnunet_robustness.metrics.masks import METRICS

CONFIDENCE = 0.95
FDR_LEVEL = 0.05
SMALL_SAMPLE = 30  # below this many cases the report says that intervals are rough
VERDICT_METRIC = "dice"
COMPARISON_METRICS = ("dice", "nsd", "hd95_mm")
METRIC_TITLES = {"dice": "Dice", "nsd": "NSD", "hd95_mm": "HD95 (mm)"}
COMPARISON_COLUMNS = ["scope", "name", "label", "metric", "model_a", "model_b", "n", "degradation_a",
                      "degradation_b", "mean_difference", "median_difference", "hodges_lehmann", "ci_low", "ci_high",
                      "statistic", "p_value", "p_floor", "p_fdr"]


def per_case_degradation(table: pd.DataFrame, conditions: pd.DataFrame, clean: str | None,
                         metrics: Sequence[str] = COMPARISON_METRICS) -> pd.DataFrame:
    """Long table: model, condition, family, severity, label, case, metric, degradation (positive = worse)."""
    columns = ["model", "condition", "family", "severity", "label", "case", "metric", "degradation"]
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
    """Per model x family x label x case x metric: the area under degradation vs severity (clean = 0 at
    severity 0) over the severity range, for families graded at two or more severities."""
    graded = degradation.dropna(subset=["family", "severity"])
    rows = []
    for (model, family, label, case, metric), group in graded.groupby(
            ["model", "family", "label", "case", "metric"], sort=False):
        group = group.sort_values("severity")
        if group["severity"].nunique() < 2:
            continue
        x = np.concatenate([[0.0], group["severity"].to_numpy(dtype=float)])
        y = np.concatenate([[0.0], group["degradation"].to_numpy(dtype=float)])
        if np.isnan(y).any():
            continue
        rows.append({"model": model, "family": family, "label": label, "case": case, "metric": metric,
                     "area": float(np.trapezoid(y, x) / (x[-1] - x[0]))})
    return pd.DataFrame(rows, columns=["model", "family", "label", "case", "metric", "area"])


def hodges_lehmann(differences: np.ndarray) -> float:
    """Median of the Walsh averages (d_i + d_j) / 2, i <= j: the location estimate of the signed-rank test."""
    d = np.asarray(differences, dtype=float)
    i, j = np.triu_indices(len(d))
    return float(np.median((d[i] + d[j]) / 2)) if len(d) else math.nan


def wilcoxon_p_floor(n: int) -> float:
    """The smallest two-sided p-value the exact signed-rank test can give with n non-zero pairs."""
    return min(1.0, 2.0 / 2.0 ** n) if n > 0 else math.nan


def bca_interval(differences: np.ndarray, seed: int, n_bootstrap: int) -> tuple[float, float]:
    """BCa interval of the mean of paired differences; degenerate data (all equal) gives that value."""
    return bootstrap_interval(differences, np.random.default_rng(seed), n_bootstrap, np.mean)


def paired_difference(differences: np.ndarray, seed: int, n_bootstrap: int) -> dict:
    """Effect sizes, BCa interval and Wilcoxon test of paired differences ``a - b`` (one per case)."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=float)
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        statistic, p_value = 0.0, 1.0
    else:
        result = wilcoxon(d)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    low, high = bca_interval(d, seed, n_bootstrap)
    return {"n": len(d), "mean_difference": float(d.mean()), "median_difference": float(np.median(d)),
            "hodges_lehmann": hodges_lehmann(d), "ci_low": low, "ci_high": high,
            "statistic": statistic, "p_value": p_value, "p_floor": wilcoxon_p_floor(nonzero)}


def _compare(values: pd.DataFrame, index: list[str], value: str, models: Sequence[str], seed: int,
             n_bootstrap: int) -> list[dict]:
    wide = values.pivot_table(index=index, columns="model", values=value, aggfunc="first")
    rows = []
    for model_a, model_b in itertools.combinations(models, 2):
        if model_a not in wide or model_b not in wide:
            continue
        pair = wide[[model_a, model_b]].dropna()
        if len(pair) == 0:
            continue
        d = (pair[model_a] - pair[model_b]).to_numpy(dtype=float)
        rows.append({"model_a": model_a, "model_b": model_b, "degradation_a": float(pair[model_a].mean()),
                     "degradation_b": float(pair[model_b].mean()), **paired_difference(d, seed, n_bootstrap)})
    return rows


def compare_degradation(degradation: pd.DataFrame, models: Sequence[str], seed: int = 0,
                        n_bootstrap: int = 2000) -> pd.DataFrame:
    """Every pair of models, per family (area) and per condition, per label and metric; BH over all rows."""
    rows = []
    if len(models) < 2 or not len(degradation):
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    areas = family_area(degradation)
    for (family, label, metric), group in areas.groupby(["family", "label", "metric"], sort=False):
        for row in _compare(group, ["case"], "area", models, seed, n_bootstrap):
            rows.append({"scope": "family", "name": family, "label": label, "metric": metric, **row})
    for (condition, label, metric), group in degradation.groupby(["condition", "label", "metric"], sort=False):
        for row in _compare(group, ["case"], "degradation", models, seed, n_bootstrap):
            rows.append({"scope": "condition", "name": condition, "label": label, "metric": metric, **row})
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
    """Benjamini-Hochberg over every test the report shows, as one family: all degradation comparisons
    and the paired Wilcoxon tests of ``metric`` on ``label`` under each condition. Sets ``p_fdr`` on both
    frames (NaN for pairwise rows the report does not show) and returns the number of tests."""
    shown = ((pairwise["label"] == label) & (pairwise["metric"] == metric)).to_numpy() if len(pairwise) else []
    p_values = np.concatenate([comparisons["p_value"].to_numpy(dtype=float),
                               pairwise.loc[shown, "p_value"].to_numpy(dtype=float) if len(pairwise) else []])
    adjusted = benjamini_hochberg(p_values)
    comparisons["p_fdr"] = adjusted[:len(comparisons)]
    pairwise["p_fdr"] = math.nan
    if len(pairwise):
        pairwise.loc[shown, "p_fdr"] = adjusted[len(comparisons):]
    return int(np.count_nonzero(~np.isnan(p_values)))


def _detectable(row: pd.Series) -> bool:
    return bool(row["p_fdr"] < FDR_LEVEL and (row["ci_low"] > 0 or row["ci_high"] < 0))


def verdict(comparisons: pd.DataFrame, models: Sequence[str], label: str,
            metric: str = VERDICT_METRIC) -> list[str]:
    """Sentences a researcher can quote: per family, which model's score falls least (or no detectable
    difference), then an overall ranking by the families each model wins."""
    rows = comparisons[(comparisons["scope"] == "family") & (comparisons["label"] == label)
                       & (comparisons["metric"] == metric)]
    if len(models) < 2:
        return ["One model: nothing to compare; see its degradation below."]
    if not len(rows):
        return ["No corruption family with two or more severities and a clean condition: no robustness "
                "comparison (run severities such as FAMILY:1,3,5 together with clean)."]
    title = METRIC_TITLES.get(metric, metric)
    sentences, wins = [], {m: 0 for m in models}
    for family, group in rows.groupby("name", sort=False):
        found = [r for _, r in group.iterrows() if _detectable(r)]
        if not found:
            best = group.iloc[0]
            n, floor = int(best["n"]), float(best["p_floor"])
            why = (f"; with {n} cases no test can reach p < {floor:.3g}" if floor >= FDR_LEVEL else "")
            sentences.append(f"{family}: no detectable difference in {title} degradation between "
                             f"{', '.join(models)} (every paired interval spans 0 or FDR p >= {FDR_LEVEL}{why}).")
            continue
        for row in found:
            better, worse = ((row["model_a"], row["model_b"]) if row["mean_difference"] < 0
                             else (row["model_b"], row["model_a"]))
            wins[better] += 1
            gap = abs(row["mean_difference"])
            sentences.append(
                f"{family}: {better} degrades less than {worse} by {gap:.3f} {title} on average over severities "
                f"(paired difference {row['mean_difference']:+.3f}, 95% BCa CI [{row['ci_low']:+.3f}, "
                f"{row['ci_high']:+.3f}], Hodges-Lehmann {row['hodges_lehmann']:+.3f}, n = {int(row['n'])}, "
                f"FDR-adjusted p = {row['p_fdr']:.3g}).")
    ranking = sorted(models, key=lambda m: -wins[m])
    if any(wins.values()):
        sentences.insert(0, "Overall: " + " > ".join(f"{m} ({wins[m]} famil{'y' if wins[m] == 1 else 'ies'})"
                                                      for m in ranking)
                         + f", counting the families where a model degrades detectably less in {title}.")
    else:
        sentences.insert(0, f"Overall: no detectable difference in {title} degradation between the models.")
    return sentences

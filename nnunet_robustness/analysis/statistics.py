"""Robustness summaries of a per-case table: confidence intervals (``analysis.intervals``), degradation vs clean,
metric-vs-severity curves (area, coefficient of variation), best-model shares and paired tests.

All functions take the tidy per-case table (one row per model x condition x case x label, one column
per metric) with an extra label ``FOREGROUND_MEAN`` holding each case's mean over the labels, and
return tidy data frames. Randomness comes only from ``numpy.random.default_rng`` seeded with the
user's seed: every group of a summary draws the same case indices (for the same number of cases), so
the same per-case data always gives the same interval, comparisons across conditions stay paired, and
a result does not change when other models or conditions are added to the evaluation.
"""

from __future__ import annotations

import itertools
import math
import warnings
import zlib
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.analysis import intervals
from nnunet_robustness.metrics.masks import METRICS, directed_metrics

FOREGROUND_MEAN = "foreground_mean"
ALL_CONDITIONS = "(all conditions)"
CONFIDENCE = intervals.CONFIDENCE
KEYS = ["model", "condition", "case", "label"]
CASE_RESAMPLES = "case resamples"  # one stream of case indices for every group (see the module docstring)


def group_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator that depends on the seed and on the group's names only (stable across runs:
    ``zlib.crc32`` rather than Python's salted ``hash``)."""
    return np.random.default_rng([seed, zlib.crc32("\x00".join(names).encode())])


def add_foreground_mean(per_case: pd.DataFrame) -> pd.DataFrame:
    """Append rows with label ``FOREGROUND_MEAN``: per model x condition x case, the mean of each
    metric over the labels/regions (nnU-Net's ``foreground_mean``, computed per case)."""
    metrics = list(METRICS)
    means = per_case.groupby(["model", "condition", "case"], sort=False)[metrics].mean().reset_index()
    means["label"] = FOREGROUND_MEAN
    return pd.concat([per_case[KEYS + metrics], means[KEYS + metrics]], ignore_index=True)


def _replay(rng: np.random.Generator) -> np.random.Generator:
    """A generator at ``rng``'s current state: every column of a group draws the same case indices."""
    copy = np.random.Generator(type(rng.bit_generator)())
    copy.bit_generator.state = rng.bit_generator.state
    return copy


def bootstrap_statistics(values: np.ndarray, rng: np.random.Generator, n_bootstrap: int
                         ) -> dict[str, np.ndarray]:
    """Mean and median of each column of ``values`` (cases x metrics) with 95 % intervals: the mean's from
    ``intervals.mean_interval`` (t united with the studentized bootstrap over cases), the median's from its
    order statistics (``intervals.median_interval``). NaN entries (undefined values) are left out per
    column; every column resamples with the same stream of ``rng``."""
    n_cases, n_metrics = values.shape
    defined = (~np.isnan(values)).sum(axis=0)
    result = {name: np.full(n_metrics, math.nan) for name in
              ("mean", "mean_ci_low", "mean_ci_high", "median", "median_ci_low", "median_ci_high", "std")}
    result["n"] = defined
    for column in range(n_metrics):
        sample = values[:, column][~np.isnan(values[:, column])]
        if not len(sample):
            continue
        result["mean"][column], result["median"][column] = sample.mean(), np.median(sample)
        result["std"][column] = sample.std(ddof=1) if len(sample) > 1 else 0.0
        result["mean_ci_low"][column], result["mean_ci_high"][column] = intervals.mean_interval(
            sample, _replay(rng), n_bootstrap)
        result["median_ci_low"][column], result["median_ci_high"][column] = intervals.median_interval(sample)
    return result


@contextmanager
def _quiet_nan_warnings() -> Iterator[None]:
    # All-NaN columns (an undefined metric in every case) are expected and give NaN, documented.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def summary_statistics(table: pd.DataFrame, seed: int, n_bootstrap: int) -> pd.DataFrame:
    """Per model x condition x label x metric: n, mean, median (with 95 % bootstrap CIs) and std."""
    metrics = list(METRICS)
    rows = []
    for (model, condition, label), group in table.groupby(["model", "condition", "label"], sort=False):
        stats = bootstrap_statistics(group[metrics].to_numpy(dtype=float), group_rng(seed, CASE_RESAMPLES),
                                     n_bootstrap)
        for index, metric in enumerate(metrics):
            rows.append({"model": model, "condition": condition, "label": label, "metric": metric,
                         **{name: stats[name][index] for name in stats}})
    frame = pd.DataFrame(rows)
    frame["n"] = frame["n"].astype(int)
    return frame


def degradation(table: pd.DataFrame, clean: str | None, seed: int, n_bootstrap: int) -> pd.DataFrame:
    """Change of each directed metric from the clean condition, per model x condition x label.

    ``absolute`` is positive when the condition is worse (clean - condition for Dice-like metrics,
    condition - clean for distances), averaged over cases (paired), with a 95 % bootstrap CI;
    ``relative`` = absolute / |clean mean|.
    """
    columns = ["model", "condition", "label", "metric", "clean_mean", "condition_mean", "absolute",
               "absolute_ci_low", "absolute_ci_high", "relative"]
    if clean is None:
        return pd.DataFrame(columns=columns)
    rows = []
    directed = directed_metrics()
    sign = np.array([1.0 if METRICS[m].higher_is_better else -1.0 for m in directed])
    clean_rows = (table[table["condition"] == clean].set_index(["model", "label", "case"])[directed]
                  .sort_index())
    for (model, condition, label), condition_group in table.groupby(["model", "condition", "label"], sort=False):
        if condition == clean or (model, label) not in clean_rows.index.droplevel("case"):
            continue
        reference = clean_rows.loc[(model, label)]
        values = condition_group.set_index("case")[directed]
        paired = pd.merge(reference, values, left_index=True, right_index=True, suffixes=("_clean", ""))
        clean_values = paired[[f"{m}_clean" for m in directed]].to_numpy(dtype=float)
        condition_values = paired[directed].to_numpy(dtype=float)
        worse = sign * (clean_values - condition_values)
        stats = bootstrap_statistics(worse, group_rng(seed, CASE_RESAMPLES), n_bootstrap)
        with _quiet_nan_warnings():
            clean_mean = np.nanmean(clean_values, axis=0)
            condition_mean = np.nanmean(condition_values, axis=0)
        for index, metric in enumerate(directed):
            absolute = stats["mean"][index]
            rows.append({"model": model, "condition": condition, "label": label, "metric": metric,
                         "clean_mean": clean_mean[index], "condition_mean": condition_mean[index],
                         "absolute": absolute, "absolute_ci_low": stats["mean_ci_low"][index],
                         "absolute_ci_high": stats["mean_ci_high"][index],
                         "relative": absolute / abs(clean_mean[index]) if clean_mean[index] != 0 else math.nan})
    return pd.DataFrame(rows, columns=columns)


def severity_curves(statistics: pd.DataFrame, conditions: pd.DataFrame, clean: str | None) -> pd.DataFrame:
    """Per model x family x label x metric: the mean metric at each severity (clean as severity 0),
    the normalised area under that curve and its coefficient of variation.

    ``auc`` = trapezoidal area over severity divided by the severity range (the average metric
    level over the range, in the metric's unit); ``cv`` = population standard deviation / |mean|
    of the per-severity means. Families with fewer than two severity levels have no curve.
    ``conditions`` has columns ``condition``, ``family``, ``severity``.
    """
    columns = ["model", "family", "label", "metric", "severities", "conditions", "means", "ci_low", "ci_high",
               "auc", "cv"]
    graded = conditions.dropna(subset=["family", "severity"])
    rows = []
    for family, levels in graded.groupby("family", sort=True):
        levels = levels.sort_values("severity")
        names = ([clean] if clean is not None and 0.0 not in set(levels["severity"]) else []) + list(levels["condition"])
        severities = ([0.0] if len(names) > len(levels) else []) + [float(s) for s in levels["severity"]]
        if len(names) < 2:
            continue
        subset = statistics[statistics["condition"].isin(names)]
        for (model, label, metric), group in subset.groupby(["model", "label", "metric"], sort=False):
            by_condition = group.set_index("condition")
            present = [(s, n) for s, n in zip(severities, names) if n in by_condition.index]
            if len(present) < 2:
                continue
            x = np.array([s for s, _ in present])
            y = by_condition.loc[[n for _, n in present], "mean"].to_numpy(dtype=float)
            auc = float(np.trapezoid(y, x) / (x[-1] - x[0])) if x[-1] > x[0] else math.nan
            mean_level = float(np.mean(y))
            rows.append({"model": model, "family": family, "label": label, "metric": metric,
                         "severities": x.tolist(), "conditions": [n for _, n in present], "means": y.tolist(),
                         "ci_low": by_condition.loc[[n for _, n in present], "mean_ci_low"].tolist(),
                         "ci_high": by_condition.loc[[n for _, n in present], "mean_ci_high"].tolist(),
                         "auc": auc, "cv": float(np.std(y)) / abs(mean_level) if mean_level != 0 else math.nan})
    return pd.DataFrame(rows, columns=columns)


def best_model_shares(table: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Share of cases on which each model has the best value, per condition x label x metric, and
    over all conditions together (condition ``ALL_CONDITIONS``, unit: case x condition).

    A tie gives each tied model an equal part of the case, so the shares of a row group sum to 1.
    Cases where a model's value is undefined are left out of that comparison.
    """
    columns = ["condition", "label", "metric", "model", "best_share", "wins", "n_cases"]
    if len(models) < 2:
        return pd.DataFrame(columns=columns)
    rows = []
    for metric in directed_metrics():
        wide = table.pivot_table(index=["condition", "label", "case"], columns="model", values=metric,
                                 aggfunc="first", dropna=False)[list(models)]
        values = wide.to_numpy(dtype=float)
        complete = ~np.isnan(values).any(axis=1)
        wide, values = wide[complete], values[complete]
        best = values.max(axis=1) if METRICS[metric].higher_is_better else values.min(axis=1)
        winners = values == best[:, None]
        credit = pd.DataFrame(winners / winners.sum(axis=1, keepdims=True), index=wide.index, columns=list(models))
        per_condition = [(key, group) for key, group in credit.groupby(level=["condition", "label"], sort=False)]
        overall = [((ALL_CONDITIONS, label), group) for label, group in credit.groupby(level="label", sort=False)]
        for (condition, label), group in per_condition + overall:
            n = len(group)
            for model in models:
                wins = float(group[model].sum())
                rows.append({"condition": condition, "label": label, "metric": metric, "model": model,
                             "best_share": wins / n if n else math.nan, "wins": wins, "n_cases": n})
    return pd.DataFrame(rows, columns=columns)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), for one family of tests; NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, math.nan)
    defined = np.flatnonzero(~np.isnan(p))
    order = defined[np.argsort(p[defined], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def pairwise_tests(table: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Two-sided paired Wilcoxon signed-rank tests between every pair of models, per condition x
    label x metric, over the cases where both values are defined; Holm-adjusted within each
    condition x label x metric (the family of model pairs).

    ``mean_difference`` is model_a - model_b. When all paired differences are zero the test is
    undefined and ``p_value`` is 1 (no difference observed).
    """
    from scipy.stats import wilcoxon

    columns = ["condition", "label", "metric", "model_a", "model_b", "n", "mean_difference", "statistic", "p_value",
               "p_holm"]
    if len(models) < 2:
        return pd.DataFrame(columns=columns)
    rows = []
    for metric in directed_metrics():
        wide = table.pivot_table(index=["condition", "label", "case"], columns="model", values=metric,
                                 aggfunc="first", dropna=False)
        for (condition, label), group in wide.groupby(level=["condition", "label"], sort=False):
            family = []
            for model_a, model_b in itertools.combinations(models, 2):
                pair = group[[model_a, model_b]].dropna()
                difference = (pair[model_a] - pair[model_b]).to_numpy(dtype=float)
                if len(difference) == 0:
                    statistic, p_value = math.nan, math.nan
                elif np.all(difference == 0):
                    statistic, p_value = 0.0, 1.0
                else:
                    result = wilcoxon(pair[model_a].to_numpy(dtype=float), pair[model_b].to_numpy(dtype=float))
                    statistic, p_value = float(result.statistic), float(result.pvalue)
                family.append({"condition": condition, "label": label, "metric": metric, "model_a": model_a,
                               "model_b": model_b, "n": len(difference),
                               "mean_difference": float(difference.mean()) if len(difference) else math.nan,
                               "statistic": statistic, "p_value": p_value})
            for row, adjusted in zip(family, holm([r["p_value"] for r in family])):
                row["p_holm"] = adjusted
            rows.extend(family)
    return pd.DataFrame(rows, columns=columns)

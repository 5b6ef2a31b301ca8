"""``recommend``: which architecture the evidence favours for data of a given task complexity.

The evidence is ``eval``'s per-case table of several models (one value per model x condition x
case), joined by case id with the texture disparity (TD) of each case from ``complexity``'s CSV.
Several eval outputs can be pooled, each with its own dataset's complexity CSV (the study's
protocol: one dataset per blend level).

The rule, per cell (TD bin x evaluated condition), is deliberately simple:

1. ``n`` = distinct case ids in the cell. Fewer than ``min_cases``: **insufficient evidence**.
2. The model with the best mean metric is the candidate. For every other model, a paired bootstrap
   (cases resampled with replacement, the same resample for every model; units of several eval
   outputs that share a case id, i.e. the same test image, are resampled together) gives the
   distribution of the candidate's advantage (mean difference, signed so that positive = better).
3. The candidate is the **winner** only if every advantage is significantly above ``min_difference``:
   one-sided bootstrap p-value ``(#{advantage* <= min_difference} + 1) / (B + 1)``, Holm-adjusted over
   the comparisons by default, below ``(1 - 0.95) / 2``. Without adjustment this is the statement
   "the lower end of the 95 % percentile CI of every advantage lies above ``min_difference``".
   Otherwise: **no clear winner**, with the tied set (the candidate and every model it does not beat).

A query maps a dataset's median TD to its bin (outside the observed TD range: insufficient
evidence, no extrapolation) and a condition (``clean``, an evaluated condition name, or
``FAMILY:SEVERITY`` with the severity inside the evaluated range) to a cell, and recommends an
architecture only when that cell has a winner. Details and caveats: ``docs/datasets.md``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.analysis.robustness import wilcoxon_p_floor
from nnunet_robustness.analysis.statistics import CONFIDENCE, FOREGROUND_MEAN, group_rng, holm
from nnunet_robustness.conditions import CLEAN_NAME as CLEAN
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import csv_unescape, json_ready, read_json
from nnunet_robustness.metrics.masks import METRICS

WINNER = "winner"
NO_CLEAR_WINNER = "no clear winner"
INSUFFICIENT = "insufficient evidence"
CORRECTIONS = ("holm", "none")
TD_COLUMN = "texture_disparity_bits"
# One-sided level of each "candidate beats model k" test: the lower tail of a two-sided 95 % CI.
ONE_SIDED_ALPHA = (1 - CONFIDENCE) / 2
PER_CASE_FILES = ("per_case.parquet", "per_case.csv")
_PER_CASE_REQUIRED = ("model", "condition", "family", "severity", "case", "label")


@dataclass(frozen=True)
class RuleSettings:
    """Everything that decides the rule besides the evidence itself."""

    metric: str = "dice"
    label: str = FOREGROUND_MEAN  # FOREGROUND_MEAN: per-case mean over the labels/regions
    min_cases: int = 10
    n_bootstrap: int = 2000
    seed: int = 0
    correction: str = "holm"
    min_difference: float = 0.0  # in the metric's unit; the winner must beat every model by more

    def __post_init__(self) -> None:
        metric = METRICS.get(self.metric)
        if metric is None or metric.higher_is_better is None:
            usable = [name for name, m in METRICS.items() if m.higher_is_better is not None]
            raise UserInputError(f"--metric {self.metric!r}: expected one of {', '.join(usable)}")
        if self.min_cases < 2:
            raise UserInputError(f"--min-cases must be >= 2, got {self.min_cases}")
        if self.n_bootstrap < 100:
            raise UserInputError(f"--n-bootstrap must be >= 100, got {self.n_bootstrap}")
        if self.correction not in CORRECTIONS:
            raise UserInputError(f"--correction {self.correction!r}: expected one of {', '.join(CORRECTIONS)}")
        if not (math.isfinite(self.min_difference) and self.min_difference >= 0):
            raise UserInputError(f"--min-difference must be a finite number >= 0, got {self.min_difference}")

    @property
    def higher_is_better(self) -> bool:
        return bool(METRICS[self.metric].higher_is_better)


# --- evidence ------------------------------------------------------------------------------------------

def read_per_case_table(path: str | os.PathLike) -> tuple[pd.DataFrame, Path]:
    """``eval``'s per-case table from an eval output folder (``per_case.parquet``, else ``per_case.csv``)
    or from one of those files; returns the table and the file read."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / name for name in PER_CASE_FILES if (path / name).is_file()]
        if not candidates:
            raise UserInputError(f"{path} has neither {' nor '.join(PER_CASE_FILES)}; expected an eval output folder")
        path = candidates[0]
    if not path.is_file():
        raise UserInputError(f"{path}: no such eval output folder or per-case file")
    try:
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = csv_unescape(pd.read_csv(path, dtype={"model": str, "condition": str, "family": str,
                                                          "case": str, "label": str, "preset": str}))
    except Exception as e:  # noqa: BLE001 - pandas/pyarrow raise many types; the user needs the file name
        raise UserInputError(f"cannot read {path}: {e!r}") from e
    missing = [c for c in _PER_CASE_REQUIRED if c not in table.columns]
    if missing:
        raise UserInputError(f"{path} lacks column(s) {', '.join(missing)}; expected eval's per_case table")
    # models that failed eval's sanity gate (summary.json next to the table) give no evidence
    summary = path.parent / "summary.json"
    if summary.is_file():
        checks = read_json(summary, "eval summary").get("model_checks", [])
        failed = [c["model"] for c in checks if not c.get("passed", True) and not c.get("kept", False)]
        if failed:
            warnings.warn(f"{path}: leaving out {', '.join(failed)}, which failed eval's sanity gate "
                          f"({summary})", UserWarning, stacklevel=2)
            table = table[~table["model"].isin(failed)]
        table = merge_runs(table, read_json(summary, "eval summary").get("runs") or {})
    return table, path


def merge_runs(table: pd.DataFrame, runs: dict[str, list[str]]) -> pd.DataFrame:
    """One row per model and item: the training runs of a model (eval ``--model NAME=RUN1,RUN2``, rows
    named ``NAME:1``, ``NAME:2``) averaged per case, so that a model is judged once, not once per run."""
    model_of = {run: model for model, names in runs.items() if len(names) > 1 for run in names}
    if not model_of or not table["model"].isin(list(model_of)).any():
        return table
    table = table.assign(model=table["model"].map(lambda m: model_of.get(m, m)))
    keys = [c for c in ("model", "condition", "case", "label") if c in table.columns]
    numeric = [c for c in table.columns if c not in keys and pd.api.types.is_numeric_dtype(table[c])
               and not pd.api.types.is_bool_dtype(table[c])]
    others = [c for c in table.columns if c not in keys and c not in numeric]
    merged = table.groupby(keys, sort=False, dropna=False).agg({**{c: "mean" for c in numeric},
                                                               **{c: "first" for c in others}})
    return merged.reset_index()[list(table.columns)]


def read_complexity_table(path: str | os.PathLike) -> pd.DataFrame:
    """``complexity``'s per-case CSV (columns ``case``, ``split``, ``alpha``, ``texture_disparity_bits``, ...)."""
    path = Path(path)
    try:
        table = csv_unescape(pd.read_csv(path, dtype={"case": str, "split": str}))
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such complexity CSV (write it with nnunet-robust complexity)") from None
    except Exception as e:  # noqa: BLE001
        raise UserInputError(f"cannot read complexity CSV {path}: {e!r}") from e
    missing = [c for c in ("case", "split", TD_COLUMN) if c not in table.columns]
    if missing:
        raise UserInputError(f"{path} lacks column(s) {', '.join(missing)}; expected nnunet-robust complexity's CSV")
    table[TD_COLUMN] = pd.to_numeric(table[TD_COLUMN], errors="coerce")
    if "alpha" in table.columns:
        table["alpha"] = pd.to_numeric(table["alpha"], errors="coerce")
    return table


def _case_complexity(complexity: pd.DataFrame, path: Path) -> pd.DataFrame:
    """One row per case id, indexed by case. eval scores test cases, so where an id is in both
    splits the test row is the one kept; an id twice in one split is an error."""
    duplicated = complexity[complexity.duplicated(["case", "split"])]
    if not duplicated.empty:
        raise UserInputError(f"{path}: case {duplicated['case'].iloc[0]!r} appears twice in one split")
    test_first = complexity.assign(_not_test=complexity["split"] != "test").sort_values("_not_test", kind="stable")
    return test_first.drop_duplicates("case").drop(columns="_not_test").set_index("case")


def load_evidence(sources: Sequence[tuple[str | os.PathLike, str | os.PathLike]], settings: RuleSettings,
                  in_distribution: bool = False) -> pd.DataFrame:
    """The evidence table: one row per (source, case, condition, model) with the metric ``value`` and
    the case's TD.

    ``sources`` pairs each eval output (folder or per-case file) with its dataset's complexity CSV.
    Every eval case must have a complexity row; every source must hold the same models, and every
    model every (condition, case) of its source, so that comparisons are paired. Cases with an
    undefined TD or metric are left out (counted in ``attrs["dropped_cases"]``). With
    ``in_distribution``, only test cases whose alpha is one of the source's training alphas are
    kept (needs the alpha column of datasets from ``make-dataset textures``).
    """
    if not sources:
        raise UserInputError("no evidence: give at least one --evidence EVAL=COMPLEXITY_CSV")
    frames = []
    dropped = 0
    shifted = 0  # evaluated cases whose alpha is not a training alpha of their dataset
    model_sets: dict[str, tuple[str, ...]] = {}
    for eval_output, complexity_csv in sources:
        per_case, per_case_path = read_per_case_table(eval_output)
        if settings.metric not in per_case.columns:
            raise UserInputError(f"{per_case_path} has no column {settings.metric!r}")
        complexity = _case_complexity(read_complexity_table(complexity_csv), Path(complexity_csv))
        values = _metric_per_case(per_case, settings, per_case_path)
        missing = sorted(set(values["case"]) - set(complexity.index))
        if missing:
            raise UserInputError(f"{len(missing)} case(s) of {per_case_path} are not in {complexity_csv} "
                                 f"(first: {missing[0]!r}); give each eval output its own dataset's complexity CSV")
        values["td"] = complexity.loc[values["case"], TD_COLUMN].to_numpy(dtype=float)
        matched = _matches_training_alpha(values, complexity)
        if in_distribution:
            if matched is None:
                raise UserInputError(f"--in-distribution needs the alpha of every training and evaluated case, "
                                     f"which {complexity_csv} lacks (datasets from make-dataset textures have it)")
            values = values[matched]
        elif matched is not None:
            shifted += values.loc[~matched, "case"].nunique()
        models = tuple(sorted(values["model"].unique()))
        model_sets[str(per_case_path)] = models
        # A case counts only where every model has a defined value (paired comparisons).
        complete = values.groupby(["condition", "case"])["value"].transform("count") == len(models)
        usable = complete & values["td"].notna()
        dropped += values.loc[~usable, ["condition", "case"]].drop_duplicates().shape[0]
        frames.append(values[usable].assign(source=str(per_case_path)))
    if len(set(model_sets.values())) > 1:
        listing = "; ".join(f"{path}: {', '.join(models)}" for path, models in model_sets.items())
        raise UserInputError(f"the eval outputs hold different models ({listing}); use the same --model names in each")
    evidence = pd.concat(frames, ignore_index=True)
    if evidence.empty:
        raise UserInputError("no usable evidence: every case lacks a TD or a metric value"
                             + (", or none is at a training alpha" if in_distribution else ""))
    if evidence["model"].nunique() < 2:
        raise UserInputError(f"{', '.join(model_sets)}: only one model ({evidence['model'].iloc[0]}); "
                             "recommend compares two or more (eval --model A=... --model B=...)")
    evidence.attrs.update(dropped_cases=dropped, shifted_cases=shifted, in_distribution=in_distribution)
    return evidence[["source", "case", "condition", "family", "severity", "td", "model", "value"]]


def _metric_per_case(per_case: pd.DataFrame, settings: RuleSettings, path: Path) -> pd.DataFrame:
    """One value per model x condition x case: the chosen label's metric, or the mean over labels."""
    if settings.label == FOREGROUND_MEAN:
        rows = per_case
    else:
        rows = per_case[per_case["label"] == settings.label]
        if rows.empty:
            raise UserInputError(f"{path} has no label {settings.label!r} (labels: "
                                 f"{', '.join(sorted(per_case['label'].unique()))})")
    keys = ["model", "condition", "case"]
    duplicated = rows.duplicated([*keys, "label"])
    if duplicated.any():
        first = rows[duplicated].iloc[0]
        raise UserInputError(f"{path}: model {first['model']!r}, condition {first['condition']!r}, case "
                             f"{first['case']!r} has more than one row for label {first['label']!r}")
    # Mean over labels; NaN only when every label is undefined (rows are the eval's empty-mask policy).
    values = rows.groupby(keys, sort=False)[settings.metric].mean().rename("value").reset_index()
    conditions = rows.drop_duplicates("condition").set_index("condition")[["family", "severity"]]
    values["family"] = conditions.loc[values["condition"], "family"].to_numpy()
    values["severity"] = pd.to_numeric(conditions.loc[values["condition"], "severity"], errors="coerce").to_numpy()
    models_per_item = values.groupby(["condition", "case"])["model"].nunique()
    incomplete = models_per_item[models_per_item < values["model"].nunique()]
    if not incomplete.empty:
        condition, case = incomplete.index[0]
        raise UserInputError(f"{path}: not every model has case {case!r} under condition {condition!r}; "
                             "comparisons need every model on every case")
    return values


def _matches_training_alpha(values: pd.DataFrame, complexity: pd.DataFrame) -> np.ndarray | None:
    """Per row of ``values``: is the case's alpha one of the dataset's training alphas? None when the
    CSV has no alphas (datasets not made by make-dataset textures)."""
    if "alpha" not in complexity.columns:
        return None
    training_alphas = complexity.loc[complexity["split"] == "train", "alpha"].dropna().round(2).unique()
    alphas = complexity.loc[values["case"], "alpha"].round(2).to_numpy()
    if training_alphas.size == 0 or np.isnan(alphas).any():
        return None
    return np.isin(alphas, training_alphas)


# --- complexity bins -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ComplexityBins:
    """Bins of TD: ``edges`` are the interior boundaries (ascending), bin i is
    [edges[i-1], edges[i]) with the outermost bins open-ended; ``observed_low``/``observed_high`` is
    the TD range the evidence covers (outside it nothing is claimed)."""

    edges: tuple[float, ...]
    observed_low: float
    observed_high: float
    method: str  # "quantile" or "user"

    @property
    def count(self) -> int:
        return len(self.edges) + 1

    def index(self, td: float | np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.edges), np.asarray(td, dtype=float), side="right")

    def bounds(self, index: int) -> tuple[float, float]:
        """The bin's TD range restricted to the observed range."""
        low = self.observed_low if index == 0 else self.edges[index - 1]
        high = self.observed_high if index == len(self.edges) else self.edges[index]
        return low, high

    def label(self, index: int) -> str:
        low, high = self.bounds(index)
        closing = "]" if index == len(self.edges) else ")"
        return f"[{low:.4g}, {high:.4g}{closing}"

    def covers(self, td: float) -> bool:
        return self.observed_low <= td <= self.observed_high


def make_bins(td: np.ndarray, n_bins: int | None = 3, edges: Sequence[float] | None = None) -> ComplexityBins:
    """Quantile bins of the evidence's case TDs (``n_bins`` about equally filled bins; tied quantiles
    merge bins), or the user's interior ``edges``. Quantiles do not depend on TD's scale (it spans
    decades: 0.005 to 2 bits), so they need no log transform."""
    td = np.asarray(td, dtype=float)
    td = td[np.isfinite(td)]
    if td.size == 0:
        raise UserInputError("no case has a defined texture disparity")
    low, high = float(td.min()), float(td.max())
    if edges is not None:
        edges = tuple(float(e) for e in edges)
        if any(not math.isfinite(e) for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
            raise UserInputError(f"--bin-edges must be finite and strictly increasing, got {list(edges)}")
        return ComplexityBins(edges, low, high, "user")
    if n_bins is None or n_bins < 1:
        raise UserInputError(f"--bins must be >= 1, got {n_bins}")
    quantiles = np.quantile(td, np.arange(1, n_bins) / n_bins)
    interior = tuple(float(q) for q in np.unique(quantiles) if low < q <= high)
    return ComplexityBins(interior, low, high, "quantile")


# --- the rule ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """The candidate against one other model: ``difference`` = candidate's advantage (positive = better,
    in the metric's unit) with its 95 % bootstrap CI and one-sided p-values."""

    model: str
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    significant: bool
    # the smallest p that means anything here: the bootstrap's resolution 1 / (B + 1), and no smaller than
    # what an exact paired (signed-rank) test could reach with these cases, 2 / 2^n (1/128 for 8 cases)
    p_floor: float = math.nan


@dataclass(frozen=True)
class Cell:
    bin_index: int
    td_low: float
    td_high: float
    condition: str
    family: str | None
    severity: float | None
    n_cases: int  # distinct case ids: the resampling unit
    n_observations: int  # (eval output, case) pairs
    means: dict[str, float]
    verdict: str
    best: str | None  # the candidate (best mean); the winner only when verdict == WINNER
    tied: tuple[str, ...]  # models not separated from the candidate (NO_CLEAR_WINNER)
    comparisons: tuple[Comparison, ...]
    reason: str


@dataclass
class Rule:
    settings: RuleSettings
    bins: ComplexityBins
    models: tuple[str, ...]
    cells: list[Cell]
    sources: list[str] = field(default_factory=list)
    dropped_cases: int = 0  # (case, condition) items left out: undefined TD or metric
    shifted_cases: int = 0  # evaluated cases at an alpha their model was not trained at
    in_distribution: bool = False

    def cell(self, bin_index: int, condition: str) -> Cell | None:
        return next((c for c in self.cells if c.bin_index == bin_index and c.condition == condition), None)

    @property
    def conditions(self) -> dict[str, tuple[str | None, float | None]]:
        """Condition name -> (family, severity), in table order."""
        return {c.condition: (c.family, c.severity) for c in self.cells}

    def to_json(self, query: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON report: settings, evidence, bins, every cell, and ``query`` (what was asked plus
        the ``Recommendation``) when given."""
        return json_ready({
            "settings": {**asdict(self.settings), "in_distribution": self.in_distribution,
                         "confidence": CONFIDENCE, "one_sided_alpha": ONE_SIDED_ALPHA,
                         "higher_is_better": self.settings.higher_is_better},
            "evidence": {"sources": self.sources, "models": list(self.models),
                         "dropped_case_conditions": self.dropped_cases,
                         "cases_at_untrained_alpha": self.shifted_cases},
            "bins": {"method": self.bins.method, "interior_edges": list(self.bins.edges),
                     "observed_td_range": [self.bins.observed_low, self.bins.observed_high],
                     "labels": [self.bins.label(i) for i in range(self.bins.count)]},
            "cells": [asdict(c) for c in self.cells],
            **({"query": query} if query is not None else {}),
        })


def fit_rule(evidence: pd.DataFrame, settings: RuleSettings, bins: ComplexityBins) -> Rule:
    """Apply the decision rule (module docstring) to every (TD bin, condition) cell of the evidence."""
    models = tuple(sorted(evidence["model"].unique()))
    evidence = evidence.assign(bin=bins.index(evidence["td"].to_numpy()))
    conditions = evidence.drop_duplicates("condition")[["condition", "family", "severity"]]
    # Clean first, then by family and severity: the order of the printed table.
    conditions = conditions.assign(_clean=conditions["condition"] != CLEAN,
                                   _family=conditions["family"].fillna("")).sort_values(
        ["_clean", "_family", "severity", "condition"], kind="stable")
    cells = []
    for condition, family, severity in conditions[["condition", "family", "severity"]].itertuples(index=False):
        for bin_index in range(bins.count):
            rows = evidence[(evidence["condition"] == condition) & (evidence["bin"] == bin_index)]
            cells.append(_decide_cell(rows, models, settings, bins, bin_index, condition,
                                      None if pd.isna(family) else str(family),
                                      None if pd.isna(severity) else float(severity)))
    return Rule(settings, bins, models, cells, sources=sorted(evidence["source"].unique()),
                dropped_cases=int(evidence.attrs.get("dropped_cases", 0)),
                shifted_cases=int(evidence.attrs.get("shifted_cases", 0)),
                in_distribution=bool(evidence.attrs.get("in_distribution", False)))


def _decide_cell(rows: pd.DataFrame, models: tuple[str, ...], settings: RuleSettings, bins: ComplexityBins,
                 bin_index: int, condition: str, family: str | None, severity: float | None) -> Cell:
    td_low, td_high = bins.bounds(bin_index)
    common = dict(bin_index=bin_index, td_low=td_low, td_high=td_high, condition=condition, family=family,
                  severity=severity)
    # wide: one row per observation (eval output, case), one column per model.
    wide = rows.pivot_table(index=["source", "case"], columns="model", values="value", aggfunc="first")
    wide = wide.reindex(columns=list(models))
    n_cases = wide.index.get_level_values("case").nunique()
    means = {m: float(wide[m].mean()) if len(wide) else math.nan for m in models}
    if n_cases < settings.min_cases:
        return Cell(**common, n_cases=n_cases, n_observations=len(wide), means=means, verdict=INSUFFICIENT,
                    best=None, tied=(), comparisons=(),
                    reason=f"{n_cases} case(s), fewer than the minimum of {settings.min_cases}")

    sign = 1.0 if settings.higher_is_better else -1.0
    best = max(models, key=lambda m: (sign * means[m], -models.index(m)))  # ties: first name
    others = [m for m in models if m != best]
    advantage = sign * (wide[[best]].to_numpy() - wide[others].to_numpy())  # (observations, others)
    # Cluster bootstrap over case ids: the same test image scored in several eval outputs moves as one.
    case_codes, case_ids = pd.factorize(wide.index.get_level_values("case"))
    sums = np.zeros((len(case_ids), len(others)))
    np.add.at(sums, case_codes, advantage)
    counts = np.bincount(case_codes, minlength=len(case_ids)).astype(float)
    rng = group_rng(settings.seed, "recommend", condition, str(bin_index))
    draws = rng.integers(0, len(case_ids), size=(settings.n_bootstrap, len(case_ids)))
    boot = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)[:, None]  # (B, others)
    observed = advantage.mean(axis=0)
    tail = 100 * (1 - CONFIDENCE) / 2
    ci_low, ci_high = np.percentile(boot, [tail, 100 - tail], axis=0)
    p_values = ((boot <= settings.min_difference).sum(axis=0) + 1) / (settings.n_bootstrap + 1)
    p_adjusted = holm(p_values) if settings.correction == "holm" else p_values
    p_floor = max(1.0 / (settings.n_bootstrap + 1), wilcoxon_p_floor(n_cases))
    comparisons = tuple(
        Comparison(model, float(observed[k]), float(ci_low[k]), float(ci_high[k]), float(p_values[k]),
                   float(p_adjusted[k]), bool(p_adjusted[k] < ONE_SIDED_ALPHA), p_floor)
        for k, model in enumerate(others))
    if all(c.significant for c in comparisons):
        margin = f" by more than {settings.min_difference:g}" if settings.min_difference else ""
        return Cell(**common, n_cases=n_cases, n_observations=len(wide), means=means, verdict=WINNER, best=best,
                    tied=(), comparisons=comparisons,
                    reason=f"{best} beats every other model{margin} (bootstrap, {settings.correction} correction)")
    tied = (best, *(c.model for c in comparisons if not c.significant))
    return Cell(**common, n_cases=n_cases, n_observations=len(wide), means=means, verdict=NO_CLEAR_WINNER,
                best=best, tied=tied, comparisons=comparisons,
                reason=f"the data do not separate {', '.join(tied)}")


# --- the query -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recommendation:
    """The answer for one dataset: ``model`` is None unless the evidence names a winner."""

    model: str | None
    verdict: str
    reason: str
    td_median: float
    td_cases: int
    condition: str | None
    bin_index: int | None
    share_of_cases_in_bin: float | None
    cell: Cell | None
    caveats: tuple[str, ...]


def resolve_condition(rule: Rule, spec: str) -> tuple[str | None, str]:
    """An evaluated condition for ``spec``: a condition name (``clean``, ``gaussian_noise_sev3``,
    ``seed-study_harder``) or ``FAMILY:SEVERITY`` with any severity inside the family's evaluated
    range (clean counts as severity 0), mapped to the nearest evaluated severity (ties: the higher,
    the more pessimistic). Returns (condition or None, note)."""
    conditions = rule.conditions
    if spec in conditions:
        return spec, f"condition {spec}"
    family, sep, level = spec.rpartition(":")
    if not sep:
        raise UserInputError(f"--condition {spec!r}: not an evaluated condition ({', '.join(conditions)}) "
                             "nor FAMILY:SEVERITY")
    try:
        severity = float(level)
    except ValueError:
        raise UserInputError(f"--condition {spec!r}: severity {level!r} is not a number") from None
    if not np.isfinite(severity):  # float() takes "nan" and "inf", which no comparison below would refuse
        raise UserInputError(f"--condition {spec!r}: severity {level!r} is not a finite number")
    levels = {s: name for name, (f, s) in conditions.items() if f == family and s is not None}
    if not levels:
        families = sorted({f for f, _ in conditions.values() if f})
        raise UserInputError(f"--condition {spec!r}: family {family!r} was not evaluated "
                             f"(evaluated families: {', '.join(families) or 'none'})")
    if CLEAN in conditions:
        levels.setdefault(0.0, CLEAN)
    low, high = min(levels), max(levels)
    if not low <= severity <= high:
        return None, (f"{family} severity {severity:g} is outside the evaluated severities {low:g}..{high:g} "
                      "(no extrapolation)")
    nearest = min(levels, key=lambda s: (abs(s - severity), -s))
    return levels[nearest], f"{family} severity {severity:g} -> evaluated condition {levels[nearest]}"


def recommend(rule: Rule, dataset_td: np.ndarray, condition: str = CLEAN) -> Recommendation:
    """The rule's answer for a dataset with per-case TDs ``dataset_td`` under ``condition``."""
    td = np.asarray(dataset_td, dtype=float)
    td = td[np.isfinite(td)]
    if td.size == 0:
        raise UserInputError("the dataset has no case with a defined texture disparity")
    median = float(np.median(td))
    caveats = []
    condition_name, condition_note = resolve_condition(rule, condition)
    if condition_name is None:
        return Recommendation(None, INSUFFICIENT, condition_note, median, int(td.size), None, None, None, None,
                              tuple(caveats))
    outside = float(np.mean(~((td >= rule.bins.observed_low) & (td <= rule.bins.observed_high))))
    if not rule.bins.covers(median):
        return Recommendation(
            None, INSUFFICIENT,
            f"median TD {median:.4g} bits is outside the evidence's TD range "
            f"[{rule.bins.observed_low:.4g}, {rule.bins.observed_high:.4g}] (no extrapolation)",
            median, int(td.size), condition_name, None, None, None, tuple(caveats))
    bin_index = int(rule.bins.index(median))
    low, high = rule.bins.bounds(bin_index)
    share = float(np.mean((td >= low) & (td <= high) & (rule.bins.index(td) == bin_index)))
    if share < 0.5:
        caveats.append(f"only {share:.0%} of the dataset's cases fall in this TD bin; its cases span "
                       f"{td.min():.4g}..{td.max():.4g} bits")
    if outside > 0:
        caveats.append(f"{outside:.0%} of the dataset's cases lie outside the evidence's TD range")
    if rule.shifted_cases:
        caveats.append(f"the evidence includes {rule.shifted_cases} test case(s) at a blend level their models were "
                       "not trained at (a distribution shift your own training data may not have); "
                       "--in-distribution keeps matched ones only")
    cell = rule.cell(bin_index, condition_name)
    assert cell is not None  # fit_rule makes a cell for every bin x condition
    if cell.verdict == WINNER:
        return Recommendation(cell.best, WINNER, f"{condition_note}: {cell.reason}", median, int(td.size),
                              condition_name, bin_index, share, cell, tuple(caveats))
    reason = f"{condition_note}: {cell.verdict} ({cell.reason})"
    return Recommendation(None, INSUFFICIENT, reason, median, int(td.size), condition_name, bin_index, share, cell,
                          tuple(caveats))


# --- text output -----------------------------------------------------------------------------------------

def _cell_summary(cell: Cell, metric: str) -> str:
    if cell.verdict == INSUFFICIENT:
        return f"{INSUFFICIENT} ({cell.reason})"
    closest = min(cell.comparisons, key=lambda c: c.difference)
    effect = (f"{closest.difference:+.3f} {metric} vs {closest.model} [{closest.ci_low:+.3f}, {closest.ci_high:+.3f}], "
              f"p_adj={closest.p_adjusted:.3g}")
    if cell.verdict == WINNER:
        return f"{WINNER} {cell.best}: {effect}"
    return f"{NO_CLEAR_WINNER} among {', '.join(cell.tied)} (best mean {cell.best}: {effect})"


def format_rule(rule: Rule) -> str:
    """The rule table, one line per cell."""
    header = ("TD bin (bits)", "condition", "cases", "verdict")
    lines = [(rule.bins.label(c.bin_index), c.condition, str(c.n_cases), _cell_summary(c, rule.settings.metric))
             for c in rule.cells]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(3)]
    text = [f"evidence: {len(rule.models)} models ({', '.join(rule.models)}) from {len(rule.sources)} eval "
            f"output(s); metric {rule.settings.metric} ({rule.settings.label}); TD bins by {rule.bins.method}; "
            f"observed TD {rule.bins.observed_low:.4g}..{rule.bins.observed_high:.4g} bits"]
    if rule.dropped_cases:
        text.append(f"left out: {rule.dropped_cases} case x condition(s) with an undefined TD or metric")
    text += ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3]
             for row in [header, *lines]]
    return "\n".join(text)


def format_recommendation(recommendation: Recommendation, metric: str) -> str:
    r = recommendation
    lines = [f"your dataset: median TD {r.td_median:.4g} bits over {r.td_cases} case(s)"]
    if r.model is not None:
        lines.append(f"recommendation: {r.model}")
    else:
        lines.append(f"recommendation: {INSUFFICIENT}")
    lines.append(f"  why: {r.reason}")
    if r.cell is not None:
        c = r.cell
        lines.append(f"  cell: TD {c.td_low:.4g}..{c.td_high:.4g} bits, condition {c.condition}, {c.n_cases} case(s), "
                     "means " + ", ".join(f"{m} {v:.3f}" for m, v in c.means.items()))
        for comparison in c.comparisons:
            lines.append(f"  {c.best} vs {comparison.model}: {comparison.difference:+.3f} {metric} "
                         f"[{comparison.ci_low:+.3f}, {comparison.ci_high:+.3f}] (95 % CI), "
                         f"p={comparison.p_value:.3g}, adjusted {comparison.p_adjusted:.3g} (with {c.n_cases} case(s) "
                         f"no p below {comparison.p_floor:.2g} means anything)")
    lines += [f"  caveat: {caveat}" for caveat in r.caveats]
    return "\n".join(lines)

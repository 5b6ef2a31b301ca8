"""ROOD-MRI's severity-weighted degradation and overall score (Dice, HD95) per model x family, to set next
to published ROOD-MRI numbers (``analysis/rood_mri.py``); report section "ROOD-MRI-comparable summary"."""

from __future__ import annotations

from typing import Any

import pandas as pd

from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.eval_analyses.base import Analysis, Result, Section, State
from nnunet_robustness.analysis.rood_mri import rood_mri_summary
from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN
from nnunet_robustness.metrics.masks import metric_title
from nnunet_robustness.reports.html import note, table


def _run(state: State) -> dict[str, Any]:
    return {"rood_mri": _rood_mri_table(state.shared["robust"], state.measured.conditions)}


def _rood_mri_table(table: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """ROOD-MRI's summary of the foreground mean, over the graded conditions (presets, context crops and
    cancelled conditions have no place in it)."""
    graded = conditions[conditions["is_clean"] | conditions["severity"].notna()][["model", "condition", "family",
                                                                                  "severity"]]
    rows = table[table["label"] == stats.FOREGROUND_MEAN].merge(graded, on=["model", "condition"])
    rows = rows[rows["family"].notna() | (rows["severity"] == 0)]
    rows.loc[rows["severity"] == 0, "family"] = None
    if rows["family"].notna().sum() == 0 or not (rows["severity"] == 0).any():
        return pd.DataFrame()
    return rood_mri_summary(rows, metrics=("dice", "hd95_mm"), by_label=False)


def _rood_mri(result: Result) -> str:
    rood = result.rood_mri
    if not len(rood):
        return note("No graded corruption family with a clean condition.")
    curves = result.severity_curves
    auc = ({(r["model"], r["family"], r["metric"]): r["auc"] for _, r in
            curves[curves["label"] == FOREGROUND_MEAN].iterrows()} if len(curves) else {})
    rows = [[r["model"], r["family"], metric_title(r["metric"]), r["clean"], r["degradation"],
             r["overall"], auc.get((r["model"], r["family"], r["metric"])),
             ", ".join(f"{s:g}" for s in r["severities"])] for _, r in rood.iterrows()]
    return (note("ROOD-MRI's severity-weighted numbers (Boone et al., NeuroImage 2023; weights (2/3)^severity): "
                 "degradation = weighted mean loss from clean (positive = worse), overall = weighted mean level "
                 "with clean at weight 1. Our AUC (mean level over severity 0..5, all levels alike) beside them. "
                 "Comparable with published ROOD-MRI results only for the same families and severities.")
            + table(["model", "family", "metric", "clean", "ROOD degradation", "ROOD overall", "our AUC",
                     "severities"], rows, text_columns=(0, 1, 2, 7)))


ANALYSIS = Analysis(
    name="ROOD-MRI",
    outputs={"rood_mri": pd.DataFrame},
    run=_run,
    summary=lambda result: {"rood_mri": result.rood_mri.to_dict(orient="records")},
    sections=(Section(70, "ROOD-MRI-comparable summary", _rood_mri),),
)

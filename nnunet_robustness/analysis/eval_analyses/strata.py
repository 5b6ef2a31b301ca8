"""Strata and subgroups (eval --strata, eval --metadata --by, or a make-dataset dataset's levels): every
group of cases judged on its own as well as pooled (``analysis/strata.py``): its comparisons (rows of the
comparisons with the group in their ``stratum`` column), statistics, degradation and verdict; report
section "Strata and subgroups"."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nnunet_robustness.analysis.eval_analyses.base import Analysis, Result, Section, State
from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN
from nnunet_robustness.analysis.strata import SMALL_GROUP, STRATUM, compare_within_groups, group_verdicts
from nnunet_robustness.reports.html import esc, fmt, note, png, table


def _run(state: State) -> dict[str, Any]:
    m, options, shared = state.measured, state.options, state.shared
    comparisons, statistics, degradation = compare_within_groups(
        state.values["robustness_comparisons"], m.groups, shared["with_mean"], shared["robust"],
        shared["degradation_rows"], shared["judged_runs"], m.clean, options.seed, options.n_bootstrap)
    return {"robustness_comparisons": comparisons, "strata_statistics": statistics, "strata_degradation": degradation}


def _conclude(state: State) -> dict[str, Any]:
    return {"strata_verdicts": group_verdicts(state.measured.groups, state.values["robustness_comparisons"],
                                              state.shared["judged_runs"], state.options.equivalence)}


def _summary(result: Result) -> dict[str, Any]:
    return {"strata": {"verdicts": result.strata_verdicts,
                       "statistics": result.strata_statistics.to_dict(orient="records"),
                       "degradation": result.strata_degradation.to_dict(orient="records")}
            if result.strata_verdicts else {}}


def _strata(result: Result) -> str:
    record = result.settings.get("strata") or {}
    counts = record.get("cases", {})
    # results of an older summary have no groupings: every group is then one stratum
    groupings = record.get("groupings") or {STRATUM: list(result.strata_verdicts)}
    small = record.get("small_group", SMALL_GROUP)
    sources = [f"strata from {record['source']}" if record.get("source") else None,
               f"subgroups from {record['metadata']} (by {', '.join(record.get('by') or [])})"
               if record.get("metadata") else None]
    parts = [note(f"{'; '.join(s for s in sources if s).capitalize()}. Pooled results above can hide a model that "
                  "wins on one group and loses on another, or a group on which every model falls further; here "
                  "every group is judged on its own cases (same statistics; every test in the report's one FDR "
                  f"family). Groups of fewer than {small} cases are marked small: their intervals are wide.")]
    size_rows = [[grouping, name, counts.get(name), f"small (< {small})" if counts.get(name, small) < small else ""]
                 for grouping, names in groupings.items() for name in names]
    parts.append(table(["grouping", "group", "cases", ""], size_rows, text_columns=(0, 1, 3)))
    parts.append(_group_degradation_plots(result, groupings))
    statistics = result.strata_statistics
    dice = statistics[statistics["metric"] == "dice"] if len(statistics) else statistics
    drops = result.strata_degradation
    drops = drops[drops["metric"] == "dice"] if len(drops) else drops
    for name, sentences in result.strata_verdicts.items():
        rows = dice[dice[STRATUM] == name]
        wide = rows.pivot_table(index="condition", columns="model", values="mean", aggfunc="first", sort=False)
        table_rows = [[condition, *[wide.at[condition, m] if m in wide else None for m in result.models]]
                      for condition in wide.index]
        drop_rows = [[r["model"], r["condition"], f"{fmt(r['absolute'])} [{fmt(r['absolute_ci_low'])}, "
                      f"{fmt(r['absolute_ci_high'])}]"] for _, r in drops[drops[STRATUM] == name].iterrows()] \
            if len(drops) else []
        parts.append(f"<h3>{esc(name)} ({counts.get(name, 'n/a')} cases)</h3>"
                     + ("<ul>" + "".join(f"<li>{esc(s)}</li>" for s in sentences) + "</ul>" if sentences else "")
                     + "<details><summary>mean Dice per condition</summary>"
                     + table(["condition", *result.models], table_rows, text_columns=(0,)) + "</details>"
                     + ("<details><summary>Dice degradation vs clean</summary>"
                        + table(["model", "condition", "absolute [95% CI]"], drop_rows, text_columns=(0, 1, 2))
                        + "</details>" if drop_rows else ""))
    return "".join(parts)


def _group_degradation_plots(result: Result, groupings: dict[str, list[str]]) -> str:
    """Per grouping, one panel per model: the Dice degradation of each group under each condition with its
    95 % interval, beside the pooled degradation (grey), so a group that falls further stands out."""
    drops = result.strata_degradation
    if not len(drops) or result.clean_condition is None:
        return note("No degradation by group: no clean condition or no other condition.")
    import matplotlib.pyplot as plt

    drops = drops[drops["metric"] == "dice"]
    pooled = result.degradation
    pooled = pooled[(pooled["metric"] == "dice") & (pooled["label"] == FOREGROUND_MEAN)] if len(pooled) else pooled
    conditions = [c for c in dict.fromkeys(result.conditions["condition"]) if c in set(drops["condition"])]
    counts = (result.settings.get("strata") or {}).get("cases", {})
    x = np.arange(len(conditions), dtype=float)
    parts = []
    for grouping, names in groupings.items():
        figure, axes = plt.subplots(1, len(result.models), figsize=(max(4.5, 0.55 * len(conditions) + 2.5)
                                                                    * len(result.models), 3.6), squeeze=False,
                                 sharey=True)  # one scale: the models' degradations are compared across panels
        for axis, model in zip(axes[0], result.models):
            for index, name in enumerate(names):
                rows = drops[(drops[STRATUM] == name) & (drops["model"] == model)].set_index("condition").reindex(
                    conditions)
                # groups nudged apart along x: their intervals overlap at the same condition
                offset = (index / max(len(names) - 1, 1) - 0.5) * min(0.5, 0.12 * len(names))
                means = rows["absolute"].to_numpy(dtype=float)
                errors = np.abs(np.vstack([means - rows["absolute_ci_low"].to_numpy(dtype=float),
                                           rows["absolute_ci_high"].to_numpy(dtype=float) - means]))
                axis.errorbar(x + offset, means, yerr=errors, marker="o", linestyle="none", capsize=3,
                              label=f"{name} (n = {counts.get(name, '?')})")
            overall = pooled[pooled["model"] == model].set_index("condition").reindex(conditions)
            axis.plot(x, overall["absolute"].to_numpy(dtype=float), color="grey", linewidth=1, marker="_",
                      markersize=14, linestyle="none", label="all cases")
            axis.axhline(0, color="black", linewidth=0.6)
            axis.set_xticks(x, conditions, rotation=45, ha="right", fontsize="small")
            axis.set_ylabel("Dice degradation (clean - condition)")
            axis.set_title(model)
            axis.grid(alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize="small", frameon=False)
        figure.tight_layout(rect=(0, 0.07, 1, 1))
        parts.append(f"<h3>Dice degradation by {esc(grouping)}</h3>{png(figure)}")
        plt.close(figure)
    return (note("Per group: the mean Dice degradation from clean (positive = worse) with its 95% bootstrap interval; "
                 "grey: all cases pooled.") + "".join(parts))


ANALYSIS = Analysis(
    name="strata and subgroups",
    outputs={"strata_verdicts": dict, "strata_statistics": pd.DataFrame, "strata_degradation": pd.DataFrame},
    needs=lambda measured, options: bool(measured.groups),
    run=_run,
    conclude=_conclude,
    summary=_summary,
    sections=(Section(110, "Strata and subgroups: the verdict, scores and degradation per group of cases", _strata,
                      shown=lambda result: bool(result.strata_verdicts)),),
)

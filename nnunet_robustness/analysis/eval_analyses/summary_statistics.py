"""Summary statistics: per model, condition, label and metric the mean and median with bootstrap intervals,
the degradation from clean, the severity curves, and the model comparisons of the scores (the share of cases
each model is best on, paired Wilcoxon tests); report sections "Summary", "Metric vs severity", "Degradation
vs clean" and "Model comparison"."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.eval_analyses.base import Analysis, Result, Section, State
from nnunet_robustness.analysis.robustness import COMPARISON_METRICS
from nnunet_robustness.analysis.statistics import ALL_CONDITIONS, FOREGROUND_MEAN
from nnunet_robustness.metrics.masks import METRICS, metric_title
from nnunet_robustness.reports.html import esc, finite, fmt, nan_array, note, png, table

CURVE_METRICS = COMPARISON_METRICS  # the metrics compared in the verdict, plotted against severity


def _run(state: State) -> dict[str, Any]:
    m, seed, n_bootstrap = state.measured, state.options.seed, state.options.n_bootstrap
    conditions, clean, runs = m.conditions, m.clean, m.runs
    model_names = [model.name for model in m.predictions]
    with_mean = stats.add_foreground_mean(m.per_case)
    statistics = stats.summary_statistics(with_mean, seed, n_bootstrap)
    # Robustness summaries leave out conditions the model's normalisation cancelled: their scores equal
    # clean by construction and would read as robustness.
    cancelled = set(conditions.loc[conditions["cancelled"], "condition"])
    robust = with_mean[~with_mean["condition"].isin(cancelled)]
    first_condition = conditions[~conditions["cancelled"]].drop_duplicates("condition")[
        ["condition", "family", "severity"]]
    # with several runs per model, the model comparisons of the scores use each model's run-averaged cases
    by_model = average_runs(robust, runs)
    compared = list(runs) if by_model is not robust else model_names
    state.shared.update(with_mean=with_mean, robust=robust)
    return {"statistics": statistics,
            "degradation": stats.degradation(robust, clean, seed, n_bootstrap),
            "severity_curves": stats.severity_curves(statistics[~statistics["condition"].isin(cancelled)],
                                                     first_condition, clean),
            "best_model_shares": stats.best_model_shares(by_model, compared),
            "pairwise_tests": stats.pairwise_tests(by_model, compared)}


def average_runs(table: pd.DataFrame, runs: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Per model, condition, case and label: the metrics averaged over the model's runs (``table`` itself
    when every model has one run)."""
    if all(len(members) == 1 for members in runs.values()):
        return table
    arm_of = {run: arm for arm, members in runs.items() for run in members}
    metrics = list(METRICS)
    return (table.assign(model=table["model"].map(arm_of))
            .groupby(["model", "condition", "case", "label"], sort=False)[metrics].mean().reset_index())


def _summary(result: Result) -> dict[str, Any]:
    per_model: dict[str, Any] = {}
    keys = dict(zip(result.per_case["label"], result.per_case["label_value"]))
    for (model, condition), group in result.statistics.groupby(["model", "condition"], sort=False):
        means = group.pivot(index="label", columns="metric", values="mean")
        per_model.setdefault(model, {})[condition] = {
            "mean": {keys[label]: {m: means.at[label, m] for m in METRICS} for label in keys},
            "foreground_mean": {m: means.at[stats.FOREGROUND_MEAN, m] for m in METRICS},
        }
    return {"per_model": per_model, **{key: getattr(result, key).to_dict(orient="records") for key in (
        "statistics", "degradation", "severity_curves", "best_model_shares", "pairwise_tests")}}


# --- report sections -----------------------------------------------------------------------------------

def what_the_model_saw(condition: Any) -> str | None:
    """One condition row's input change after the model's normalisation, as report text (None: unmeasured)."""
    if bool(condition.get("cancelled", False)):
        return "cancelled by the model's normalisation"
    if finite(condition.get("input_ssim")):
        return f"SSIM {fmt(condition['input_ssim'])}, rel. L2 {fmt(condition['input_rel_l2'])}"
    return None


def _summary_table(result: Result) -> str:
    reported = [name for name, metric in METRICS.items() if metric.reported]
    stats = result.statistics[(result.statistics["label"] == FOREGROUND_MEAN)
                              & result.statistics["metric"].isin(reported)].set_index(["model", "condition", "metric"])
    seen = result.conditions.set_index(["model", "condition"])
    rows = []
    for model, condition in zip(result.conditions["model"], result.conditions["condition"]):
        info = seen.loc[(model, condition)]
        saw = what_the_model_saw(info) or ("clean" if bool(info["is_clean"]) else None)
        if finite(info.get("calibrated_severity")):
            saw = f"{saw}; calibrated: family severity {fmt(info['calibrated_severity'])}"
        cells = [model, condition, saw]
        for metric in reported:
            key = (model, condition, metric)
            if key in stats.index:
                row = stats.loc[key]
                cells.append(f"{fmt(row['mean'])} [{fmt(row['mean_ci_low'])}, {fmt(row['mean_ci_high'])}]")
            else:
                cells.append(None)
        rows.append(cells)
    explanation = note("What the model saw: the median change of its input after its own normalisation (the plans' "
                       "per-channel scheme, e.g. z-score), SSIM and relative L2 distance to the clean input. A "
                       "condition whose change the normalisation removes (e.g. a global contrast or brightness "
                       "change under z-scoring) is marked cancelled and left out of every robustness summary.")
    body = table(["model", "condition", "what the model saw", *(metric_title(m) for m in reported)], rows,
                 text_columns=(0, 1, 2))
    # long tables fold away (shown at first); the verdict above is what most readers need
    return explanation + f"<details open><summary>{len(rows)} rows</summary>{body}</details>"


def _curves(result: Result) -> str:
    curves = result.severity_curves
    curves = curves[curves["label"] == FOREGROUND_MEAN] if len(curves) else curves
    if not len(curves):
        return note("No corruption family with two or more severity levels (and clean as severity 0).")
    import matplotlib.pyplot as plt

    parts = []
    for family, per_family in curves.groupby("family", sort=True):
        figure, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(4.2 * len(CURVE_METRICS), 3.3))
        for axis, metric in zip(axes, CURVE_METRICS):
            # intervals as error bars, models nudged apart along x: overlapping translucent bands of three
            # models muddy into one grey area
            spread = 0.06 * (len(result.models) - 1)
            for index, model in enumerate(result.models):
                rows = per_family[(per_family["model"] == model) & (per_family["metric"] == metric)]
                if not len(rows):
                    continue
                row = rows.iloc[0]
                offset = (index / max(len(result.models) - 1, 1) - 0.5) * spread
                x = np.asarray(row["severities"], dtype=float) + offset
                means = nan_array(row["means"])
                errors = np.abs(np.vstack([means - nan_array(row["ci_low"]), nan_array(row["ci_high"]) - means]))
                axis.errorbar(x, means, yerr=errors, marker="o", capsize=3, linewidth=1.5, label=model)
            axis.set_xticks(sorted({s for v in per_family["severities"] for s in v}))
            axis.set_xlabel("severity (0 = clean)")
            axis.set_title(metric_title(metric))
            axis.grid(alpha=0.3)
        # one legend below the panels: inside a panel it covered error bars (bias field: every curve sits
        # near the top where the legend went)
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=max(len(labels), 1), fontsize="small", frameon=False)
        figure.tight_layout(rect=(0, 0.1, 1, 1))
        parts.append(f"<h3>{esc(family)}</h3>{png(figure)}")
        plt.close(figure)
    dice = curves[curves["metric"] == "dice"]
    rows = [[r["model"], r["family"], r["auc"], r["cv"]] for _, r in dice.iterrows()]
    parts.append("<p class='note'>Area under the Dice-vs-severity curve, normalised by the severity range "
                 "(= average Dice over the range), and coefficient of variation of the per-severity means.</p>")
    parts.append(table(["model", "family", "normalised AUC (Dice)", "CV across severities (Dice)"], rows,
                        text_columns=(0, 1)))
    return "".join(parts)


def _degradation(result: Result) -> str:
    degradation = result.degradation
    if result.clean_condition is None or not len(degradation):
        return note("No clean condition (a condition named 'clean' or with severity 0): degradation not computed.")
    import matplotlib.pyplot as plt

    dice = degradation[(degradation["label"] == FOREGROUND_MEAN) & (degradation["metric"] == "dice")]
    conditions = [c for c in dict.fromkeys(result.conditions["condition"]) if c != result.clean_condition]
    matrix = dice.pivot(index="model", columns="condition", values="relative").reindex(
        index=result.models, columns=conditions).to_numpy(dtype=float) * 100
    figure, axis = plt.subplots(figsize=(max(4.0, 0.75 * len(conditions) + 2.5), 0.6 * len(result.models) + 2.2))
    values = matrix[np.isfinite(matrix)]
    limit = max(1.0, float(np.abs(values).max())) if values.size else 1.0
    image = axis.imshow(np.ma.masked_invalid(matrix), cmap="RdYlGn_r", vmin=-limit, vmax=limit, aspect="auto")
    axis.set_xticks(range(len(conditions)), conditions, rotation=45, ha="right", fontsize="small")
    axis.set_yticks(range(len(result.models)), result.models)
    for (i, j), value in np.ndenumerate(matrix):
        text = "n/a" if not np.isfinite(value) else f"{value:.1f}"
        axis.text(j, i, "0.0" if text == "-0.0" else text, ha="center", va="center", fontsize="small")
    figure.colorbar(image, ax=axis, label="relative Dice degradation (%)")
    figure.tight_layout()
    heatmap = png(figure)
    plt.close(figure)
    rows = [[r["model"], r["condition"], r["clean_mean"], r["condition_mean"],
             f"{fmt(r['absolute'])} [{fmt(r['absolute_ci_low'])}, {fmt(r['absolute_ci_high'])}]",
             fmt(100 * r["relative"]) + " %" if finite(r["relative"]) else None]
            for _, r in dice.iterrows()]
    return (note("Degradation is positive when the condition is worse than clean; relative = absolute / clean mean.")
            + heatmap + table(["model", "condition", "clean Dice", "Dice", "absolute [95% CI]", "relative"], rows,
                               text_columns=(0, 1)))


def _compared_models(result: Result) -> list[str]:
    """The report's names (failed ones marked) of the models the verdict judged: those that passed the
    sanity gate, or every model with --allow-weak-models (a result without checks judged every model)."""
    if not result.model_checks:
        return list(result.models)
    kept = {c["model"] if c["passed"] else f"{c['model']} (fails sanity gate)"
            for c in result.model_checks if c.get("kept", c["passed"])}
    return [m for m in result.models if m in kept]


def _comparison(result: Result) -> str:
    compared = _compared_models(result)
    if len(compared) < 2:
        # shares and tests among models that do not segment the clean images would crown one of them
        passed = ", ".join(compared) or "none"
        return note(f"No model comparison: fewer than two models passed the sanity gate (passed: {passed}); see "
                    "the overview for each model's reason. No model is the best here.")
    shares = result.best_model_shares
    shares = shares[(shares["label"] == FOREGROUND_MEAN) & (shares["metric"] == "dice")]
    wide = shares.pivot(index="condition", columns="model", values="best_share")
    order = [c for c in [*dict.fromkeys(result.conditions["condition"]), ALL_CONDITIONS] if c in wide.index]
    wide = wide.reindex(index=order, columns=result.models)
    n_cases = shares.groupby("condition")["n_cases"].first()
    share_rows = [[condition, *(fmt(100 * v) + " %" if finite(v) else None for v in wide.loc[condition]),
                   n_cases.get(condition)] for condition in order]
    tests = result.pairwise_tests
    tests = tests[(tests["label"] == FOREGROUND_MEAN) & (tests["metric"] == "dice")
                  & tests["model_a"].isin(compared) & tests["model_b"].isin(compared)]
    left_out = [m for m in result.models if m not in compared]
    test_rows = [[r["condition"], f"{r['model_a']} vs {r['model_b']}", r["n"], r["mean_difference"], r["p_value"],
                  r["p_holm"], r.get("p_fdr")] for _, r in tests.iterrows()]
    return ("<h3>Share of cases on which each model has the best Dice</h3>"
            + note("Ties share the case equally. '(all conditions)' pools every case x condition.")
            + table(["condition", *result.models, "cases"], share_rows, text_columns=(0,))
            + "<h3>Paired Wilcoxon signed-rank tests (Dice under each condition)</h3>"
            + note("Holm within each condition (the model pairs); BH-FDR over every test in this report, "
                   "together with the degradation comparisons of the verdict."
                   + (f" Models that failed the sanity gate are left out: {', '.join(left_out)}." if left_out else ""))
            + table(["condition", "models", "n", "mean difference (a - b)", "p", "p (Holm)", "p (BH-FDR)"], test_rows,
                     text_columns=(0, 1)))


ANALYSIS = Analysis(
    name="summary statistics",
    outputs={name: pd.DataFrame for name in ("statistics", "degradation", "severity_curves", "best_model_shares",
                                             "pairwise_tests")},
    run=_run,
    summary=_summary,
    sections=(Section(50, "Summary (foreground mean per case; mean [95% CI])", _summary_table),
              Section(60, "Metric vs severity", _curves),
              Section(80, "Degradation vs clean", _degradation),
              Section(120, "Model comparison", _comparison, shown=lambda result: len(result.models) > 1)),
)

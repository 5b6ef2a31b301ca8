"""One self-contained HTML report of an evaluation: tables, and PNG plots embedded as base64.

Plots use the per-case foreground mean (the mean over labels/regions of each case): metric-vs-severity
curves per corruption family with 95 % bootstrap bands per model, a heatmap of the relative Dice
degradation (models x conditions), and a per-case scatter of clean vs corrupted Dice. Undefined values
are shown as "n/a", never as a number.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from nnunet_robustness.evaluation.evaluate import EvaluationResult
from nnunet_robustness.evaluation.fbr import has_fbr_study, report_section as fbr_report_section
from nnunet_robustness.evaluation.statistics import ALL_CONDITIONS, FOREGROUND_MEAN
from nnunet_robustness.io import atomic_write_text

CURVE_METRICS = ("dice", "nsd", "hd95_mm")
TABLE_METRICS = ("dice", "nsd", "hd95_mm", "assd_mm")
METRIC_TITLES = {"dice": "Dice", "iou": "IoU", "nsd": "NSD", "hd95_mm": "HD95 (mm)", "assd_mm": "ASSD (mm)",
                 "abs_volume_difference": "|volume difference|", "rel_volume_difference": "relative volume difference"}


def write_report(result: EvaluationResult, path: str | os.PathLike, worst_cases: int = 15) -> Path:
    """Write the HTML report of ``result`` to ``path`` (atomically) and return the path."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's first import in this process
    path = Path(path)
    tolerance = result.settings.get("nsd_tolerance_mm")
    sections = [
        _overview(result),
        _section("Summary (foreground mean per case; mean [95% bootstrap CI])", _summary_table(result)),
        _section("Metric vs severity", _curves(result)),
        _section("Degradation vs clean", _degradation(result)),
        _section("Per-case scatter", _scatter(result)),
    ]
    if has_fbr_study(result):  # context conditions or FBR-logging trainers: the context-vs-FBR study
        sections.append(_section("Metric vs test FBR (foreground fraction)", fbr_report_section(result)))
    if len(result.models) > 1:
        sections.append(_section("Model comparison", _comparison(result)))
    sections.append(_section(f"Worst {worst_cases} structures by Dice", _worst_cases(result, worst_cases)))
    title = "nnunet-robust evaluation: " + ", ".join(result.models)
    intro = (f'<p class="note">NSD tolerance {_fmt(tolerance)} mm. Definitions, empty-mask policy and statistics:\n'
             "docs/evaluation.md of nnunet-robustness.</p>")
    document = html_page(title, intro + "".join(sections))
    atomic_write_text(path, document)
    return path


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page (inline style, no scripts, nothing fetched) around ``body``; shared by
    every report of the package so they look alike."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} td.text, th.text {{ text-align: left; }}
img {{ max-width: 100%; }} .note {{ color: #555; font-size: 0.9em; }}
.warning {{ background: #fff4e0; border-left: 4px solid #e69500; padding: 0.5em 1em; }}
</style></head><body>
<h1>{_esc(title)}</h1>
{body}
</body></html>
"""


# --- sections ------------------------------------------------------------------------------------------

def _overview(result: EvaluationResult) -> str:
    settings = result.settings
    per_case = result.per_case
    rows = [
        ("models", ", ".join(f"{m} ({settings.get('models', {}).get(m, '')})" for m in result.models)),
        ("reference", settings.get("reference")),
        ("dataset.json", settings.get("dataset_json")),
        ("cases", per_case["case"].nunique()),
        ("labels / regions", ", ".join(f"{n} = {v}" for n, v in dict(zip(per_case["label"], per_case["label_value"])).items())),
        ("conditions", ", ".join(dict.fromkeys(result.conditions["condition"]))),
        ("clean condition", result.clean_condition or "none (no degradation computed)"),
        ("bootstrap", f"{settings.get('n_bootstrap')} case resamples, seed {settings.get('seed')}"),
    ]
    unpredicted = settings.get("unpredicted_reference_cases") or []
    if unpredicted:
        rows.append(("reference cases without predictions", ", ".join(unpredicted)))
    counts = per_case["empty_mask"].value_counts()
    policy = settings.get("empty_mask_policy", {})
    empty_rows = [(f"{kind} empty", f"{int(counts.get(kind, 0))} structure(s): {policy.get(kind, '')}")
                  for kind in ("both", "reference", "prediction")]
    return _section("Overview", _table(["", ""], rows + empty_rows, text_columns=(0, 1)))


def _summary_table(result: EvaluationResult) -> str:
    stats = result.statistics[(result.statistics["label"] == FOREGROUND_MEAN)
                              & result.statistics["metric"].isin(TABLE_METRICS)].set_index(["model", "condition", "metric"])
    rows = []
    for model, condition in _model_conditions(result):
        cells = [model, condition]
        for metric in TABLE_METRICS:
            key = (model, condition, metric)
            if key in stats.index:
                row = stats.loc[key]
                cells.append(f"{_fmt(row['mean'])} [{_fmt(row['mean_ci_low'])}, {_fmt(row['mean_ci_high'])}]")
            else:
                cells.append(None)
        rows.append(cells)
    return _table(["model", "condition", *(METRIC_TITLES[m] for m in TABLE_METRICS)], rows, text_columns=(0, 1))


def _curves(result: EvaluationResult) -> str:
    curves = result.severity_curves
    curves = curves[curves["label"] == FOREGROUND_MEAN] if len(curves) else curves
    if not len(curves):
        return _note("No corruption family with two or more severity levels (and clean as severity 0).")
    import matplotlib.pyplot as plt

    parts = []
    for family, per_family in curves.groupby("family", sort=True):
        figure, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(4.2 * len(CURVE_METRICS), 3.3))
        for axis, metric in zip(axes, CURVE_METRICS):
            for model in result.models:
                rows = per_family[(per_family["model"] == model) & (per_family["metric"] == metric)]
                if not len(rows):
                    continue
                row = rows.iloc[0]
                line, = axis.plot(row["severities"], row["means"], marker="o", label=model)
                axis.fill_between(row["severities"], _nan_array(row["ci_low"]), _nan_array(row["ci_high"]),
                                  color=line.get_color(), alpha=0.2, linewidth=0)
            axis.set_xticks(sorted({s for v in per_family["severities"] for s in v}))
            axis.set_xlabel("severity (0 = clean)")
            axis.set_title(METRIC_TITLES[metric])
            axis.grid(alpha=0.3)
        axes[0].legend(fontsize="small")
        figure.tight_layout()
        parts.append(f"<h3>{_esc(family)}</h3>{_png(figure)}")
        plt.close(figure)
    dice = curves[curves["metric"] == "dice"]
    rows = [[r["model"], r["family"], r["auc"], r["cv"]] for _, r in dice.iterrows()]
    parts.append("<p class='note'>Area under the Dice-vs-severity curve, normalised by the severity range "
                 "(= average Dice over the range), and coefficient of variation of the per-severity means.</p>")
    parts.append(_table(["model", "family", "normalised AUC (Dice)", "CV across severities (Dice)"], rows,
                        text_columns=(0, 1)))
    return "".join(parts)


def _degradation(result: EvaluationResult) -> str:
    degradation = result.degradation
    if result.clean_condition is None or not len(degradation):
        return _note("No clean condition (a condition named 'clean' or with severity 0): degradation not computed.")
    import matplotlib.pyplot as plt

    dice = degradation[(degradation["label"] == FOREGROUND_MEAN) & (degradation["metric"] == "dice")]
    conditions = [c for c in dict.fromkeys(result.conditions["condition"]) if c != result.clean_condition]
    matrix = dice.pivot(index="model", columns="condition", values="relative").reindex(
        index=result.models, columns=conditions).to_numpy(dtype=float) * 100
    figure, axis = plt.subplots(figsize=(max(4.0, 0.75 * len(conditions) + 2.5), 0.6 * len(result.models) + 2.2))
    finite = matrix[np.isfinite(matrix)]
    limit = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    image = axis.imshow(np.ma.masked_invalid(matrix), cmap="RdYlGn_r", vmin=-limit, vmax=limit, aspect="auto")
    axis.set_xticks(range(len(conditions)), conditions, rotation=45, ha="right", fontsize="small")
    axis.set_yticks(range(len(result.models)), result.models)
    for (i, j), value in np.ndenumerate(matrix):
        axis.text(j, i, "n/a" if not np.isfinite(value) else f"{value:.1f}", ha="center", va="center", fontsize="small")
    figure.colorbar(image, ax=axis, label="relative Dice degradation (%)")
    figure.tight_layout()
    heatmap = _png(figure)
    plt.close(figure)
    rows = [[r["model"], r["condition"], r["clean_mean"], r["condition_mean"],
             f"{_fmt(r['absolute'])} [{_fmt(r['absolute_ci_low'])}, {_fmt(r['absolute_ci_high'])}]",
             _fmt(100 * r["relative"]) + " %" if _finite(r["relative"]) else None]
            for _, r in dice.iterrows()]
    return (_note("Degradation is positive when the condition is worse than clean; relative = absolute / clean mean.")
            + heatmap + _table(["model", "condition", "clean Dice", "Dice", "absolute [95% CI]", "relative"], rows,
                               text_columns=(0, 1)))


def _scatter(result: EvaluationResult) -> str:
    clean = result.clean_condition
    if clean is None:
        return _note("No clean condition: nothing to compare the per-case values with.")
    import matplotlib.pyplot as plt

    per_case = result.per_case.groupby(["model", "condition", "case"], sort=False)["dice"].mean().reset_index()
    figure, axis = plt.subplots(figsize=(5, 5))
    plotted = False
    for model in result.models:
        values = per_case[per_case["model"] == model]
        clean_values = values[values["condition"] == clean].set_index("case")["dice"]
        corrupted = values[values["condition"] != clean]
        if not len(corrupted):
            continue
        axis.scatter(corrupted["case"].map(clean_values), corrupted["dice"], s=14, alpha=0.6, label=model)
        plotted = True
    if not plotted:
        plt.close(figure)
        return _note("Only the clean condition was evaluated.")
    axis.plot([0, 1], [0, 1], color="grey", linewidth=1)
    axis.set_xlim(-0.02, 1.02)
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("Dice on clean input (per case, mean over labels)")
    axis.set_ylabel("Dice under corruption (every condition)")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    image = _png(figure)
    plt.close(figure)
    return _note("One point per case and corrupted condition; points below the diagonal lost Dice.") + image


def _comparison(result: EvaluationResult) -> str:
    shares = result.best_model_shares
    shares = shares[(shares["label"] == FOREGROUND_MEAN) & (shares["metric"] == "dice")]
    wide = shares.pivot(index="condition", columns="model", values="best_share")
    order = [c for c in [*dict.fromkeys(result.conditions["condition"]), ALL_CONDITIONS] if c in wide.index]
    wide = wide.reindex(index=order, columns=result.models)
    n_cases = shares.groupby("condition")["n_cases"].first()
    share_rows = [[condition, *(_fmt(100 * v) + " %" if _finite(v) else None for v in wide.loc[condition]),
                   n_cases.get(condition)] for condition in order]
    tests = result.pairwise_tests
    tests = tests[(tests["label"] == FOREGROUND_MEAN) & (tests["metric"] == "dice")]
    test_rows = [[r["condition"], f"{r['model_a']} vs {r['model_b']}", r["n"], r["mean_difference"], r["p_value"],
                  r["p_holm"]] for _, r in tests.iterrows()]
    return ("<h3>Share of cases on which each model has the best Dice</h3>"
            + _note("Ties share the case equally. '(all conditions)' pools every case x condition.")
            + _table(["condition", *result.models, "cases"], share_rows, text_columns=(0,))
            + "<h3>Paired Wilcoxon signed-rank tests (Dice), Holm-corrected per condition</h3>"
            + _table(["condition", "models", "n", "mean difference (a - b)", "p", "p (Holm)"], test_rows,
                     text_columns=(0, 1)))


def _worst_cases(result: EvaluationResult, count: int) -> str:
    worst = result.per_case.sort_values(["dice", "hd95_mm"], ascending=[True, False], kind="stable").head(count)
    rows = [[r["model"], r["condition"], r["case"], r["label"], r["dice"], r["nsd"], r["hd95_mm"],
             r["empty_mask"], r["prediction_file"], r["reference_file"]] for _, r in worst.iterrows()]
    return _table(["model", "condition", "case", "label", "Dice", "NSD", "HD95 (mm)", "empty mask", "prediction file",
                   "reference file"], rows, text_columns=(0, 1, 2, 3, 7, 8, 9))


# --- helpers -------------------------------------------------------------------------------------------

def _model_conditions(result: EvaluationResult) -> list[tuple[str, str]]:
    return list(zip(result.conditions["model"], result.conditions["condition"]))


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _fmt(value: Any) -> str:
    """Numbers to text; undefined values (None, NaN, inf) as 'n/a'."""
    if value is None or isinstance(value, str):
        return "n/a" if value is None else value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if not _finite(value):
        return "n/a"
    value = float(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3g}"
    return f"{value:.4g}" if abs(value) < 10 else f"{value:.2f}"


def _nan_array(values: Sequence[Any]) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in values])


def _esc(value: Any) -> str:
    return html.escape(_fmt(value))


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], text_columns: Sequence[int] = ()) -> str:
    def cell(tag: str, index: int, value: Any) -> str:
        css = " class='text'" if index in text_columns else ""
        return f"<{tag}{css}>{_esc(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _note(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='plot' src='data:image/png;base64,{encoded}'>"

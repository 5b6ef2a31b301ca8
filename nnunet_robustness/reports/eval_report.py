"""One self-contained HTML report of an evaluation: tables, and PNG plots embedded as base64.

The sections of the analyses are declared next to them (``analysis/eval_analyses/``, each with its place in
the report); this module adds the sections of the measured per-case table (overview, conditions, scatter,
pictures, worst cases) and puts them in order.

Plots use the per-case foreground mean (the mean over labels/regions of each case): metric-vs-severity
curves per corruption family with 95 % bootstrap bands per model, a heatmap of the relative Dice
degradation (models x conditions), and a per-case scatter of clean vs corrupted Dice. Undefined values
are shown as "n/a", never as a number.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_robustness.analysis import eval_analyses
from nnunet_robustness.analysis.eval_analyses.base import Section
from nnunet_robustness.analysis.eval_analyses.summary_statistics import what_the_model_saw
from nnunet_robustness.analysis.eval_pipeline import EvaluationResult
from nnunet_robustness.conditions import target_ssim
from nnunet_robustness.io import atomic_write_text
from nnunet_robustness.metrics.masks import metric_title
from nnunet_robustness.reports.html import esc, finite, fmt, html_page, note, png, section, table
from nnunet_robustness.reports.pictures import pictures_section

WORST_CASE_METRICS = ("dice", "nsd", "hd95_mm")


def write_report(result: EvaluationResult, path: str | os.PathLike, worst_cases: int = 15) -> Path:
    """Write the HTML report of ``result`` to ``path`` (atomically) and return the path."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's first import in this process
    path = Path(path)
    result = _mark_failed_models(result)
    tolerance = result.settings.get("nsd_tolerance_mm")
    measured = (
        Section(30, "Overview", _overview),
        Section(40, "Conditions: what each one applied", _definitions),
        Section(90, "Per-case scatter", _scatter),
        Section(150, "What the worst and median cases looked like",
                lambda r: pictures_section(r.per_case, r.models)),
        Section(160, f"Worst {worst_cases} structures by Dice", lambda r: _worst_cases(r, worst_cases)),
    )
    parts = sorted([*measured, *(part for analysis in eval_analyses.ANALYSES for part in analysis.sections)],
                   key=lambda part: part.order)
    sections = [section(part.title, part.render(result)) for part in parts if part.shown(result)]
    title = "nnunet-robust evaluation: " + ", ".join(result.models)
    intro = (f'<p class="note">NSD tolerance {fmt(tolerance)} mm. Definitions, empty-mask policy and statistics:\n'
             "docs/evaluation.md of nnunet-robustness.</p>")
    document = html_page(title, intro + "".join(sections))
    atomic_write_text(path, document)
    return path


def _mark_failed_models(result: EvaluationResult) -> EvaluationResult:
    """The result with every model that failed the sanity gate renamed "<model> (fails sanity gate)", so it
    is marked in every table and plot legend of the report."""
    import dataclasses

    import pandas as pd

    failed = {c["model"]: f"{c['model']} (fails sanity gate)" for c in result.model_checks if not c["passed"]}
    if not failed:
        return result
    changes = {}
    names = [item.name for item in dataclasses.fields(result) if item.name != "values"] + list(result.values)
    for name in names:
        value = getattr(result, name)
        if isinstance(value, pd.DataFrame) and len(value):
            value = value.copy()
            for column in ("model", "model_a", "model_b"):
                if column in value:
                    value[column] = value[column].replace(failed)
            changes[name] = value
    return result.replace(**changes)


# --- the sections of the measured per-case table ---------------------------------------------------

def _definitions(result: EvaluationResult) -> str:
    """Every condition: what it simulates in one sentence, family, severity, the parameters run applied
    (run.json) and what the model saw."""
    from nnunet_robustness.condition_words import describe

    rows = []
    for _, r in result.conditions.drop_duplicates("condition").iterrows():
        parameters = r.get("parameters")
        parameters = parameters if isinstance(parameters, str) else None
        preset = r.get("preset") if isinstance(r.get("preset"), str) else None
        family = r["family"] if isinstance(r["family"], str) else None
        severity = float(r["severity"]) if finite(r["severity"]) else None
        rows.append([r["condition"], describe(r["condition"], family, severity, preset, parameters), family,
                     r["severity"], _calibration(result, r, parameters), parameters, what_the_model_saw(r)])
    return ("<details open><summary>" + esc(f"{len(rows)} conditions") + "</summary>"
            + table(["condition", "what it simulates", "family", "severity", "calibrated severity: target and reached "
                     "SSIM (all test cases)", "parameters (run.json)", "what the model saw (median)"], rows,
                    text_columns=(0, 1, 2, 4, 5, 6))
            + note("Parameters are the family's values at that severity (e.g. sigma_mm, std_fraction of the robust "
                   "intensity range), an attack's budget, or a crop's target foreground fraction; missing for "
                   "folders not made by nnunet-robust run. A calibrated level was fitted to its target SSIM on a few "
                   "calibration cases (run.json); the SSIM it reached on every test case is its median, "
                   "interquartile range and range here.") + "</details>")


def _calibration(result: EvaluationResult, condition: Any, parameters: str | None) -> str | None:
    """A calibrated condition's family severity, its level's target SSIM and the SSIM its input reached
    over all test cases (``input_ssim`` per case; the calibration cases alone said nothing about the
    others); None on the physical scale."""
    if not finite(condition.get("calibrated_severity")):
        return None
    record = (json.loads(parameters) if parameters else {}).get("calibration") or {}
    target = record.get("target_ssim")
    if target is None:  # a run.json from before the record
        target = target_ssim(float(condition["severity"]))
    text = f"{fmt(condition['calibrated_severity'])}; target SSIM {target:.2f}"
    per_case = result.per_case
    ssims = per_case[(per_case["model"] == condition["model"]) & (per_case["condition"] == condition["condition"])
                     ].drop_duplicates("case")["input_ssim"].dropna().to_numpy(float)
    if len(ssims):
        low, median, high = np.percentile(ssims, [25, 50, 75])
        text += (f"; reached on {len(ssims)} test cases: median {median:.3f} (IQR {low:.3f}-{high:.3f}, "
                 f"range {ssims.min():.3f}-{ssims.max():.3f})")
    if record.get("reachable") is False:
        text += f"; not reached on the calibration cases (mean {record['reached_ssim_mean']:.3f})"
    if record.get("merged_levels"):
        text += f"; also stands for level(s) {', '.join(map(fmt, record['merged_levels']))} (same input)"
    return text


def _overview(result: EvaluationResult) -> str:
    settings = result.settings
    per_case = result.per_case
    rows = [
        # a model's source in brackets where eval recorded one (a bare "()" said nothing)
        ("models", ", ".join(f"{m} ({source})" if (source := _model_source(settings, m)) else m
                             for m in result.models)),
        ("reference", settings.get("reference")),
        ("dataset.json", settings.get("dataset_json")),
        ("cases", per_case["case"].nunique()),
        ("labels / regions", ", ".join(f"{n} = {v}" for n, v in dict(zip(per_case["label"], per_case["label_value"])).items())),
        ("conditions", ", ".join(dict.fromkeys(result.conditions["condition"]))),
        ("clean condition", result.clean_condition or "none (no degradation computed)"),
        ("bootstrap", f"{settings.get('n_bootstrap')} case resamples, seed {settings.get('seed')}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (settings.get("versions") or {}).items())),
    ]
    for check in result.model_checks:
        status = "passes" if check["passed"] else "FAILS: " + "; ".join(check["reasons"])
        schedule = (f"{check['iterations']} training iterations" + (" (short schedule)" if check["short_schedule"]
                                                                     else "")) if check["iterations"] else "unknown"
        rows.append((f"sanity gate: {check['model']}", f"{status}; clean Dice {fmt(check['clean_dice'])}; {schedule}"))
    unpredicted = settings.get("unpredicted_reference_cases") or []
    if unpredicted:
        rows.append(("reference cases without predictions", ", ".join(unpredicted)))
    counts = per_case["empty_mask"].value_counts()
    policy = settings.get("empty_mask_policy", {})
    empty_rows = [(f"{kind} empty", f"{int(counts.get(kind, 0))} structure(s): {policy.get(kind, '')}")
                  for kind in ("both", "reference", "prediction")]
    return table(["setting", "value"], rows + empty_rows, text_columns=(0, 1))


def _model_source(settings: dict, label: str) -> str:
    """What eval recorded as a model's source (its folder, or its runs), looked up under the report's label
    (a failed model's label carries the sanity-gate mark)."""
    sources = settings.get("models") or {}
    source = sources.get(label, sources.get(label.removesuffix(" (fails sanity gate)")))
    if isinstance(source, (list, tuple)):
        source = ", ".join(map(str, source))
    return str(source) if source else ""


def _scatter(result: EvaluationResult) -> str:
    clean = result.clean_condition
    if clean is None:
        return note("No clean condition: nothing to compare the per-case values with.")
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
        return note("Only the clean condition was evaluated.")
    axis.plot([0, 1], [0, 1], color="grey", linewidth=1)
    axis.set_xlim(-0.02, 1.02)
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("Dice on clean input (per case, mean over labels)")
    axis.set_ylabel("Dice under corruption (every condition)")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    image = png(figure)
    plt.close(figure)
    return note("One point per case and corrupted condition; points below the diagonal lost Dice.") + image


def _worst_cases(result: EvaluationResult, count: int) -> str:
    worst = result.per_case.sort_values(["dice", "hd95_mm"], ascending=[True, False], kind="stable").head(count)
    # file names rather than full paths keep the table inside the page; the full paths are in per_case.csv
    rows = [[r["model"], r["condition"], r["case"], r["label"], *(r[m] for m in WORST_CASE_METRICS),
             r["empty_mask"], Path(str(r["prediction_file"])).name] for _, r in worst.iterrows()]
    return (note("Full paths of the prediction and reference files: per_case.csv.")
            + "<details open><summary>table</summary>"
            + table(["model", "condition", "case", "label", *map(metric_title, WORST_CASE_METRICS), "empty mask",
                     "prediction file"], rows, text_columns=(0, 1, 2, 3, 7, 8)) + "</details>")

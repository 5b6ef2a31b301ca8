"""One self-contained HTML report of an evaluation: tables, and PNG plots embedded as base64.

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

from nnunet_robustness.analysis.evaluation import EvaluationResult
from nnunet_robustness.analysis.robustness import COMPARISON_METRICS, SMALL_SAMPLE
from nnunet_robustness.analysis.statistics import ALL_CONDITIONS, FOREGROUND_MEAN
from nnunet_robustness.analysis.strata import ALL_CASES, SMALL_GROUP, STRATUM
from nnunet_robustness.conditions import target_ssim
from nnunet_robustness.io import atomic_write_text
from nnunet_robustness.metrics.masks import METRICS, metric_title
from nnunet_robustness.reports.html import esc, finite, fmt, html_page, nan_array, note, png, section, table
from nnunet_robustness.reports.pictures import pictures_section

CURVE_METRICS = COMPARISON_METRICS  # the metrics compared in the verdict, plotted against severity


def write_report(result: EvaluationResult, path: str | os.PathLike, worst_cases: int = 15) -> Path:
    """Write the HTML report of ``result`` to ``path`` (atomically) and return the path."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's first import in this process
    path = Path(path)
    result = _mark_failed_models(result)
    tolerance = result.settings.get("nsd_tolerance_mm")
    sections = [
        section("Verdict: which model is more robust", _verdict(result)),
        *([section("Real shift: does the synthetic benchmark predict it?", _real_shift(result))]
          if len(result.real_shift) else []),
        _overview(result),
        section("Conditions: what each one applied", _definitions(result)),
        section("Summary (foreground mean per case; mean [95% CI])", _summary_table(result)),
        section("Metric vs severity", _curves(result)),
        section("ROOD-MRI-comparable summary", _rood_mri(result)),
        section("Degradation vs clean", _degradation(result)),
        section("Per-case scatter", _scatter(result)),
    ]
    if _has_fbr_study(result):  # context conditions or FBR-logging trainers: the context-vs-FBR study
        sections.append(section("Metric vs test FBR (foreground fraction)", _fbr_section(result)))
    if result.strata_verdicts:
        sections.append(section("Strata and subgroups: the verdict, scores and degradation per group of cases",
                                _strata(result)))
    if len(result.models) > 1:
        sections.append(section("Model comparison", _comparison(result)))
    if len(result.robust_training):
        sections.append(section("Robust training: before and after", _robust_training(result)))
    if len(result.raters):
        sections.append(section("Rater disagreement", _raters(result)))
    sections.append(section("What the worst and median cases looked like",
                            pictures_section(result.per_case, result.models)))
    sections.append(section(f"Worst {worst_cases} structures by Dice", _worst_cases(result, worst_cases)))
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
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if isinstance(value, pd.DataFrame) and len(value):
            value = value.copy()
            for column in ("model", "model_a", "model_b"):
                if column in value:
                    value[column] = value[column].replace(failed)
            changes[item.name] = value
    return dataclasses.replace(result, **changes)


# --- sections ------------------------------------------------------------------------------------------

def _verdict(result: EvaluationResult) -> str:
    from nnunet_robustness.analysis.robustness import interval_test_note

    comparisons = result.robustness_comparisons
    if STRATUM in comparisons:  # the strata's own comparisons are in the section "Strata"
        comparisons = comparisons[comparisons[STRATUM] == ALL_CASES]
    sentences = "".join(f"<li>{esc(s)}</li>" for s in result.verdict)
    parts = [f"<ul>{sentences}</ul>"]
    n_cases = result.per_case["case"].nunique()
    if n_cases < SMALL_SAMPLE:
        parts.append(f"<p class='warning'>{n_cases} test cases: intervals and tests are rough below "
                     f"{SMALL_SAMPLE} cases; a difference that is real can stay undetected (each 'no detectable "
                     "difference' states the smallest difference these cases could show).</p>")
    parts.append(note("Robustness is judged on two axes together: the drop (clean minus condition, per case, paired) "
                      "and the score under the condition; a model that falls less only because it starts lower is "
                      "not called more robust. Families graded at two or more severities are judged as a whole (the "
                      "per-case area under the drop curve, and the mean score over the severities); every other "
                      "condition on its own. Paired differences A - B (drop: negative = A falls less); 95% "
                      "intervals of the mean: t united with the studentized bootstrap, which covered 0.95-0.97 on "
                      "Dice-like data at 8-50 cases in simulation (0.91 with 15% failed cases at n = 8; BCa: "
                      "0.82-0.87 at n = 8); two-sided Wilcoxon signed-rank "
                      "tests with their smallest attainable p; with several training runs per model, the two-level "
                      "bootstrap over runs and cases. Benjamini-Hochberg FDR over every test in this report ("
                      f"{result.settings.get('fdr_tests', 'n/a')} tests). A difference is detected when the adjusted "
                      "p < 0.05, the interval excludes 0 and the mean, the median and the Hodges-Lehmann estimate do "
                      "not point different ways. Conditions cancelled by the model's normalisation are left out. "
                      "Method and simulations: docs/evaluation.md."))
    if len(result.ranking):
        parts.append(_ranking(result))
    if len(comparisons):
        shown = comparisons[comparisons["label"] == FOREGROUND_MEAN]
        rows = [[r["scope"], r["name"], r["axis"], r["metric"], f"{r['model_a']} - {r['model_b']}",
                 f"{r['runs_a']}/{r['runs_b']}", r["n"], r["mean_difference"], r["median_difference"],
                 r["hodges_lehmann"], f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]", r["p_value"], r["p_floor"],
                 r["p_fdr"], r["detectable"], interval_test_note(r)]
                for _, r in shown.iterrows()]
        parts.append("<details><summary>All paired comparisons "
                     f"({len(rows)})</summary>"
                     + table(["scope", "family / condition", "axis", "metric", "difference", "runs", "n", "mean",
                              "median", "Hodges-Lehmann", "95% CI", "p", "smallest p at n", "p (BH-FDR)",
                              "detectable (80% power)", "note"], rows, text_columns=(0, 1, 2, 3, 4, 5, 15))
                     + "</details>")
    return "".join(parts)


def _ranking(result: EvaluationResult) -> str:
    """Three or more models: the ranking sentences, a table and a blob plot (challengeR's: the area of a
    circle is how often a model took that rank over the bootstrap; the line spans its 95 % rank interval)."""
    import matplotlib.pyplot as plt

    from nnunet_robustness.analysis.ranking import ranking_sentences

    ranking = result.ranking
    sentences = "".join(f"<li>{esc(s)}</li>" for s in ranking_sentences(ranking))
    rows = [[r["criterion"], r["model"], r["runs"], r["value"], r["rank"], r["p_rank1"],
             f"{fmt(r['rank_low'])}-{fmt(r['rank_high'])}"] for _, r in ranking.iterrows()]
    criteria = list(dict.fromkeys(ranking["criterion"]))
    figure, axes = plt.subplots(1, len(criteria), figsize=(4.2 * len(criteria), 3.2), squeeze=False)
    for axis, criterion in zip(axes[0], criteria):
        group = ranking[ranking["criterion"] == criterion].sort_values(["rank", "model"])
        for x, (_, r) in enumerate(group.iterrows()):
            frequencies = np.asarray(r["rank_frequencies"], dtype=float)
            ranks = np.arange(1, len(frequencies) + 1)
            axis.scatter(np.full(len(ranks), x), ranks, s=600 * frequencies, alpha=0.6, color="tab:blue")
            axis.vlines(x, r["rank_low"], r["rank_high"], color="black", linewidth=1)
            axis.plot(x, r["rank_median"], "kx")
        axis.set_xticks(range(len(group)), list(group["model"]), rotation=20)
        axis.set_ylim(len(group) + 0.5, 0.5)
        axis.set_ylabel("rank")
        axis.set_title("by score under the conditions" if criterion == "score" else "by drop from clean")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    image = png(figure)
    plt.close(figure)
    return ("<h3>Ranking and its stability</h3>" + f"<ul>{sentences}</ul>"
            + note("Bootstrap over cases (and over runs for models with several): circle area = how often the "
                   "model took that rank; line = 95% rank interval; x = median rank.") + image
            + "<details><summary>ranking table</summary>"
            + table(["criterion", "model", "runs", "mean Dice", "rank", "P(rank 1)", "95% rank interval"], rows,
                    text_columns=(0, 1, 6)) + "</details>")


def _real_shift(result: EvaluationResult) -> str:
    """Each model's drop on the shifted sets beside its drop under each synthetic condition, and the
    conditions ordered by how well they predict the models' order under the real shift."""
    from nnunet_robustness.analysis.real_shift import shift_sentences

    summary, agreement = result.real_shift, result.shift_agreement
    sentences = "".join(f"<li>{esc(s)}</li>" for s in shift_sentences(summary, agreement))
    degradation = result.degradation
    synthetic = (degradation[(degradation["label"] == FOREGROUND_MEAN) & (degradation["metric"] == "dice")]
                 .pivot_table(index="model", columns="condition", values="absolute", aggfunc="first", sort=False)
                 if len(degradation) else None)
    shifts = list(dict.fromkeys(summary["shift"]))
    conditions = [] if synthetic is None else list(synthetic.columns)
    rows = []
    for model in dict.fromkeys(summary["model"]):
        real = {r["shift"]: r for _, r in summary[summary["model"] == model].iterrows()}
        rows.append([model, *[f"{fmt(real[s]['degradation'])} [{fmt(real[s]['degradation_ci_low'])}, "
                              f"{fmt(real[s]['degradation_ci_high'])}]" if s in real else None for s in shifts],
                     *[synthetic.at[model, c] if synthetic is not None and model in synthetic.index else None
                       for c in conditions]])
    agreement_rows = [[r["shift"], r["scope"], r["name"], r["n_models"], r["kendall_tau"],
                       f"[{fmt(r['tau_ci_low'])}, {fmt(r['tau_ci_high'])}]", r["pearson"],
                       f"[{fmt(r['pearson_ci_low'])}, {fmt(r['pearson_ci_high'])}]"] for _, r in agreement.iterrows()]
    return (f"<ul>{sentences}</ul>"
            + note("Dice drop from the clean test set: on each shifted set (other cases: unpaired, Welch's 95% "
                   "interval) and under each synthetic condition (same cases, paired). Agreement: Kendall's tau of "
                   "the models' order by drop, and Pearson's r of the drops (three or more models), with percentile "
                   "bootstrap intervals over clean and shifted cases; the models are compared paired within each "
                   "shifted set in the comparisons table (scope 'shift').")
            + table(["model", *[f"real: {s}" for s in shifts], *conditions], rows, text_columns=tuple(
                range(len(shifts) + 1)))
            + "<details><summary>Which synthetic condition predicts the real shift</summary>"
            + table(["shift", "scope", "condition / family", "models", "Kendall tau", "95% CI", "Pearson r",
                     "95% CI"], agreement_rows, text_columns=(0, 1, 2, 5, 7)) + "</details>")


def _robust_training(result: EvaluationResult) -> str:
    from nnunet_robustness.analysis.robust_training import sentences
    from nnunet_robustness.analysis.robustness import interval_test_note

    table_rows = result.robust_training
    records = result.settings.get("robust_training_records", {})
    trained = "; ".join(
        f"{model}: {record['trainer']}" + (f", trained on {', '.join(record['corruption_augmentation']['families'])}"
                                           if "corruption_augmentation" in record else "")
        + (" with adversarial examples" if "adversarial" in record else "")
        for model, record in records.items())
    sentence_list = "".join(f"<li>{esc(s)}</li>" for s in sentences(table_rows))
    order = {"clean": 0, "pooled": 1, "family": 2}
    ordered = table_rows.assign(_order=table_rows["scope"].map(order)).sort_values(
        ["robust", "baseline", "_order", "seen", "name"], ascending=[True, True, True, False, True])
    rows = [[r["robust"], r["baseline"], r["scope"], r["name"], r["group"],
             "-" if r["seen"] is None or r["scope"] == "clean" else ("seen" if r["seen"] else "unseen"), r["n"],
             r["mean_difference"], r["hodges_lehmann"], f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]", r["p_value"],
             r["p_fdr"], interval_test_note(r)] for _, r in ordered.iterrows()]
    return (note(f"Models trained with robust training (their record next to the checkpoints): {esc(trained)}. "
                 "Each is compared with every model trained without it, on the same cases. Degradation rows: paired "
                 "difference robust - baseline of the Dice degradation (area over severities; negative = the robust "
                 "model degrades less); a family counts as 'seen' when the model trained on a family of the same effect "
                 "group (what it does to the image: blur, noise, intensity, k-space, structured artefacts), so "
                 "defocus blur is seen after training on Gaussian blur. Clean row: paired difference of clean "
                 "Dice (negative = robust training costs clean performance). Per-family p (BH) are the report-wide "
                 "ones of the verdict; pooled and clean rows are adjusted over this table's rows.")
            + f"<ul>{sentence_list}</ul>"
            + table(["robust", "baseline", "scope", "family / group", "effect group", "seen?", "n", "mean difference",
                     "Hodges-Lehmann", "95% CI", "p", "p (BH)", "note"], rows, text_columns=(0, 1, 2, 3, 4, 5, 12)))


def _rood_mri(result: EvaluationResult) -> str:
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


def _raters(result: EvaluationResult) -> str:
    """Model vs consensus against the case's inter-rater disagreement, and how often the model lies within
    the raters' own range."""
    import matplotlib.pyplot as plt

    from nnunet_robustness.analysis.raters import performance_vs_disagreement_figure

    raters = result.raters
    parts = [note(f"{raters['n_raters'].iloc[0]} raters; statistics and the verdict use their "
                  f"{result.settings.get('consensus_method')} consensus. Disagreement = 1 - mean pairwise Dice "
                  "of the raters; a model is within the inter-rater range unless it agrees with the consensus "
                  "less than the least-agreeing pair of raters do (raters.csv).")]
    for label in dict.fromkeys(raters["label"]):
        figure = performance_vs_disagreement_figure(raters, label=label)
        parts.append(f"<h3>{esc(label)}</h3>" + png(figure))
        plt.close(figure)
    shares = (raters.groupby(["model", "condition", "label"], sort=False)
              .agg(cases=("case", "nunique"), within=("model_within_inter_rater_range", "mean"),
                   dice=("model_vs_consensus_dice", "mean"), disagreement=("disagreement", "mean"))
              .reset_index())
    rows = [[r["model"], r["condition"], r["label"], r["cases"], r["dice"], r["disagreement"], r["within"]]
            for _, r in shares.iterrows()]
    parts.append(table(["model", "condition", "label", "cases", "Dice vs consensus", "mean disagreement",
                        "share within inter-rater range"], rows, text_columns=(0, 1, 2)))
    return "".join(parts)


def _what_the_model_saw(condition: Any) -> str | None:
    """One condition row's input change after the model's normalisation, as report text (None: unmeasured)."""
    if bool(condition.get("cancelled", False)):
        return "cancelled by the model's normalisation"
    if finite(condition.get("input_ssim")):
        return f"SSIM {fmt(condition['input_ssim'])}, rel. L2 {fmt(condition['input_rel_l2'])}"
    return None


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
                     r["severity"], _calibration(result, r, parameters), parameters, _what_the_model_saw(r)])
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
    return section("Overview", table(["setting", "value"], rows + empty_rows, text_columns=(0, 1)))


def _model_source(settings: dict, label: str) -> str:
    """What eval recorded as a model's source (its folder, or its runs), looked up under the report's label
    (a failed model's label carries the sanity-gate mark)."""
    sources = settings.get("models") or {}
    source = sources.get(label, sources.get(label.removesuffix(" (fails sanity gate)")))
    if isinstance(source, (list, tuple)):
        source = ", ".join(map(str, source))
    return str(source) if source else ""


def _summary_table(result: EvaluationResult) -> str:
    reported = [name for name, metric in METRICS.items() if metric.reported]
    stats = result.statistics[(result.statistics["label"] == FOREGROUND_MEAN)
                              & result.statistics["metric"].isin(reported)].set_index(["model", "condition", "metric"])
    seen = result.conditions.set_index(["model", "condition"])
    rows = []
    for model, condition in _model_conditions(result):
        info = seen.loc[(model, condition)]
        saw = _what_the_model_saw(info) or ("clean" if bool(info["is_clean"]) else None)
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


def _curves(result: EvaluationResult) -> str:
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


def _degradation(result: EvaluationResult) -> str:
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


def _strata(result: EvaluationResult) -> str:
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


def _group_degradation_plots(result: EvaluationResult, groupings: dict[str, list[str]]) -> str:
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


def _compared_models(result: EvaluationResult) -> list[str]:
    """The report's names (failed ones marked) of the models the verdict judged: those that passed the
    sanity gate, or every model with --allow-weak-models (a result without checks judged every model)."""
    if not result.model_checks:
        return list(result.models)
    kept = {c["model"] if c["passed"] else f"{c['model']} (fails sanity gate)"
            for c in result.model_checks if c.get("kept", c["passed"])}
    return [m for m in result.models if m in kept]


def _comparison(result: EvaluationResult) -> str:
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


def _worst_cases(result: EvaluationResult, count: int) -> str:
    worst = result.per_case.sort_values(["dice", "hd95_mm"], ascending=[True, False], kind="stable").head(count)
    # file names rather than full paths keep the table inside the page; the full paths are in per_case.csv
    rows = [[r["model"], r["condition"], r["case"], r["label"], r["dice"], r["nsd"], r["hd95_mm"],
             r["empty_mask"], Path(str(r["prediction_file"])).name] for _, r in worst.iterrows()]
    return (note("Full paths of the prediction and reference files: per_case.csv.")
            + "<details open><summary>table</summary>"
            + table(["model", "condition", "case", "label", "Dice", "NSD", "HD95 (mm)", "empty mask",
                     "prediction file"], rows, text_columns=(0, 1, 2, 3, 7, 8)) + "</details>")


# --- helpers -------------------------------------------------------------------------------------------

def _model_conditions(result: EvaluationResult) -> list[tuple[str, str]]:
    return list(zip(result.conditions["model"], result.conditions["condition"]))


# --- context vs FBR --------------------------------------------------------------------------------------------

def _has_fbr_study(result: EvaluationResult) -> bool:
    """A context condition was run, or a model has a training FBR log."""
    return (result.conditions["family"].eq("context").any()
            or any(result.settings.get("training_fbr_ranges", {}).values()))


def _fbr_section(result: EvaluationResult) -> str:
    """HTML: metric vs test FBR per model, the training range shaded, and counts of flagged cases."""
    per_case = result.per_case
    if "test_fbr" not in per_case or not per_case["test_fbr"].notna().any():
        return note("No test FBR (no reference foreground).")
    import matplotlib.pyplot as plt

    cases = (per_case.groupby(["model", "condition", "case"], sort=False)
             .agg(dice=("dice", "mean"), test_fbr=("test_fbr", "first"), low=("training_fbr_low", "first"),
                  high=("training_fbr_high", "first"), outside=("fbr_outside_training", "first"))
             .reset_index())
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for index, model in enumerate(result.models):
        colour = f"C{index % 10}"
        rows = cases[cases["model"] == model]
        if rows["low"].notna().any():
            low, high = rows["low"].iloc[0], rows["high"].iloc[0]
            axis.axvspan(max(low, 1e-4), high, color=colour, alpha=0.12, linewidth=0,
                         label=f"{model}: training FBR {low:.2f}-{high:.2f}")
        axis.scatter(rows["test_fbr"].clip(lower=1e-4), rows["dice"], s=14, alpha=0.5, color=colour)
        means = rows.groupby("condition", sort=False)[["test_fbr", "dice"]].mean().sort_values("test_fbr")
        axis.plot(means["test_fbr"].clip(lower=1e-4), means["dice"], marker="o", color=colour, label=model)
    axis.set_xscale("log")
    axis.set_xlabel("test FBR (foreground fraction of the evaluated image)")
    axis.set_ylabel("Dice (per case, mean over labels)")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize="small")
    figure.tight_layout()
    image = png(figure)
    plt.close(figure)
    counts = (cases.groupby(["model", "condition"], sort=False)
              .agg(n=("case", "size"), fbr=("test_fbr", "mean"), dice=("dice", "mean"),
                   outside=("outside", lambda s: int(s.fillna(False).sum()) if s.notna().any() else None))
              .reset_index())
    rows = [[r["model"], r["condition"], r["n"], r["fbr"], r["dice"], r["outside"]] for _, r in counts.iterrows()]
    return (note("One point per case and condition; lines join the per-condition means. Shaded: the range of "
                 "foreground fractions of the training patches (fbr_train.json of the model's folds).")
            + image + table(["model", "condition", "cases", "mean test FBR", "mean Dice",
                             "cases outside training FBR"], rows, text_columns=(0, 1)))

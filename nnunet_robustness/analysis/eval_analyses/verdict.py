"""Degradation and the verdict: the sanity gate, each model's per-case drop from clean, the paired model
comparisons on the two axes (drop and score; ``analysis/robustness.py``) and the verdict's sentences
(``analysis/verdict.py``); report section "Verdict"."""

from __future__ import annotations

from typing import Any

import pandas as pd

from nnunet_robustness.analysis import robustness
from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.attack_check import weak_attacks
from nnunet_robustness.analysis.eval_analyses.base import Analysis, Result, Section, State
from nnunet_robustness.analysis.robustness import SMALL_SAMPLE
from nnunet_robustness.analysis.sanity import NNUNET_DEFAULT_ITERATIONS, check_models
from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN
from nnunet_robustness.analysis.strata import ALL_CASES, STRATUM
from nnunet_robustness.analysis.verdict import verdict
from nnunet_robustness.reports.html import esc, fmt, note, table


def _run(state: State) -> dict[str, Any]:
    m, options = state.measured, state.options
    # the sanity gate: a model that fails on clean images is left out of the verdict (analysis/sanity.py)
    checks = check_models(m.per_case, m.clean, {model.name: model.folder for model in m.predictions})
    judged = [c.model for c in checks if c.passed or options.allow_weak_models]
    judged_runs = {arm: [run for run in members if run in judged] for arm, members in m.runs.items()}
    judged_runs = {arm: members for arm, members in judged_runs.items() if members}
    robust = state.shared["robust"]
    degradation_rows = robustness.per_case_degradation(robust[robust["label"] == stats.FOREGROUND_MEAN],
                                                       m.conditions, m.clean)
    state.shared.update(checks=checks, judged=judged, judged_runs=judged_runs, degradation_rows=degradation_rows)
    comparisons = robustness.compare_models(degradation_rows, judged_runs, options.seed, options.n_bootstrap)
    return {"robustness_comparisons": comparisons.assign(**{STRATUM: ALL_CASES}),
            "model_checks": [{**c.to_json(), "kept": c.passed or options.allow_weak_models} for c in checks]}


def _conclude(state: State) -> dict[str, Any]:
    m, options, comparisons = state.measured, state.options, state.values["robustness_comparisons"]
    with_mean = state.shared["with_mean"]
    return {"verdict": _gate_sentences(state.shared["checks"], options.allow_weak_models) + weak_attacks(
        with_mean[with_mean["label"] == stats.FOREGROUND_MEAN], m.conditions) + verdict(
        comparisons[comparisons[STRATUM] == ALL_CASES], state.shared["judged_runs"], stats.FOREGROUND_MEAN,
        equivalence=options.equivalence, given=len(m.runs))}


def _gate_sentences(checks: list, allow_weak_models: bool) -> list[str]:
    sentences = []
    for check in checks:
        if not check.passed:
            action = "kept in the verdict, marked (--allow-weak-models)" if allow_weak_models else (
                "left out of the verdict (--allow-weak-models keeps it)")
            sentences.append(f"{check.model} fails the sanity gate: {'; '.join(check.reasons)}; {action}.")
        if check.short_schedule:
            share = 100 * check.iterations / NNUNET_DEFAULT_ITERATIONS
            sentences.append(f"{check.model} was trained for {check.iterations} iterations ({share:.2g}% of nnU-Net's "
                             "default 1000 x 250): a short schedule; its robustness is that of an undertrained "
                             "network.")
    return sentences


def _summary(result: Result) -> dict[str, Any]:
    return {"verdict": result.verdict, "model_checks": result.model_checks,
            "robustness_comparisons": result.robustness_comparisons.to_dict(orient="records")}


def _verdict(result: Result) -> str:
    from nnunet_robustness.analysis.eval_analyses.ranking import ranking_part
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
        parts.append(ranking_part(result))
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


ANALYSIS = Analysis(
    name="degradation and verdict",
    outputs={"robustness_comparisons": pd.DataFrame, "model_checks": list, "verdict": list},
    run=_run,
    conclude=_conclude,
    summary=_summary,
    sections=(Section(10, "Verdict: which model is more robust", _verdict),),
)

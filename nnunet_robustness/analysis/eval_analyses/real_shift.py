"""Real shift (eval --shift): per shifted set and model the real-shift degradation (unpaired vs clean),
and how well each synthetic condition and family predicts it across models (``analysis/real_shift.py``); its
paired model comparisons are rows of the comparisons with scope "shift"; report section "Real shift"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from nnunet_robustness.analysis import real_shift as shift_module
from nnunet_robustness.analysis.eval_analyses.base import Analysis, Result, Section, State
from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN
from nnunet_robustness.analysis.strata import ALL_CASES, STRATUM
from nnunet_robustness.reports.html import esc, fmt, note, table

REAL_SHIFT_CSV = "real_shift.csv"
SHIFT_AGREEMENT_CSV = "shift_agreement.csv"


def _run(state: State) -> dict[str, Any]:
    m, options, shared = state.measured, state.options, state.shared
    real_shift, shift_agreement, shift_rows = shift_module.real_shift_tables(
        Path(options.shift_file), m.runs, shared["judged_runs"], m.dataset, shared["with_mean"], m.clean,
        shared["degradation_rows"], options.nsd_tolerance_mm, options.num_processes, options.progress, options.seed,
        options.n_bootstrap, options.device)
    comparisons = pd.concat([state.values["robustness_comparisons"], shift_rows.assign(**{STRATUM: ALL_CASES})],
                            ignore_index=True)
    return {"real_shift": real_shift, "shift_agreement": shift_agreement, "robustness_comparisons": comparisons}


def _real_shift(result: Result) -> str:
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


ANALYSIS = Analysis(
    name="real shift",
    outputs={"real_shift": pd.DataFrame, "shift_agreement": pd.DataFrame},
    needs=lambda measured, options: options.shift_file is not None,
    run=_run,
    summary=lambda result: {"real_shift": result.real_shift.to_dict(orient="records"),
                            "shift_agreement": result.shift_agreement.to_dict(orient="records")},
    tables={REAL_SHIFT_CSV: "real_shift", SHIFT_AGREEMENT_CSV: "shift_agreement"},
    sections=(Section(20, "Real shift: does the synthetic benchmark predict it?", _real_shift,
                      shown=lambda result: len(result.real_shift) > 0),),
)

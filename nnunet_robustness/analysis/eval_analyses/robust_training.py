"""Robust training: robust-trained models against their baselines, per family (seen / unseen in training),
pooled per group, and the clean cost (``analysis/robust_training.py``); empty without a robust model;
``robust_training.csv`` and report section "Robust training"."""

from __future__ import annotations

from typing import Any

import pandas as pd

from nnunet_robustness.analysis.eval_analyses.base import Analysis, Result, Section, State
from nnunet_robustness.analysis.robust_training import robust_training_table, training_records
from nnunet_robustness.reports.html import esc, fmt, note, table

ROBUST_TRAINING_CSV = "robust_training.csv"


def _run(state: State) -> dict[str, Any]:
    records = training_records({model.name: model.folder for model in state.measured.predictions})
    state.shared["records"] = records
    state.settings["robust_training_records"] = {model: {"trainer": r.trainer, **r.options}
                                                 for model, r in records.items()}
    return {}


def _conclude(state: State) -> dict[str, Any]:
    # after the report-wide FDR: the per-family rows show the verdict's adjusted p
    m, shared, options = state.measured, state.shared, state.options
    return {"robust_training": robust_training_table(
        shared["records"], shared["judged"], m.runs, state.values["robustness_comparisons"],
        shared["degradation_rows"], shared["with_mean"], m.clean, options.seed, options.n_bootstrap)}


def _robust_training(result: Result) -> str:
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


ANALYSIS = Analysis(
    name="robust training",
    outputs={"robust_training": pd.DataFrame},
    run=_run,
    conclude=_conclude,
    summary=lambda result: {"robust_training": result.robust_training.to_dict(orient="records")},
    tables={ROBUST_TRAINING_CSV: "robust_training"},
    sections=(Section(130, "Robust training: before and after", _robust_training,
                      shown=lambda result: len(result.robust_training) > 0),),
)

"""Several reference folders (raters): each prediction against each rater and their consensus, by the
case's inter-rater disagreement (``analysis/raters.py``); ``raters.csv`` and report section "Rater
disagreement"."""

from __future__ import annotations

from typing import Any

import pandas as pd

from nnunet_robustness.analysis.eval_analyses.base import Analysis, Result, Section, State
from nnunet_robustness.analysis.raters import rater_table, summarize_raters
from nnunet_robustness.reports.html import esc, note, png, table

RATERS_CSV = "raters.csv"


def _run(state: State) -> dict[str, Any]:
    m, options = state.measured, state.options
    return {"raters": rater_table(m.per_case, m.raters, m.reference,
                                  {target.name: target.value for target in m.dataset.targets}, m.dataset.file_ending,
                                  options.nsd_tolerance_mm, options.consensus_method)}


def _summary(result: Result) -> dict[str, Any]:
    return {"raters": ({f"{m} / {c}": summarize_raters(g) for (m, c), g in result.raters.groupby(
        ["model", "condition"], sort=False)} if len(result.raters) else {})}


def _raters(result: Result) -> str:
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


ANALYSIS = Analysis(
    name="raters",
    outputs={"raters": pd.DataFrame},
    needs=lambda measured, options: len(measured.raters) > 1,
    run=_run,
    summary=_summary,
    tables={RATERS_CSV: "raters"},
    sections=(Section(140, "Rater disagreement", _raters, shown=lambda result: len(result.raters) > 0),),
)

"""Three or more models: each model's rank, P(rank 1) and 95 % rank interval per criterion
(``analysis/ranking.py``); shown inside the report's verdict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.eval_analyses.base import Analysis, Result, State
from nnunet_robustness.analysis.ranking import rank_stability
from nnunet_robustness.reports.html import esc, fmt, note, png, table


def _run(state: State) -> dict[str, Any]:
    return {"ranking": rank_stability(state.shared["degradation_rows"], state.shared["judged_runs"],
                                      stats.FOREGROUND_MEAN, seed=state.options.seed,
                                      n_bootstrap=state.options.n_bootstrap)}


def ranking_part(result: Result) -> str:
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


ANALYSIS = Analysis(
    name="ranking",
    outputs={"ranking": pd.DataFrame},
    run=_run,
    summary=lambda result: {"ranking": result.ranking.to_dict(orient="records")},
)

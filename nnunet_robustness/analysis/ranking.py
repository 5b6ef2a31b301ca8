"""A ranking of three or more models with its stability, as challengeR reports it (Wiesenfarth et al.,
Sci Rep 2021): the observed rank, the probability of rank 1 and a 95 % rank interval per model, from a
bootstrap over cases (and, for models with several training runs, over runs first).

Two criteria, the two axes of the verdict: ``score`` (the metric under the conditions, averaged over
every condition except clean; higher is better for Dice) and ``drop`` (clean minus condition, averaged
the same way; lower is better). Ties share the better rank (``scipy.stats.rankdata(method="min")``).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.metrics.masks import METRICS

RANKING_COLUMNS = ["criterion", "metric", "model", "runs", "n", "value", "rank", "p_rank1", "rank_low", "rank_high",
                   "rank_median", "rank_frequencies"]
CRITERIA = {"score": "value", "drop": "degradation"}


def _arm_matrices(degradation: pd.DataFrame, column: str, arms: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Per model: run x case array of the per-case mean of ``column`` over the conditions (common cases)."""
    per_case = degradation.groupby(["model", "case"], sort=False)[column].mean().unstack("case")
    runs = [run for members in arms.values() for run in members]
    per_case = per_case.reindex(runs).dropna(axis=1)
    return {arm: per_case.loc[list(members)].to_numpy(dtype=float) for arm, members in arms.items()}


def rank_stability(degradation: pd.DataFrame, arms: Mapping[str, Sequence[str]], label: str, metric: str = "dice",
                   seed: int = 0, n_bootstrap: int = 1000) -> pd.DataFrame:
    """Per criterion and model: observed value and rank, P(rank 1), 2.5-97.5 % rank interval, median rank and
    the bootstrap frequency of each rank (for a blob plot). ``degradation``: ``robustness.per_case_degradation``
    rows; ``arms``: model -> its runs' names. Three or more models, else an empty table."""
    from scipy.stats import rankdata

    if len(arms) < 3:
        return pd.DataFrame(columns=RANKING_COLUMNS)
    rows = degradation[(degradation["label"] == label) & (degradation["metric"] == metric)]
    if not len(rows):
        return pd.DataFrame(columns=RANKING_COLUMNS)
    higher_is_better = bool(METRICS[metric].higher_is_better)
    names = list(arms)
    out = []
    for criterion, column in CRITERIA.items():
        matrices = _arm_matrices(rows, column, arms)
        n = next(iter(matrices.values())).shape[1]
        if n == 0:
            continue
        better_high = higher_is_better if criterion == "score" else not higher_is_better
        rng = np.random.default_rng([seed, len(criterion)])
        cases = rng.integers(0, n, size=(n_bootstrap, n))
        replicate = np.empty((n_bootstrap, len(names)))
        for index, name in enumerate(names):
            matrix = matrices[name]
            runs = rng.integers(0, matrix.shape[0], size=(n_bootstrap, matrix.shape[0]))
            replicate[:, index] = np.take_along_axis(matrix[runs].mean(axis=1), cases, axis=1).mean(axis=1)
        observed = np.array([matrices[name].mean() for name in names])
        sign = -1.0 if better_high else 1.0  # rank 1 = best
        ranks = rankdata(sign * replicate, method="min", axis=1)
        observed_ranks = rankdata(sign * observed, method="min")
        for index, name in enumerate(names):
            column_ranks = ranks[:, index]
            out.append({"criterion": criterion, "metric": metric, "model": name, "runs": matrices[name].shape[0],
                        "n": n, "value": float(observed[index]), "rank": int(observed_ranks[index]),
                        "p_rank1": float(np.mean(column_ranks == 1)),
                        "rank_low": float(np.quantile(column_ranks, 0.025)),
                        "rank_high": float(np.quantile(column_ranks, 0.975)),
                        "rank_median": float(np.median(column_ranks)),
                        "rank_frequencies": [float(np.mean(column_ranks == r)) for r in range(1, len(names) + 1)]})
    return pd.DataFrame(out, columns=RANKING_COLUMNS)


def ranking_sentences(ranking: pd.DataFrame) -> list[str]:
    """One sentence per criterion: the order with P(rank 1) and the rank intervals."""
    sentences = []
    for criterion, group in ranking.groupby("criterion", sort=False):
        group = group.sort_values(["rank", "model"])
        what = "score under the conditions" if criterion == "score" else "drop from clean"
        listed = ", ".join(f"{r['rank']}. {r['model']} (P(rank 1) {r['p_rank1']:.2f}, 95% rank interval "
                           f"{_rank(r['rank_low'])}-{_rank(r['rank_high'])})" for _, r in group.iterrows())
        stable = group["rank_low"].eq(group["rank_high"]).all()
        sentences.append(f"Ranking by {what}: {listed}; " + ("every rank is stable under resampling." if stable else
                                                            "overlapping rank intervals: those models' order is not "
                                                            "settled by these cases."))
    return sentences


def _rank(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and value == int(value) else f"{value:.1f}"

"""The verdict: quotable sentences from the paired comparisons (``analysis.robustness``), strongest first.

It covers everything the user ran: each family graded at two or more severities (as a whole: the area
of the drop and the mean score over its severities) and every other condition on its own (a single
severity, a preset such as the seed study's four, an attack, a context shift, a calibrated level).
For each of them and each pair of models, with W the model whose score falls less:

- **more robust**: W's drop is detectably smaller *and* W does not score lower under the condition
  (higher, or no detectable difference while W does not start lower on clean images);
- **the clean gap**: W falls less but starts lower and scores the same under the condition: the
  smaller drop is the clean gap, not robustness (a model that starts low has little to lose);
- **mixed**: W falls less but still scores detectably lower under the condition;
- **disagree**: interval or test say "different" but the mean and the typical case (median,
  Hodges-Lehmann, the test's direction) point different ways: both numbers, no winner;
- **score only**: the drops do not differ detectably but the scores under the condition do;
- **no detectable difference**, with the smallest difference this n and spread could show (80 %
  power), and "equivalent within +/-delta" where the 90 % interval lies inside the margin (TOST).

"Detectably" is ``robustness.detected``. The first sentence says whether the intervals include the
variance between training runs: with one run per model they cannot separate architecture from seed.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from nnunet_robustness.analysis.robustness import (
    CLEAN,
    CONDITION,
    DROP,
    FAMILY,
    FDR_LEVEL,
    METRIC_TITLES,
    SCORE,
    VERDICT_METRIC,
    _arms,
    detected,
    direction_agrees,
)
from nnunet_robustness.metrics.masks import METRICS

MORE_ROBUST, CLEAN_GAP, MIXED, DISAGREE, SCORE_ONLY, NO_DIFFERENCE = (
    "more robust", "clean gap", "mixed", "disagree", "score only", "no detectable difference")


def single_run_sentence(arms: Mapping[str, Sequence[str]]) -> str:
    runs = {name: len(members) for name, members in arms.items()}
    if all(count == 1 for count in runs.values()):
        return ("Each model is one training run: a difference between the models cannot be told apart from a "
                "difference between training runs (seed, fold); give several runs per model (eval --model "
                "NAME=RUN1,RUN2,RUN3, e.g. nnU-Net's folds predicted separately) to include it.")
    listed = ", ".join(f"{name} {count}" for name, count in runs.items())
    return (f"Training runs per model: {listed}; intervals and tests of models with several runs include the "
            "variance between runs (two-level bootstrap over runs, then cases).")


def _ci(row: Mapping, flip: bool) -> str:
    low, high = (-row["ci_high"], -row["ci_low"]) if flip else (row["ci_low"], row["ci_high"])
    return f"[{low:+.3f}, {high:+.3f}]"


def _numbers(row: Mapping, first: str, second: str) -> str:
    """The evidence of one comparison, oriented ``first - second``."""
    flip = row["model_a"] != first
    sign = -1.0 if flip else 1.0
    return (f"{first} - {second} {sign * row['mean_difference']:+.3f}, 95% CI {_ci(row, flip)}, "
            f"Hodges-Lehmann {sign * row['hodges_lehmann']:+.3f}, n = {int(row['n'])}, "
            f"FDR-adjusted p = {row['p_fdr']:.3g}")


def _findings(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(scope, name) of everything the user ran: graded families, then conditions outside them."""
    families = list(dict.fromkeys(rows.loc[rows["scope"] == FAMILY, "name"]))
    conditions = rows[(rows["scope"] == CONDITION) & ~rows["family"].isin(families)]
    return [(FAMILY, f) for f in families] + [(CONDITION, c) for c in dict.fromkeys(conditions["name"])]


def judge(drop: Mapping, score: Mapping | None, clean: Mapping | None, better: int) -> tuple[str, str | None]:
    """The category of one finding for one pair (module docstring) and the model W it favours (or None).
    ``better`` is +1 where a higher metric is better, -1 for distances."""
    drop_found = detected(drop)
    if not drop_found and (drop["p_fdr"] < FDR_LEVEL or drop["ci_low"] > 0 or drop["ci_high"] < 0) \
            and not direction_agrees(drop):
        return DISAGREE, None
    score_found = score is not None and detected(score)
    if not drop_found:
        if score_found:
            return SCORE_ONLY, score["model_a"] if better * score["mean_difference"] > 0 else score["model_b"]
        return NO_DIFFERENCE, None
    winner = drop["model_a"] if drop["mean_difference"] < 0 else drop["model_b"]
    if score_found:
        score_winner = score["model_a"] if better * score["mean_difference"] > 0 else score["model_b"]
        return (MORE_ROBUST if score_winner == winner else MIXED), winner
    starts_lower = clean is not None and better * clean["mean_difference"] * (1 if clean["model_a"] == winner
                                                                               else -1) < 0
    return (CLEAN_GAP if starts_lower else MORE_ROBUST), winner


def _sentence(category: str, winner: str | None, name: str, drop: Mapping, score: Mapping | None,
              clean: Mapping | None, title: str, better: int) -> str:
    a, b = drop["model_a"], drop["model_b"]
    loser = (b if winner == a else a) if winner else None
    gap = abs(drop["mean_difference"])
    under = f"under {name}"
    score_text = "" if score is None else _numbers(score, winner or a, loser or b)
    clean_text = "" if clean is None else _numbers(clean, winner or a, loser or b)
    if category == MORE_ROBUST:
        higher = score is not None and detected(score)
        return (f"{name}: {winner} is more robust than {loser}: its {title} falls {gap:.3f} less (drop "
                f"{_numbers(drop, winner, loser)}) and is {'higher' if higher else 'no lower'} {under} "
                f"({title} {score_text}).")
    if category == CLEAN_GAP:
        return (f"{name}: {winner}'s {title} falls {gap:.3f} less than {loser}'s (drop {_numbers(drop, winner, loser)}), "
                f"but {winner} starts lower on clean images ({title} {clean_text}) and scores the same {under} "
                f"({title} {score_text}): the smaller drop is the clean gap, not robustness.")
    if category == MIXED:
        return (f"{name}: {winner}'s {title} falls {gap:.3f} less than {loser}'s (drop {_numbers(drop, winner, loser)}), "
                f"but {winner} still scores lower {under} ({title} {score_text}): {loser} remains better {under}.")
    if category == DISAGREE:
        return (f"{name}: the mean and the typical case disagree between {a} and {b}: the mean drop difference "
                f"{a} - {b} is {drop['mean_difference']:+.3f}, the median {drop['median_difference']:+.3f} and the "
                f"Hodges-Lehmann estimate {drop['hodges_lehmann']:+.3f} (95% CI {_ci(drop, False)}, "
                f"FDR-adjusted p = {drop['p_fdr']:.3g}); no model is called more robust.")
    # SCORE_ONLY
    on_clean = ("as on clean images" if clean is not None and detected(clean) else
                "although not detectably on clean images")
    return (f"{name}: no detectable difference in how far {title} falls (the smallest difference these cases could "
            f"show: {drop['detectable']:.3f}); {winner} scores higher {under} ({title} {score_text}), {on_clean}.")


def _no_difference(items: list[tuple[str, Mapping]], title: str, equivalence: float | None) -> list[str]:
    if not items:
        return []
    out = []
    by_pair: dict[tuple[str, str], list[tuple[str, Mapping]]] = {}
    for name, row in items:
        by_pair.setdefault((row["model_a"], row["model_b"]), []).append((name, row))
    for (a, b), members in by_pair.items():
        listed = ", ".join(f"{name} ({row['detectable']:.3f})" for name, row in members)
        out.append(f"No detectable difference in {title} drop between {a} and {b} under {listed}: the number in "
                   "brackets is the smallest mean difference these cases could show with 80% power (paired t, 5%).")
        if equivalence is not None:
            equal = [name for name, row in members if -equivalence < row["ci90_low"] and row["ci90_high"] < equivalence]
            if equal:
                out.append(f"Equivalent within +/-{equivalence:g} {title} (two one-sided tests at 5%: the 90% interval "
                           f"of the drop difference {a} - {b} lies inside the margin): {', '.join(equal)}.")
    return out


def verdict(comparisons: pd.DataFrame, models: Sequence[str] | Mapping[str, Sequence[str]], label: str,
            metric: str = VERDICT_METRIC, equivalence: float | None = None) -> list[str]:
    """Sentences a researcher can quote (module docstring): whether training-run variance is included, an
    overall count per model, then the findings, strongest first."""
    arms = _arms(models)
    if len(arms) < 2:
        return ["One model: nothing to compare; see its degradation below."]
    rows = comparisons[(comparisons["label"] == label) & (comparisons["metric"] == metric)] if len(comparisons) \
        else comparisons
    findings = _findings(rows) if len(rows) else []
    if not findings:
        return [single_run_sentence(arms),
                "No condition besides clean: no robustness comparison (run conditions together with clean)."]
    title, better = METRIC_TITLES.get(metric, metric), 1 if METRICS[metric].higher_is_better else -1
    keyed = {(r["scope"], r["name"], r["axis"], r["model_a"], r["model_b"]): r for _, r in rows.iterrows()}
    judged: list[tuple[str, str | None, str, Mapping, Mapping | None, Mapping | None]] = []
    for scope, name in findings:
        for (s, n, axis, a, b), drop in list(keyed.items()):
            if (s, n, axis) != (scope, name, DROP):
                continue
            score, clean = keyed.get((scope, name, SCORE, a, b)), keyed.get((CLEAN, CLEAN, SCORE, a, b))
            category, winner = judge(drop, score, clean, better)
            judged.append((category, winner, name, drop, score, clean))
    order = [MORE_ROBUST, CLEAN_GAP, MIXED, DISAGREE, SCORE_ONLY]
    sentences = []
    for category in order:
        members = sorted((j for j in judged if j[0] == category), key=lambda j: -abs(j[3]["mean_difference"]))
        sentences += [_sentence(c, w, n, d, s, k, title, better) for c, w, n, d, s, k in members]
    sentences += _no_difference([(n, d) for c, _, n, d, _, _ in judged if c == NO_DIFFERENCE], title, equivalence)
    # a family counts once per model however many other models it beat there (with three models a win
    # over both used to count twice: "NoSkip (8 families)" of 7)
    wins = {model: list(dict.fromkeys(n for c, w, n, *_ in judged if c == MORE_ROBUST and w == model))
            for model in arms}
    counts = {category: len({n for c, _, n, *_ in judged if c == category}) for category in order + [NO_DIFFERENCE]}
    overall = "; ".join(f"{model} is more robust under {len(names)} ({', '.join(names)})" if names
                        else f"{model} under none" for model, names in sorted(wins.items(), key=lambda i: -len(i[1])))
    extra = [f"{counts[c]} {c}" for c in (CLEAN_GAP, MIXED, DISAGREE, SCORE_ONLY, NO_DIFFERENCE) if counts[c]]
    head = (f"Overall ({title}, {len(findings)} families/conditions judged on the drop and the score under each): "
            f"{overall}" + (f"; {', '.join(extra)}" if extra else "") + ".")
    return [single_run_sentence(arms), head] + sentences

"""The verdict: quotable sentences from the paired comparisons (``analysis.robustness``), strongest first.

It covers everything the user ran: each family graded at two or more severities (as a whole: the area
of the drop and the mean score over its severities) and every other condition on its own (a single
severity, a preset such as the seed study's four, an attack, a context shift, a calibrated level).
For each of them and each pair of models, with W the model whose score falls less:

- **more robust**: W's drop is detectably smaller *and* W does not score lower under the condition
  (the score's 95 % interval lies on W's side, or spans 0 while W does not start lower on clean images);
- **the clean gap**: W falls less but starts lower and scores the same under the condition (the
  score's interval spans 0): the smaller drop is the clean gap, not robustness (a model that starts
  low has little to lose);
- **mixed**: W falls less but still scores lower under the condition (the interval on W's worse side);
- **disagree**: interval or test say "different" but the mean and the typical case (median,
  Hodges-Lehmann, the test's direction) point different ways: both numbers, no winner;
- **score only**: the drops do not differ detectably but the scores under the condition do;
- **no detectable difference**, with the smallest difference this n and spread could show (80 %
  power), and "equivalent within +/-delta" where the 90 % interval lies inside the margin (TOST).

"Detectably" is ``robustness.detected`` (FDR-controlled); the score under the condition only guards a
drop finding, so its interval alone decides there. The first sentence says whether the intervals include the
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
    SCORE,
    VERDICT_METRIC,
    detected,
    direction_agrees,
    runs_of,
)
from nnunet_robustness.metrics.masks import METRICS, metric_title

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


def _favours(row: Mapping, model: str, better: int) -> int:
    """+1 when ``row``'s 95 % interval lies on ``model``'s better side, -1 on its worse side, 0 when it spans 0."""
    sign = better * (1 if row["model_a"] == model else -1)
    low, high = sorted((sign * row["ci_low"], sign * row["ci_high"]))
    return 1 if low > 0 else -1 if high < 0 else 0


def judge(drop: Mapping, score: Mapping | None, clean: Mapping | None, better: int) -> tuple[str, str | None]:
    """The category of one finding for one pair (module docstring) and the model W it favours (or None).
    ``better`` is +1 where a higher metric is better, -1 for distances.

    The drop decides (FDR-controlled: ``robustness.detected``); the score under the condition is a guard
    read from its 95 % interval alone: an interval on W's worse side makes the finding "mixed", one that
    spans 0 while W starts lower on clean images makes it "the clean gap"."""
    drop_found = detected(drop)
    if not drop_found and (drop["p_fdr"] < FDR_LEVEL or drop["ci_low"] > 0 or drop["ci_high"] < 0) \
            and not direction_agrees(drop):
        return DISAGREE, None
    if not drop_found:
        if score is not None and detected(score):
            return SCORE_ONLY, score["model_a"] if better * score["mean_difference"] > 0 else score["model_b"]
        return NO_DIFFERENCE, None
    winner = drop["model_a"] if drop["mean_difference"] < 0 else drop["model_b"]
    under = 0 if score is None else _favours(score, winner, better)
    if under < 0:
        return MIXED, winner
    starts_lower = clean is not None and better * clean["mean_difference"] * (1 if clean["model_a"] == winner
                                                                               else -1) < 0
    return (CLEAN_GAP if under == 0 and starts_lower else MORE_ROBUST), winner


def _sentence(category: str, winner: str | None, name: str, drop: Mapping, score: Mapping | None,
              clean: Mapping | None, title: str, better: int) -> str:
    a, b = drop["model_a"], drop["model_b"]
    loser = (b if winner == a else a) if winner else None
    gap = abs(drop["mean_difference"])
    under = f"under {name}"
    score_text = "" if score is None else _numbers(score, winner or a, loser or b)
    clean_text = "" if clean is None else _numbers(clean, winner or a, loser or b)
    if category == MORE_ROBUST:
        higher = score is not None and _favours(score, winner, better) > 0
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
    return (f"{name}: no detectable difference between {a} and {b} in how far {title} falls (the smallest difference "
            f"these cases could show: {drop['detectable']:.3f}); {winner} scores higher {under} ({title} {score_text}), "
            f"{on_clean}.")


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
                   "brackets is the smallest mean difference these cases could show with 80% power at 5% (before the FDR "
                   "adjustment).")
        if equivalence is not None:
            equal = [name for name, row in members if -equivalence < row["ci90_low"] and row["ci90_high"] < equivalence]
            if equal:
                out.append(f"Equivalent within +/-{equivalence:g} {title} (two one-sided tests at 5%: the 90% interval "
                           f"of the drop difference {a} - {b} lies inside the margin): {', '.join(equal)}.")
    return out


def verdict(comparisons: pd.DataFrame, models: Sequence[str] | Mapping[str, Sequence[str]], label: str,
            metric: str = VERDICT_METRIC, equivalence: float | None = None, given: int | None = None) -> list[str]:
    """Sentences a researcher can quote (module docstring): whether training-run variance is included, an
    overall count per model, then the findings, strongest first. ``models`` are the ones judged (past the
    sanity gate); ``given``: how many the user gave, when more."""
    arms = runs_of(models)
    if len(arms) < 2:
        if given is not None and given > 1:
            passed = ", ".join(arms) or "none"
            return [f"Fewer than two of the {given} models passed the sanity gate (passed: {passed}): no robustness "
                    "comparison (eval --allow-weak-models keeps the others in, marked)."]
        return ["One model: nothing to compare; see its degradation below."]
    rows = comparisons[(comparisons["label"] == label) & (comparisons["metric"] == metric)] if len(comparisons) \
        else comparisons
    findings = _findings(rows) if len(rows) else []
    if not findings:
        return [single_run_sentence(arms),
                "No condition besides clean: no robustness comparison (run conditions together with clean)."]
    title, better = metric_title(metric), 1 if METRICS[metric].higher_is_better else -1
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
    wins: dict[str, dict[str, list[str]]] = {}  # model -> finding -> the models it is more robust than
    for category, winner, name, drop, *_ in judged:
        if category == MORE_ROBUST:
            loser = drop["model_b"] if winner == drop["model_a"] else drop["model_a"]
            wins.setdefault(winner, {}).setdefault(name, []).append(loser)
    counts = {category: sum(1 for c, *_ in judged if c == category) for category in order + [NO_DIFFERENCE]}
    winners = sorted(wins.items(), key=lambda item: -len(item[1]))
    overall = ("; ".join(f"{model} is more robust under {len(found)} ("
                         + ", ".join(name + ("" if len(arms) == 2 else f" than {' and '.join(losers)}")
                                     for name, losers in found.items()) + ")" for model, found in winners)
               if winners else "no model is more robust under any of them")
    pairs = len(arms) * (len(arms) - 1) // 2
    extra = [f"{counts[c]} {c}" for c in (CLEAN_GAP, MIXED, DISAGREE, SCORE_ONLY, NO_DIFFERENCE) if counts[c]]
    judged_what = (f"{len(findings)} famil{'y' if len(findings) == 1 else 'ies'}/condition"
                   f"{'' if len(findings) == 1 else 's'} judged on the drop and the score under each"
                   + (f", {pairs} pairs of models" if pairs > 1 else ""))
    head = (f"Overall ({title}, {judged_what}): {overall}"
            + (f"; other comparisons: {', '.join(extra)}" if extra else "") + ".")
    return [single_run_sentence(arms), head] + sentences

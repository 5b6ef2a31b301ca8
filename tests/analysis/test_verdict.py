"""The verdict's sentences on data whose truth is known: every condition, both axes, direction, size, runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnunet_robustness.analysis.ranking import rank_stability, ranking_sentences
from nnunet_robustness.analysis.robustness import compare_models, interval_test_note, per_case_degradation
from nnunet_robustness.analysis.verdict import CLEAN_GAP, DISAGREE, MORE_ROBUST, judge, verdict

LABEL = "foreground_mean"


def _table(scores: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """model -> condition -> per-case Dice (NSD and HD95 follow Dice)."""
    rows = []
    for model, by_condition in scores.items():
        for condition, values in by_condition.items():
            for case, value in enumerate(values):
                rows.append({"model": model, "condition": condition, "label": LABEL, "case": f"c{case:02d}",
                             "dice": value, "nsd": value, "hd95_mm": 10 * (1 - value)})
    return pd.DataFrame(rows)


def _conditions(names: list[str]) -> pd.DataFrame:
    """Single-level conditions (no family, no severity: a preset such as the seed study's background blur)."""
    return pd.DataFrame([{"condition": "clean", "family": None, "severity": 0.0}]
                        + [{"condition": name, "family": None, "severity": np.nan} for name in names])


def _verdict(scores, models, equivalence=None, n_bootstrap=999):
    table = _table(scores)
    degradation = per_case_degradation(table, _conditions([c for c in next(iter(scores.values())) if c != "clean"]),
                                       "clean")
    comparisons = compare_models(degradation, models, seed=0, n_bootstrap=n_bootstrap)
    return comparisons, verdict(comparisons, models, LABEL, equivalence=equivalence)


def test_two_identical_models_under_one_condition_show_no_difference_with_its_detectable_size():
    rng = np.random.default_rng(1)
    clean = rng.uniform(0.7, 0.9, 12)
    blurred = clean - rng.uniform(0.0, 0.3, 12)
    _, sentences = _verdict({"A": {"clean": clean, "blur": blurred}, "B": {"clean": clean, "blur": blurred}},
                            ["A", "B"])
    assert sentences[0].startswith("Each model is one training run")
    assert "no detectable difference" in sentences[1]
    assert sentences[-1].startswith("No detectable difference in Dice drop between A and B under blur (")


def test_a_model_collapsing_under_one_single_level_condition_is_named():
    """The demo's finding: U-Net falls from 0.67 to 0.23 under background blur, No-Skip does not."""
    rng = np.random.default_rng(2)
    clean_a, clean_b = rng.uniform(0.6, 0.75, 12), rng.uniform(0.5, 0.65, 12)
    scores = {"UNet": {"clean": clean_a, "seed-study_blur": clean_a - rng.uniform(0.35, 0.5, 12)},
              "NoSkip": {"clean": clean_b, "seed-study_blur": clean_b + rng.uniform(0.0, 0.1, 12)}}
    comparisons, sentences = _verdict(scores, ["UNet", "NoSkip"])
    assert "NoSkip is more robust under 1 (seed-study_blur)" in sentences[1]
    finding = next(s for s in sentences if s.startswith("seed-study_blur:"))
    # both axes in one sentence: the drop and the score under the condition
    assert "NoSkip is more robust than UNet" in finding and "falls" in finding and "higher under" in finding
    assert set(comparisons["axis"]) == {"drop", "score"}


def test_a_smaller_drop_from_a_lower_start_is_called_the_clean_gap():
    """The noise study's 'falls less': equal scores under the noise, the lower model has less to lose."""
    rng = np.random.default_rng(3)
    under_noise = rng.uniform(0.45, 0.6, 20)
    scores = {"high": {"clean": under_noise + 0.25 + rng.normal(0, 0.01, 20), "noise": under_noise},
              "low": {"clean": under_noise + 0.05 + rng.normal(0, 0.01, 20),
                      "noise": under_noise + rng.normal(0, 0.03, 20)}}
    comparisons, sentences = _verdict(scores, ["high", "low"])
    finding = next(s for s in sentences if s.startswith("noise:"))
    assert "the smaller drop is the clean gap, not robustness" in finding and finding.startswith("noise: low's Dice")
    assert "more robust under 1" not in sentences[1] and "1 clean gap" in sentences[1]


def test_the_mean_and_the_typical_case_disagreeing_gives_no_winner():
    """A degrades 0.02 less on 88 % of cases and fails on 12 %: the mean favours B, the median A."""
    rng = np.random.default_rng(4)
    n = 50
    clean = rng.uniform(0.8, 0.9, n)
    fails = np.zeros(n, bool)
    fails[:6] = True
    a = clean - 0.05 + rng.normal(0, 0.005, n)
    a[fails] = 0.0
    b = clean - 0.07 + rng.normal(0, 0.005, n)
    comparisons, sentences = _verdict({"A": {"clean": clean, "x": a}, "B": {"clean": clean, "x": b}}, ["A", "B"])
    drop = comparisons[(comparisons["axis"] == "drop") & (comparisons["metric"] == "dice")].iloc[0]
    assert drop["mean_difference"] > 0 > drop["median_difference"]  # mean: B degrades less; typical case: A
    assert judge(drop, None, None, 1)[0] == DISAGREE
    finding = next(s for s in sentences if s.startswith("x:"))
    assert "the mean and the typical case disagree" in finding and "more robust than" not in finding
    assert interval_test_note(drop) != ""


def test_equivalence_within_a_margin():
    rng = np.random.default_rng(5)
    clean = rng.uniform(0.7, 0.9, 30)
    scores = {"A": {"clean": clean, "x": clean - 0.1 + rng.normal(0, 0.01, 30)},
              "B": {"clean": clean, "x": clean - 0.1 + rng.normal(0, 0.01, 30)}}
    _, sentences = _verdict(scores, ["A", "B"], equivalence=0.02)
    assert any(s.startswith("Equivalent within +/-0.02 Dice") and s.endswith(": x.") for s in sentences), sentences
    _, strict = _verdict(scores, ["A", "B"], equivalence=0.001)
    assert not any(s.startswith("Equivalent") for s in strict)


def _runs(effect_per_run: dict[str, list[float]], n: int = 20, seed: int = 6):
    """Models with several runs: each run shifts the drop under x by its own offset (seed variance)."""
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0.75, 0.9, n)
    scores, arms = {}, {}
    for model, offsets in effect_per_run.items():
        arms[model] = []
        for index, offset in enumerate(offsets, 1):
            run = f"{model}:{index}"
            arms[model].append(run)
            scores[run] = {"clean": clean, "x": clean - 0.2 - offset + rng.normal(0, 0.005, n)}
    return scores, arms


def test_training_run_variance_is_part_of_the_verdict():
    # runs of A and B differ more among themselves than the models differ on average: not detectable
    scores, arms = _runs({"A": [0.00, 0.10, -0.10], "B": [0.03, 0.13, -0.07]})
    comparisons, sentences = _verdict(scores, arms)
    assert sentences[0].startswith("Training runs per model: A 3, B 3")
    drop = comparisons[(comparisons["axis"] == "drop") & (comparisons["metric"] == "dice")].iloc[0]
    assert drop["test"].startswith("two-level bootstrap") and drop["ci_low"] < 0 < drop["ci_high"]
    assert "no detectable difference" in sentences[1]
    # the same cases read as one run per model (each run a 'model') would call A more robust than B's 1st run
    single = {"A": scores["A:1"], "B": scores["B:1"]}
    _, naive = _verdict(single, ["A", "B"])
    assert "A is more robust under 1" in naive[1]
    # runs that agree: the difference is detected with its run variance included
    scores, arms = _runs({"A": [0.00, 0.01, -0.01], "B": [0.10, 0.11, 0.09]})
    _, sentences = _verdict(scores, arms)
    assert "A is more robust under 1 (x)" in sentences[1]


def test_ranking_with_its_stability():
    rng = np.random.default_rng(7)
    clean = rng.uniform(0.75, 0.9, 25)
    scores = {m: {"clean": clean, "x": clean - drop + rng.normal(0, 0.01, 25)}
              for m, drop in (("best", 0.05), ("middle", 0.15), ("worst", 0.3))}
    table = _table(scores)
    degradation = per_case_degradation(table, _conditions(["x"]), "clean")
    ranking = rank_stability(degradation, {m: [m] for m in scores}, LABEL, n_bootstrap=500)
    score = ranking[ranking["criterion"] == "score"].set_index("model")
    assert score.loc["best", "rank"] == 1 and score.loc["best", "p_rank1"] == 1.0
    assert score.loc["worst", ["rank_low", "rank_high"]].tolist() == [3.0, 3.0]
    assert ranking_sentences(ranking)[0].endswith("every rank is stable under resampling.")
    # two equal models share rank 1 in about half the resamples
    scores["twin"] = {"clean": clean, "x": scores["best"]["x"] + rng.normal(0, 0.01, 25)}
    degradation = per_case_degradation(_table(scores), _conditions(["x"]), "clean")
    ranking = rank_stability(degradation, {m: [m] for m in scores}, LABEL, n_bootstrap=500).set_index(
        ["criterion", "model"])
    assert 0.1 < ranking.loc[("score", "best"), "p_rank1"] < 0.9
    assert ranking.loc[("score", "best"), "rank_low"] == 1 and ranking.loc[("score", "best"), "rank_high"] == 2


@pytest.mark.parametrize("category", [MORE_ROBUST, CLEAN_GAP])
def test_judge_reads_the_clean_gap_from_the_winner_side(category):
    """W = model_b falls less; whether it starts lower decides between the two categories."""
    drop = {"model_a": "A", "model_b": "B", "mean_difference": 0.2, "median_difference": 0.2,
            "hodges_lehmann": 0.2, "direction": 1.0, "ci_low": 0.1, "ci_high": 0.3, "p_fdr": 0.001}
    score = {**drop, "mean_difference": 0.0, "ci_low": -0.05, "ci_high": 0.05, "p_fdr": 0.9}
    clean = {**drop, "mean_difference": 0.2 if category == CLEAN_GAP else -0.01}
    assert judge(drop, score, clean, 1) == (category, "B")


def test_a_family_won_against_two_models_counts_once():
    """Three models, one condition where A beats both others: A is more robust under 1, not 2."""
    rng = np.random.default_rng(7)
    clean = rng.uniform(0.7, 0.8, 16)
    scores = {"A": {"clean": clean, "blur": clean - rng.uniform(0.0, 0.02, 16)},
              "B": {"clean": clean, "blur": clean - rng.uniform(0.3, 0.4, 16)},
              "C": {"clean": clean, "blur": clean - rng.uniform(0.3, 0.4, 16)}}
    _, sentences = _verdict(scores, ["A", "B", "C"])
    head = next(s for s in sentences if s.startswith("Overall"))
    assert "A is more robust under 1 (blur than B and C)" in head


def test_an_attack_weaker_than_random_signs_is_flagged():
    from nnunet_robustness.analysis.attack_check import weak_attacks

    rng = np.random.default_rng(8)
    clean = rng.uniform(0.8, 0.9, 10)
    table = _table({"M": {"clean": clean, "adv_pgd_linf_sev3": clean + 0.01, "adv_random_sign_sev3": clean,
                          "adv_fgsm_sev3": clean - 0.2}})
    conditions = pd.DataFrame([
        {"model": "M", "condition": "adv_pgd_linf_sev3", "family": "adv_pgd_linf", "severity": 3.0,
         "parameters": '{"objective": "prediction", "severity": 3}'},
        {"model": "M", "condition": "adv_fgsm_sev3", "family": "adv_fgsm", "severity": 3.0, "parameters": None},
        {"model": "M", "condition": "adv_random_sign_sev3", "family": "adv_random_sign", "severity": 3.0,
         "parameters": None}])
    (sentence,) = weak_attacks(table, conditions)
    assert sentence.startswith("M: adv_pgd_linf_sev3 (objective: the prediction) lowered Dice no more than random")
    assert "run with --reference" in sentence  # FGSM hurt: not flagged

"""A study's verdict words, each produced from synthetic per-case data by the stated rule; the convergence
rule on nnU-Net's log; the trivial baseline fitted on training labels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nnunet_robustness.studies import baseline as trivial
from nnunet_robustness.studies.convergence import CONVERGED_SLOPE, judge_curve, raw_pseudo_dice
from nnunet_robustness.studies.findings import (
    CONTRADICTED,
    INCONCLUSIVE,
    LARGER,
    NOT_EVALUATED,
    NOT_LEARNED,
    REPRODUCED,
    SAME_DIRECTION,
    SMALLER,
    UNCONVERGED,
    ArmState,
    Finding,
    Paired,
    Published,
    case_scores,
    drop_pair,
    judge,
    score_pair,
    sentence,
)
from nnunet_robustness.studies.protocols import beats_baseline

CONVERGED = {"run": "r", "epochs": 20, "window": 5, "slope": 0.0, "last": 0.9, "converged": True, "reason": ""}


def _arms(converged: bool = True, learned: bool = True) -> list[ArmState]:
    entry = {**CONVERGED, "converged": converged}
    return [ArmState("A", ["A:1", "A:2", "A:3"], [entry] * 3, {"learned": learned}),
            ArmState("B", ["B:1", "B:2", "B:3"], [CONVERGED] * 3, {"learned": True})]


def _paired(effect: float, n: int = 20, runs: int = 3, spread: float = 0.03, seed: int = 0) -> Paired:
    """Three runs per arm over the same cases: B's per-case Dice plus run noise; A = B + effect."""
    rng = np.random.default_rng(seed)
    cases = rng.uniform(0.6, 0.9, n)
    b = cases + rng.normal(0, 0.005, (runs, n))
    a = cases + effect + rng.normal(0, spread, n) + rng.normal(0, 0.005, (runs, n))
    return Paired(a, b)


def _judge(effect: float, published: Published, **arms) -> Finding:
    finding = Finding("k", "A is ahead of B", "Dice(A) - Dice(B)", published, ("A", "B"), states=_arms(**arms))
    [judged] = judge([finding], [_paired(effect)], n_bootstrap=500)
    return judged


PUBLISHED = Published(0.10, 0.10, "A 0.80 vs B 0.70")  # band [0.05, 0.20]


@pytest.mark.parametrize("effect, published, arms, verdict", [
    (0.10, PUBLISHED, {}, REPRODUCED),
    (0.02, PUBLISHED, {}, SMALLER),  # detected, interval below 0.05
    (0.40, PUBLISHED, {}, LARGER),  # detected, interval above 0.20
    (-0.10, PUBLISHED, {}, CONTRADICTED),  # the opposite sign
    (0.0, PUBLISHED, {}, CONTRADICTED),  # holds 0 but excludes the published size
    (0.10, Published(None, None, "in words only"), {}, SAME_DIRECTION),
    (0.0, Published(None, None, "in words only"), {}, INCONCLUSIVE),
    (0.10, PUBLISHED, {"converged": False}, UNCONVERGED),
    (0.10, PUBLISHED, {"learned": False, "converged": False}, NOT_LEARNED),  # not learned comes first
])
def test_each_verdict_word_follows_the_stated_rule(effect, published, arms, verdict):
    finding = _judge(effect, published, **arms)
    assert finding.verdict == verdict, (finding.statistics["ci_low"], finding.statistics["ci_high"], finding.reason)
    record = finding.to_json()
    assert record["runs_per_arm"] == {"A": 3, "B": 3} and record["rule"].startswith("In order")
    assert record["published"]["source"] and record["converged"]["B"] is True
    assert "3 vs 3 training runs" in sentence(finding)


def test_inconclusive_when_the_interval_holds_zero_and_the_published_size():
    """Few noisy cases: the interval spans 0 and reaches into the band."""
    rng = np.random.default_rng(3)
    b = rng.uniform(0.6, 0.9, (3, 6))
    a = b + 0.05 + rng.normal(0, 0.15, (1, 6))
    finding = Finding("k", "claim", "a - b", PUBLISHED, ("A", "B"), states=_arms())
    [judged] = judge([finding], [Paired(a, b)], n_bootstrap=500)
    assert judged.statistics["ci_low"] < 0 < judged.statistics["ci_high"] and judged.statistics["ci_high"] > 0.05
    assert judged.verdict == INCONCLUSIVE and "holds 0" in judged.reason


def test_one_run_per_arm_uses_the_paired_case_interval_and_says_so():
    rng = np.random.default_rng(4)
    b = rng.uniform(0.6, 0.9, (1, 20))
    finding = Finding("k", "claim", "a - b", PUBLISHED, ("A", "B"))
    [judged] = judge([finding], [Paired(b + 0.1 + rng.normal(0, 0.02, (1, 20)), b)], n_bootstrap=500)
    assert judged.statistics["test"] == "Wilcoxon signed-rank" and judged.verdict == REPRODUCED
    assert "1 vs 1 training runs" in sentence(judged)


def test_findings_without_data_are_not_evaluated_and_left_out_of_the_correction():
    strong = _paired(0.1)
    missing, present = judge([Finding("a", "c", "d", PUBLISHED), Finding("b", "c", "d", PUBLISHED)], [None, strong],
                             n_bootstrap=500)
    assert missing.verdict == NOT_EVALUATED and not missing.statistics
    assert present.verdict == REPRODUCED and present.p_fdr == pytest.approx(present.statistics["p_value"])


def test_arm_pairs_are_read_from_eval_run_columns_and_drops_subtract_per_run():
    rows = []
    for run, offset in (("A:1", 0.0), ("A:2", 0.02), ("B:1", -0.1), ("B:2", -0.12)):
        for case in ("c1", "c2"):
            rows.append({"model": run, "condition": "clean", "case": case, "label": "1", "dice": 0.9 + offset})
            rows.append({"model": run, "condition": "noise", "case": case, "label": "1", "dice": 0.7 + offset})
    from nnunet_robustness.metrics.per_case import METRICS

    frame = pd.DataFrame(rows)
    for metric in METRICS:
        frame[metric] = frame.get(metric, np.nan)
    scores = case_scores(frame)
    pair = score_pair(scores, "noise", ["c1", "c2"], ["A:1", "A:2"], ["B:1", "B:2"])
    assert pair.a.shape == (2, 2) and pair.a[1, 0] == pytest.approx(0.72) and pair.b[0, 0] == pytest.approx(0.6)
    drop = drop_pair(scores, "noise", "clean", ["c1", "c2"], ["A:1", "A:2"], ["B:1", "B:2"])
    assert np.allclose(drop.a, 0.2) and np.allclose(drop.b, 0.2)
    assert score_pair(scores, "noise", ["c1"], ["A:1", "A:9"], ["B:1"]) is None  # a run eval does not have


def test_convergence_rule_reads_the_raw_pseudo_dice_not_its_lagging_average():
    rising = [0.8 + 0.01 * e for e in range(20)]
    assert not judge_curve(rising, "r").converged
    plateau = [0.8 + 0.01 * min(e, 12) for e in range(20)]
    assert judge_curve(plateau, "r").converged
    # nnU-Net's EMA of the plateaued curve still rises above the rule's slope; the raw values are recovered
    ema = [plateau[0]]
    for value in plateau[1:]:
        ema.append(0.9 * ema[-1] + 0.1 * value)
    assert np.polyfit(range(5), ema[-5:], 1)[0] > CONVERGED_SLOPE
    assert raw_pseudo_dice({"ema_fg_dice": ema}) == pytest.approx(plateau)
    assert judge_curve(raw_pseudo_dice({"ema_fg_dice": ema}), "r").converged
    falling = [0.3 - 0.01 * e for e in range(10)]
    assert judge_curve(falling, "r").converged  # stopped improving; "learned" is the baseline's question
    short = judge_curve([0.5, 0.6, 0.7], "r")
    assert not short.converged and short.slope is None and "too few" in short.reason


def _normal_error_rate(window: int, noise: float) -> float:
    """The rule's error rate from the slope's distribution: the least-squares slope of ``window`` points with
    scatter SD ``noise`` is normal with SD noise / sqrt(sum (x - mean)^2), so a flat curve reads "unconverged",
    and one rising at twice the limit "converged", with probability P(Z >= limit / SD)."""
    from scipy.stats import norm

    x = np.arange(window)
    return norm.sf(CONVERGED_SLOPE / (noise / np.sqrt(((x - x.mean()) ** 2).sum())))


def test_the_rules_simulated_error_rates_equal_the_normal_slope_distribution():
    """benchmarks/convergence_simulation.py's rates equal the slope's normal distribution: at 20 epochs
    (window 9) and s = 0.006 that is 0.005, at 50 epochs (window 13) 0."""
    from nnunet_robustness.studies.convergence import unconverged_rate, window_of

    def expected(epochs: int, noise: float) -> float:
        return _normal_error_rate(window_of(epochs), noise)

    # 1,000 curves: the rate's standard error is at most 0.016, a third of the tolerance
    assert unconverged_rate(20, 0.006, 0.0, 1000) == pytest.approx(expected(20, 0.006), abs=0.05)
    assert 1 - unconverged_rate(20, 0.006, 2 * CONVERGED_SLOPE, 1000) == pytest.approx(expected(20, 0.006), abs=0.05)
    assert unconverged_rate(50, 0.006, 0.0, 1000) == pytest.approx(expected(50, 0.006), abs=0.01)
    assert unconverged_rate(20, 0.0, 0.0, 10) == 0.0 and unconverged_rate(20, 0.0, 0.003, 10) == 1.0
    # the old 5-epoch window, measured through the same path: 0.146 at s = 0.006
    assert unconverged_rate(20, 0.006, 0.0, 1000, min_window=5) == pytest.approx(0.146, abs=0.05)


def test_the_rules_window_is_the_shortest_with_both_error_rates_within_1_percent():
    """convergence.MIN_WINDOW's stated basis: at the largest scatter seen (0.006) the shortest window whose
    false "unconverged" (flat curve) and false "converged" (rising at twice the limit) are both <= 1 %.
    Both equal P(Z >= limit / SD(slope)), so the normal distribution of the slope decides it."""
    from nnunet_robustness.studies.convergence import MIN_WINDOW

    assert MIN_WINDOW == min(w for w in range(3, 30) if _normal_error_rate(w, 0.006) <= 0.01)


def test_trivial_baseline_fits_the_prior_mask_on_training_labels_only():
    rng = np.random.default_rng(5)
    training = []
    for _ in range(30):  # a square that sits near the centre, jittered
        label = np.zeros((32, 32), np.uint8)
        y, x = rng.integers(10, 14, 2)
        label[y:y + 10, x:x + 10] = 1
        training.append(label)
    fitted = trivial.fit(training, [1])
    [label_fit] = fitted.labels
    assert label_fit.strategy == trivial.PRIOR and 0 < label_fit.threshold < 1
    centred = np.zeros((32, 32), np.uint8)
    centred[11:21, 11:21] = 1
    assert fitted.case_dice(centred) > 0.6
    elsewhere = np.zeros((32, 32), np.uint8)
    elsewhere[0:6, 0:6] = 1
    assert fitted.case_dice(elsewhere) == 0.0
    # a label that fills most of the image: predicting everything wins
    full = [np.ones((8, 8), np.uint8) for _ in range(5)]
    for f in full:
        f[0, :2] = 0
    assert trivial.fit(full, [1]).labels[0].strategy in (trivial.EVERYTHING, trivial.PRIOR)
    mixed = trivial.fit([np.ones((4, 4), np.uint8), np.ones((5, 5), np.uint8)], [1])
    assert mixed.labels[0].strategy == trivial.EVERYTHING and "differ in shape" in mixed.note


def test_a_model_learned_only_when_its_interval_lies_above_the_baseline():
    rng = np.random.default_rng(6)
    base = rng.uniform(0.3, 0.35, 20)
    assert beats_baseline(base + 0.3 + rng.normal(0, 0.05, 20), base)["learned"] is True
    below = beats_baseline(base - 0.05 + rng.normal(0, 0.02, 20), base)
    assert below["learned"] is False and below["baseline_dice"] == pytest.approx(base.mean())
    assert beats_baseline(base[:1], base[:1])["learned"] is None
    assert math.isfinite(below["ci_low"])


def test_arms_at_the_trivial_baseline_under_the_condition_are_named_and_the_verdict_kept():
    """A shifted or noisy condition where an arm no longer beats the image-independent prediction: the rule's
    word stands, and the reason, the sentence and study.json say which arm lost the task there."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.30, 0.35, 20)
    lost, kept = beats_baseline(base + rng.normal(0, 0.02, 20), base), beats_baseline(base + 0.3, base)
    assert lost["learned"] is False and kept["learned"] is True
    expected = _judge(0.0, PUBLISHED)
    for under, words in (({"A": lost, "B": lost}, "neither arm beats"), ({"A": kept, "B": lost}, "B does not beat")):
        finding = Finding("k", "A is ahead of B", "Dice(A) - Dice(B)", PUBLISHED, ("A", "B"), states=_arms(),
                          under_condition=under)
        [judged] = judge([finding], [_paired(0.0)], n_bootstrap=500)
        assert judged.verdict == expected.verdict and judged.reason.startswith(expected.reason)
        assert words in judged.reason and words in sentence(judged)
        assert judged.to_json()["caveat"] and judged.to_json()["under_condition"] == under
    both_kept = Finding("k", "c", "d", PUBLISHED, ("A", "B"), under_condition={"A": kept, "B": kept})
    assert both_kept.caveat() == "" and Finding("k", "c", "d", PUBLISHED).caveat() == ""

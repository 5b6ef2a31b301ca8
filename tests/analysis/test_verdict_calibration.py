"""The verdict tested like a claim (issue #28): interval coverage, false verdicts under identical models and
the direction of a verdict, by simulation on Dice-like data (``analysis.verdict_simulation``; fixed seeds,
about 15 s). The same functions with more repetitions give the table in docs/evaluation.md."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_robustness.analysis import intervals
from nnunet_robustness.analysis import verdict_simulation as simulation

# scores_with_failures is left out on purpose: at n <= 12 a third of its samples hold no failure, and no
# interval built from the sample covers then (docs/evaluation.md shows its numbers)
COVERED = ("skewed_scores", "paired_in_distribution", "paired_with_failures")


@pytest.mark.parametrize("n", [8, 12, 20])
@pytest.mark.parametrize("generator", COVERED)
def test_the_reported_interval_covers_at_the_sizes_users_have(generator, n):
    assert simulation.coverage(generator, n, repetitions=1000) >= 0.93


def test_bca_under_covers_where_the_reported_interval_does_not():
    """The check can fail: BCa, eval's earlier interval, misses 0.93 on the same data."""
    assert simulation.coverage("skewed_scores", 8, repetitions=1000, method="bca") < 0.93


@pytest.mark.parametrize("n", [8, 12, 20])
@pytest.mark.parametrize("kind", ["in_distribution", "shifted"])
def test_identical_models_are_called_different_at_most_5_percent_of_the_time(kind, n):
    assert simulation.false_verdict_rate(kind, n, repetitions=500) <= 0.05


@pytest.mark.parametrize("n", [20, 50])
def test_a_verdict_never_contradicts_the_median(n):
    contradictions, _ = simulation.verdicts_against_the_median(n, repetitions=300)
    assert contradictions == 0


def test_the_detectable_difference_has_80_percent_power():
    """At the stated smallest detectable difference the paired t-test rejects 80 % of the time."""
    from scipy.stats import ttest_1samp

    rng = np.random.default_rng(0)
    n, spread = 12, 0.1
    effect = intervals.detectable_difference(spread, n)
    rejected = np.mean([ttest_1samp(rng.normal(effect, spread, n), 0).pvalue < 0.05 for _ in range(4000)])
    assert rejected == pytest.approx(0.80, abs=0.02)


def test_the_rule_has_about_80_percent_power_at_the_difference_it_states():
    """The verdict's own rule (Wilcoxon, the wider reported interval), not only the t-test: at the detectable
    difference it states for such data, it detects the difference about 80 % of the time."""
    _, stated = simulation.power(0.0, 0.035, 20, repetitions=200)
    detected, _ = simulation.power(stated, 0.035, 20, repetitions=600)
    assert 0.70 <= detected <= 0.90


def test_training_run_intervals_cover_and_keep_false_verdicts_rare():
    covered, false = simulation.two_level_coverage(runs=3, n=20, repetitions=300)
    assert covered >= 0.93 and false <= 0.05


def test_median_interval_is_the_order_statistic_interval():
    values = np.arange(1.0, 21.0)  # n = 20: [x_(6), x_(15)] has binomial coverage 0.959, [x_(7), x_(14)] 0.885
    assert intervals.median_interval(values) == (6.0, 15.0)
    assert intervals.median_interval(np.array([3.0, 1.0, 2.0])) == (1.0, 3.0)  # n <= 5: the range

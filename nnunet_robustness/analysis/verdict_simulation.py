"""How the verdict was checked: simulations of its intervals and its decision rule on Dice-like data.

The numbers in docs/evaluation.md ("How the verdict was checked") come from ``benchmarks/verdict_simulation.py``,
which calls the functions here with more repetitions; ``tests/analysis/test_verdict_calibration.py``
runs them in CI. Generators (each a function of n and a numpy Generator):

- ``skewed_scores``: Dice of a good model, Beta(18, 1.5) (mean 0.923, long left tail);
- ``scores_with_failures``: 15 % exact failures (Dice 0) and Beta(6, 2) otherwise;
- ``paired_in_distribution``: differences of two models' paired Dice, logit-normal cases, small
  differences (SD 0.02), the situation of in-distribution comparisons;
- ``paired_with_failures``: paired Dice under a shift, logit-normal with SD 1.2 and correlation 0.55
  between models, 7 % failures of each model independently (SD of differences ~0.32).

Each generator's true mean comes from 4 million draws with a fixed seed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np

from nnunet_robustness.analysis import intervals
from nnunet_robustness.analysis.robustness import detected, paired_difference, runs_difference

Generator = Callable[[int, np.random.Generator], np.ndarray]


def _expit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def skewed_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.beta(18, 1.5, n)


def scores_with_failures(n: int, rng: np.random.Generator) -> np.ndarray:
    values = rng.beta(6, 2, n)
    values[rng.random(n) < 0.15] = 0.0
    return values


def paired_in_distribution(n: int, rng: np.random.Generator) -> np.ndarray:
    case = rng.normal(2.0, 0.6, n)
    return _expit(case + rng.normal(0, 0.12, n)) - _expit(case + 0.05 + rng.normal(0, 0.12, n))


def _paired_shift(n: int, rng: np.random.Generator, shift_b: float) -> tuple[np.ndarray, np.ndarray]:
    covariance = 1.44 * np.array([[1.0, 0.55], [0.55, 1.0]])
    z = rng.multivariate_normal([0.8, 0.8 + shift_b], covariance, n)
    a, b = _expit(z[:, 0]), _expit(z[:, 1])
    a[rng.random(n) < 0.07] = 0.0
    b[rng.random(n) < 0.07] = 0.0
    return a, b


def paired_with_failures(n: int, rng: np.random.Generator) -> np.ndarray:
    a, b = _paired_shift(n, rng, 0.2)
    return a - b


GENERATORS: dict[str, Generator] = {"skewed_scores": skewed_scores, "scores_with_failures": scores_with_failures,
                                    "paired_in_distribution": paired_in_distribution,
                                    "paired_with_failures": paired_with_failures}


@lru_cache(maxsize=None)
def true_mean(name: str) -> float:
    return float(GENERATORS[name](4_000_000, np.random.default_rng(0)).mean())


def coverage(name: str, n: int, repetitions: int, n_bootstrap: int = 999, seed: int = 0,
             method: str = "mean_interval") -> float:
    """Share of samples whose 95 % interval of the mean (``method``: ``mean_interval``, ``t_interval`` or
    ``bca``) contains the generator's true mean."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng([seed, n])
    truth, covered = true_mean(name), 0
    for _ in range(repetitions):
        sample = GENERATORS[name](n, rng)
        if method == "mean_interval":
            low, high = intervals.mean_interval(sample, rng, n_bootstrap)
        elif method == "t_interval":
            low, high = intervals.t_interval(sample)
        elif np.all(sample == sample[0]):
            low = high = float(sample[0])
        else:
            ci = bootstrap((sample,), np.mean, n_resamples=n_bootstrap, method="BCa", random_state=rng).confidence_interval
            low, high = ci.low, ci.high
        covered += low <= truth <= high
    return covered / repetitions


def _drops_of_identical_models(n: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """Paired drop differences of two models that are the same model: exchangeable, so symmetric about 0."""
    if kind == "in_distribution":
        case = rng.normal(2.0, 0.6, n)
        return _expit(case + rng.normal(0, 0.12, n)) - _expit(case + rng.normal(0, 0.12, n))
    a, b = _paired_shift(n, rng, 0.0)
    return a - b


def false_verdict_rate(kind: str, n: int, repetitions: int, n_bootstrap: int = 499, seed: int = 0) -> float:
    """Share of comparisons of identical models that the verdict's rule (``robustness.detected``, one test:
    the FDR-adjusted p is the p) calls different."""
    rng = np.random.default_rng([seed, n, len(kind)])
    found = 0
    for repetition in range(repetitions):
        row = paired_difference(_drops_of_identical_models(n, rng, kind), repetition, n_bootstrap)
        found += detected({**row, "p_fdr": row["p_value"]})
    return found / repetitions


def direction_mixture(n: int, rng: np.random.Generator) -> np.ndarray:
    """Drop differences A - B: A degrades 0.02 less on 88 % of cases and fails (drop +0.5 more) on 12 %."""
    d = -0.02 + rng.normal(0, 0.005, n)
    d[rng.random(n) < 0.12] = 0.5 + rng.normal(0, 0.05)
    return d


def verdicts_against_the_median(n: int, repetitions: int, n_bootstrap: int = 499, seed: int = 0) -> tuple[int, int]:
    """(verdicts that contradict the sign of the median difference, verdicts given) on ``direction_mixture``."""
    rng = np.random.default_rng([seed, n])
    contradictions = given = 0
    for repetition in range(repetitions):
        d = direction_mixture(n, rng)
        row = paired_difference(d, repetition, n_bootstrap)
        if detected({**row, "p_fdr": row["p_value"]}):
            given += 1
            contradictions += np.sign(row["mean_difference"]) == -np.sign(np.median(d))
    return int(contradictions), given


def power(effect: float, spread: float, n: int, repetitions: int, n_bootstrap: int = 499, seed: int = 0
          ) -> tuple[float, float]:
    """(share of comparisons the rule detects, median of the detectable difference it states) when the drop
    differences are normal(effect, spread)."""
    rng = np.random.default_rng([seed, n, int(1000 * effect)])
    found, stated = 0, []
    for repetition in range(repetitions):
        row = paired_difference(rng.normal(effect, spread, n), repetition, n_bootstrap)
        found += detected({**row, "p_fdr": row["p_value"]})
        stated.append(row["detectable"])
    return found / repetitions, float(np.median(stated))


def two_level_coverage(runs: int, n: int, repetitions: int, run_sd: float = 0.03, case_sd: float = 0.05,
                       effect: float = 0.02, n_bootstrap: int = 499, seed: int = 0) -> tuple[float, float]:
    """(coverage of the two-level 95 % interval, false-verdict rate at effect 0) for models with ``runs``
    training runs each: every run adds its own offset (SD ``run_sd``) to all its cases, cases vary by
    ``case_sd`` shared by both models plus per-run noise of half that."""
    rng = np.random.default_rng([seed, runs, n])
    covered = false = 0
    for repetition in range(repetitions):
        case = rng.normal(0.2, case_sd, n)

        def model(shift: float) -> np.ndarray:
            return (case + shift + rng.normal(0, run_sd, (runs, 1)) + rng.normal(0, case_sd / 2, (runs, n)))

        row = runs_difference(model(effect), model(0.0), repetition, n_bootstrap)
        covered += row["ci_low"] <= effect <= row["ci_high"]
        null = runs_difference(model(0.0), model(0.0), repetition, n_bootstrap)
        false += detected({**null, "p_fdr": null["p_value"]})
    return covered / repetitions, false / repetitions


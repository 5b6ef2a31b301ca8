"""Confidence intervals and power for per-case scores, chosen by simulation (benchmarks/bench_verdict.py).

Segmentation scores at the sizes users have (8-50 test cases) are skewed, bounded and often contain
exact failures (Dice 0). On four Dice-like generators (``analysis.verdict_simulation``; table in
docs/evaluation.md), the 95 % BCa bootstrap interval covered the mean 0.82-0.87 of the time at n = 8,
the t-interval 0.87-0.92 on skewed scores, the studentized bootstrap (bootstrap-t; Efron & Tibshirani
1993, ch. 12.5) 0.92-0.93 on paired differences with failures. Their union covered 0.95-0.97 on three of
them at every n from 8 to 50; on the fourth (15 % failures) 0.91 at n = 8 and 0.92 at n = 12, where a
third of the samples hold no failure at all and no interval built from the sample can cover.

- ``mean_interval``: the union of the t-interval and the bootstrap-t interval of the mean;
- ``median_interval``: the distribution-free order-statistic interval of the median (binomial, exact
  coverage >= the level for continuous data; no resampling);
- ``two_level``: several training runs per model. The statistic (difference of run-and-case means)
  is resampled in two levels, runs within each model and then cases (Davison & Hinkley 1997, ch. 3.8),
  with run deviations inflated by sqrt(r / (r - 1)) so that resampling r runs does not shrink their
  variance; the interval is mean +/- t * bootstrap SE with Satterthwaite's degrees of freedom for the
  run and case components (3 runs leave few degrees of freedom: a normal quantile under-covers);
- ``detectable_difference``: the smallest mean difference a two-sided paired t-test at 5 % finds with
  80 % power, from the noncentral t distribution (Cohen 1988) at this n and spread;
  ``detectable_with_interval`` raises it to what the reported (wider) interval needs;
- ``equivalent``: Schuirmann's two one-sided tests as interval inclusion: the 90 % interval inside
  +/- delta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
POWER = 0.80
ALPHA = 0.05


def _degenerate(values: np.ndarray) -> tuple[float, float] | None:
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) < 2 or np.all(values == values[0]):
        value = float(values.mean())
        return value, value
    return None


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student's t interval of the mean."""
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    if (degenerate := _degenerate(values)) is not None:
        return degenerate
    n = len(values)
    half = t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


def bootstrap_t_interval(values: np.ndarray, rng: np.random.Generator, n_bootstrap: int,
                         confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Studentized bootstrap interval of the mean: quantiles of t* = (mean* - mean) / se* over case
    resamples, turned around the sample's own standard error. A resample without spread gives an infinite
    t*; where such resamples reach a tail quantile, that end is NaN (``mean_interval`` then uses t's end)."""
    values = np.asarray(values, dtype=float)
    if (degenerate := _degenerate(values)) is not None:
        return degenerate
    n = len(values)
    samples = values[rng.integers(0, n, size=(n_bootstrap, n))]
    means, spreads = samples.mean(axis=1), samples.std(axis=1, ddof=1)
    mean, se = float(values.mean()), float(values.std(ddof=1)) / math.sqrt(n)
    # a resample of one repeated value has no spread, but its floating-point std can be ~1e-17 instead of 0,
    # which would turn an infinite t* into a huge finite one (intervals of +/-1e15 at n = 3)
    spreads[spreads <= 1e-9 * max(se, np.finfo(float).tiny)] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        studentized = (means - mean) / (spreads / math.sqrt(n))
    studentized = studentized[~np.isnan(studentized)]  # 0/0: a resample equal to the sample's mean everywhere
    if not len(studentized):
        return math.nan, math.nan
    with np.errstate(invalid="ignore"):  # inf - inf between two infinite t* at a tail: NaN, handled below
        low_q, high_q = np.quantile(studentized, [0.5 - confidence / 2, 0.5 + confidence / 2])
    low, high = mean - high_q * se, mean - low_q * se
    return (float(low) if math.isfinite(low) else math.nan), (float(high) if math.isfinite(high) else math.nan)


def mean_interval(values: np.ndarray, rng: np.random.Generator, n_bootstrap: int,
                  confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The interval the reports show for a mean: the union of the t and bootstrap-t intervals (module
    docstring: neither alone covers on every Dice-like generator at n = 8-20, their union does)."""
    values = np.asarray(values, dtype=float)
    if (degenerate := _degenerate(values)) is not None:
        return degenerate
    t_low, t_high = t_interval(values, confidence)
    b_low, b_high = bootstrap_t_interval(values, rng, n_bootstrap, confidence)
    return (t_low if math.isnan(b_low) else min(t_low, b_low)), (t_high if math.isnan(b_high) else max(t_high, b_high))


def median_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Order-statistic interval of the median: [x_(j), x_(n+1-j)] with the largest j whose binomial
    coverage P(j <= B <= n - j), B ~ Bin(n, 1/2), is >= ``confidence``; with n <= 5 no j reaches 95 % and
    the range of the sample is returned (its coverage 1 - 2^(1-n) stated in docs/evaluation.md)."""
    from scipy.stats import binom

    values = np.sort(np.asarray(values, dtype=float))
    if (degenerate := _degenerate(values)) is not None:
        return degenerate
    n = len(values)
    j = 1
    while j + 1 <= (n + 1) // 2 and 1 - 2 * binom.cdf(j, n, 0.5) >= confidence:  # coverage of [x_(j+1), x_(n-j)]
        j += 1
    return float(values[j - 1]), float(values[n - j])


def detectable_difference(spread: float, n: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """Smallest true mean difference a two-sided paired t-test at ``alpha`` detects with ``power``, for
    paired differences of standard deviation ``spread`` over ``n`` cases (noncentral t; NaN for n < 2)."""
    from scipy.optimize import brentq
    from scipy.stats import nct, t

    if n < 2 or not math.isfinite(spread):
        return math.nan
    if spread == 0:
        return 0.0
    df, critical = n - 1, t.ppf(1 - alpha / 2, n - 1)

    def shortfall(effect: float) -> float:
        noncentrality = effect * math.sqrt(n)
        upper = float(nct.sf(critical, df, noncentrality))
        # scipy's noncentral t gives NaN far in the tail, where the power is 1 to double precision
        return (1.0 if math.isnan(upper) else upper) + float(np.nan_to_num(nct.cdf(-critical, df, noncentrality))) - power

    guess = (critical + t.ppf(power, df)) / math.sqrt(n)  # the normal-theory answer; the exact one lies near it
    return float(brentq(shortfall, guess / 4, guess * 4)) * spread


def detectable_with_interval(spread: float, n: int, low: float, high: float, mean: float,
                             power: float = POWER) -> float:
    """The detectable difference of the verdict's own rule, which needs the reported interval to exclude 0:
    the larger of the t-test's (``detectable_difference``) and the interval's wider half plus the shift that
    moves a t-distributed mean past it with ``power`` (the union interval is wider than t's where the data
    are skewed, so the t-test's number alone would promise more than the rule can find)."""
    from scipy.stats import t

    plain = detectable_difference(spread, n, power)
    if not (math.isfinite(plain) and math.isfinite(low) and math.isfinite(high)):
        return plain
    half = max(mean - low, high - mean)
    return max(plain, half + float(t.ppf(power, n - 1)) * spread / math.sqrt(n))


def equivalent(low90: float, high90: float, margin: float | None) -> bool | None:
    """TOST at 5 % as interval inclusion: the 90 % interval lies inside (-margin, +margin); None without a margin."""
    if margin is None:
        return None
    return bool(-margin < low90 and high90 < margin)


@dataclass(frozen=True)
class TwoLevel:
    """A difference between two models with several training runs each (module docstring)."""

    estimate: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    ci90_low: float
    ci90_high: float
    p_value: float
    detectable: float


def two_level(a: np.ndarray, b: np.ndarray | None, rng: np.random.Generator, n_bootstrap: int) -> TwoLevel:
    """``mean(a) - mean(b)`` for run x case arrays (same cases, in the same order, for pairing; ``b`` None:
    the mean of ``a`` alone) with runs and then cases resampled (module docstring)."""
    from scipy.stats import t

    arms = [np.asarray(a, dtype=float)] + ([] if b is None else [np.asarray(b, dtype=float)])
    signs = [1.0, -1.0][:len(arms)]
    n = arms[0].shape[1]
    inflated = []
    for arm in arms:
        runs = arm.shape[0]
        centre = arm.mean(axis=0, keepdims=True)
        inflated.append(centre + (arm - centre) * (math.sqrt(runs / (runs - 1)) if runs > 1 else 1.0))
    cases = rng.integers(0, n, size=(n_bootstrap, n))
    replicate = np.zeros(n_bootstrap)
    for sign, arm in zip(signs, inflated):
        runs = rng.integers(0, arm.shape[0], size=(n_bootstrap, arm.shape[0]))
        per_case = arm[runs].mean(axis=1)  # bootstrap x case: the resampled runs' mean per case
        replicate += sign * np.take_along_axis(per_case, cases, axis=1).mean(axis=1)
    estimate = float(sum(sign * arm.mean() for sign, arm in zip(signs, arms)))
    se = float(replicate.std(ddof=1))
    # Satterthwaite: each model's run component (df runs - 1) and the case component (df n - 1)
    components = [(float(arm.mean(axis=1).var(ddof=1)) / arm.shape[0], arm.shape[0] - 1)
                  for arm in arms if arm.shape[0] > 1]
    paired = sum(sign * arm.mean(axis=0) for sign, arm in zip(signs, arms))
    components.append((float(paired.var(ddof=1)) / n if n > 1 else 0.0, n - 1))
    total = sum(v for v, _ in components)
    denominator = sum(v * v / d for v, d in components if d > 0)
    df = total * total / denominator if denominator > 0 else math.inf
    if se == 0 or not math.isfinite(se):
        return TwoLevel(estimate, se, df, estimate, estimate, estimate, estimate, 1.0 if estimate == 0 else 0.0, 0.0)
    q95, q90 = t.ppf(0.975, df), t.ppf(0.95, df)
    p_value = float(2 * t.sf(abs(estimate) / se, df))
    detectable = float((t.ppf(1 - ALPHA / 2, df) + t.ppf(POWER, df)) * se)
    return TwoLevel(estimate, se, df, estimate - q95 * se, estimate + q95 * se, estimate - q90 * se,
                    estimate + q90 * se, p_value, detectable)

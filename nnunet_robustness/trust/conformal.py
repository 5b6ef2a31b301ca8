"""The statistics of trust ratings: split-conformal lower bounds on per-case Dice and conformal risk
control of the false-negative rate. Definitions and guarantees: ``docs/trust.md``.

* One-sided conformalised quantile regression (CQR; Romano, Patterson & Candès, "Conformalized
  Quantile Regression", NeurIPS 2019), in the split-conformal form of Angelopoulos & Bates, "A Gentle
  Introduction to Conformal Prediction and Distribution-Free Uncertainty Quantification" (2021/2023),
  section 2.2. On a fitting part, a linear quantile regression estimates the alpha-quantile of Dice
  from the uncertainty features, q_lo(x); on the disjoint conformal part, the nonconformity score is
  s_i = q_lo(x_i) - Dice_i and Q is the ceil((n+1)(1-alpha))-th smallest score. For a new exchangeable
  case, P(Dice >= q_lo(x) - Q) >= 1 - alpha (marginal over calibration set and case).
* Conformal risk control (Angelopoulos, Bates, Fisch, Lei & Schuster, "Conformal Risk Control",
  ICLR 2024): for losses bounded by B and monotone in the threshold, the largest threshold whose
  corrected calibration risk (n/(n+1)) mean L_i + B/(n+1) is <= target gives E[L_test] <= target.

The finite-sample quantile and the risk-control threshold are computed here in a few lines; the tests
check them against MAPIE (``ConformalizedQuantileRegressor`` and ``mapie.risk_control.methods``) on
the same numbers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

# Relative slack when rounding (n+1)(1-alpha) up: 50 * 0.9 is 45.000000000000007 in floating point,
# which must count as 45, not 46.
_RANK_SLACK = 1e-9
# L1 penalty of the linear quantile regressions (on standardised features, pinball loss averaged over
# cases): calibration sets are tens of cases, so some shrinkage keeps the fitted quantile stable.
QUANTILE_L1_PENALTY = 0.01


def conformal_rank(n: int, alpha: float) -> int:
    """ceil((n+1)(1-alpha)): the rank (1-based) of the conformal quantile among n scores; > n means
    the n scores cannot certify level 1-alpha (the quantile is +inf)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return math.ceil((n + 1) * (1 - alpha) - _RANK_SLACK)


# What a bound from too few conformal cases lets one say; the report and the CLI use the same words.
NO_STATEMENT = "no statement possible"


def no_statement_reason(n_conformal: int, alpha: float) -> str:
    """Why a label's bound is 0 for every case, and how many conformal cases would lift it."""
    return (f"{NO_STATEMENT}: {n_conformal} conformal case(s) cannot certify 1 - alpha = {1 - alpha:g}, so every "
            f"lower bound is 0 (needs >= {min_conformal_cases(alpha)} conformal cases; calibrate on more cases "
            "or raise --alpha)")


def min_conformal_cases(alpha: float) -> int:
    """The fewest conformal scores that certify level 1-alpha (rank <= n): below it every bound is 0."""
    n = 1
    while conformal_rank(n, alpha) > n:
        n += 1
    return n


def conformal_quantile(scores: Sequence[float] | np.ndarray, alpha: float) -> float:
    """The ceil((n+1)(1-alpha))-th smallest of the ``n`` scores (Angelopoulos & Bates 2023, eq. 1), or
    +inf when that rank exceeds n (fewer than (1-alpha)/alpha scores)."""
    scores = np.sort(np.asarray(scores, dtype=float))
    rank = conformal_rank(scores.size, alpha)
    return math.inf if rank > scores.size else float(scores[rank - 1])


@dataclass(frozen=True)
class LinearQuantileModel:
    """Linear quantile regression on standardised features, stored as plain numbers (JSON, no pickle)."""

    quantile: float
    feature_mean: tuple[float, ...]
    feature_scale: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float

    @classmethod
    def fit(cls, features: np.ndarray, target: np.ndarray, quantile: float, signs: Sequence[int] | None = None,
            l1_penalty: float = QUANTILE_L1_PENALTY) -> "LinearQuantileModel":
        """Minimise (1/n) sum pinball_quantile(y - x w - b) + penalty * |w|_1 (Koenker & Bassett 1978;
        scikit-learn's ``QuantileRegressor`` objective) as a linear programme (HiGHS), with optional
        sign constraints: ``signs[j]`` = +1 (w_j >= 0), -1 (w_j <= 0) or 0 (free).

        Signs keep the bound monotone in what it should be monotone in: a linear fit on a few dozen
        clean cases can give a positive weight to an uncertainty feature, and then a corrupted input,
        which raises every uncertainty feature, would raise its bound.
        """
        from scipy.optimize import linprog

        features = np.asarray(features, dtype=float)
        target = np.asarray(target, dtype=float)
        n, k = features.shape
        signs = np.zeros(k, dtype=int) if signs is None else np.asarray(signs, dtype=int)
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)  # constant features: leave them at 0 after centring
        standardised = (features - mean) / scale
        # variables: w+ (k), w- (k), intercept, u (n) = positive residuals, v (n) = negative residuals
        cost = np.concatenate([np.full(2 * k, l1_penalty), [0.0], np.full(n, quantile / n),
                               np.full(n, (1 - quantile) / n)])
        equality = np.hstack([standardised, -standardised, np.ones((n, 1)), np.eye(n), -np.eye(n)])
        bounds = ([(0, 0) if sign < 0 else (0, None) for sign in signs]
                  + [(0, 0) if sign > 0 else (0, None) for sign in signs] + [(None, None)] + [(0, None)] * (2 * n))
        solution = linprog(cost, A_eq=equality, b_eq=target, bounds=bounds, method="highs")
        if not solution.success:
            raise RuntimeError(f"quantile regression did not solve: {solution.message}")
        coefficients = solution.x[:k] - solution.x[k:2 * k]
        return cls(float(quantile), tuple(map(float, mean)), tuple(map(float, scale)),
                   tuple(map(float, coefficients)), float(solution.x[2 * k]))

    def predict(self, features: np.ndarray) -> np.ndarray:
        standardised = (np.asarray(features, dtype=float) - np.asarray(self.feature_mean)) / np.asarray(self.feature_scale)
        return standardised @ np.asarray(self.coefficients) + self.intercept

    def to_json(self) -> dict[str, Any]:
        return {"quantile": self.quantile, "feature_mean": list(self.feature_mean),
                "feature_scale": list(self.feature_scale), "coefficients": list(self.coefficients),
                "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LinearQuantileModel":
        return cls(float(data["quantile"]), tuple(map(float, data["feature_mean"])),
                   tuple(map(float, data["feature_scale"])), tuple(map(float, data["coefficients"])),
                   float(data["intercept"]))


@dataclass(frozen=True)
class DiceLowerBound:
    """One-sided split-conformal CQR bound on Dice: ``Dice >= bound(x)`` with probability >= 1 - alpha.

    ``correction`` is the conformal quantile Q of the scores q_lo(x_i) - Dice_i on the conformal part
    (+inf when that part is too small for ``alpha``: the bound is then 0, i.e. no statement).
    """

    alpha: float
    lower_model: LinearQuantileModel   # alpha-quantile of Dice given the features
    median_model: LinearQuantileModel  # 0.5-quantile: the "predicted Dice" shown next to the bound
    correction: float
    n_conformal: int

    @classmethod
    def fit(cls, fit_features: np.ndarray, fit_dice: np.ndarray, conformal_features: np.ndarray,
            conformal_dice: np.ndarray, alpha: float, signs: Sequence[int] | None = None) -> "DiceLowerBound":
        lower = LinearQuantileModel.fit(fit_features, fit_dice, alpha, signs)
        median = LinearQuantileModel.fit(fit_features, fit_dice, 0.5, signs)
        scores = lower.predict(conformal_features) - np.asarray(conformal_dice, dtype=float)
        return cls(alpha, lower, median, conformal_quantile(scores, alpha), len(scores))

    @property
    def informative(self) -> bool:
        return math.isfinite(self.correction)

    def lower_bound(self, features: np.ndarray) -> np.ndarray:
        """max(0, min(1, q_lo(x) - Q)): clipping to Dice's range [0, 1] never lowers coverage."""
        if not self.informative:
            return np.zeros(len(features))
        return np.clip(self.lower_model.predict(features) - self.correction, 0.0, 1.0)

    def predicted_dice(self, features: np.ndarray) -> np.ndarray:
        return np.clip(self.median_model.predict(features), 0.0, 1.0)

    def to_json(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "lower_quantile_model": self.lower_model.to_json(),
                "median_model": self.median_model.to_json(),
                "quantile": self.correction if self.informative else None,
                "conformal_rank": conformal_rank(self.n_conformal, self.alpha), "n_conformal": self.n_conformal}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DiceLowerBound":
        correction = math.inf if data["quantile"] is None else float(data["quantile"])
        return cls(float(data["alpha"]), LinearQuantileModel.from_json(data["lower_quantile_model"]),
                   LinearQuantileModel.from_json(data["median_model"]), correction, int(data["n_conformal"]))


@dataclass(frozen=True)
class RiskControl:
    """Result of conformal risk control over a grid of thresholds."""

    threshold: float
    target: float
    n: int
    feasible: bool             # False: even the smallest threshold's bound exceeds the target
    calibration_risk: float    # mean loss of the calibration items at ``threshold``

    def to_json(self) -> dict[str, Any]:
        return {"lambda": self.threshold, "target_fnr": self.target, "n": self.n, "feasible": self.feasible,
                "calibration_mean_fnr": self.calibration_risk}


def conformal_risk_control(losses: np.ndarray, thresholds: np.ndarray, target: float,
                           max_loss: float = 1.0) -> RiskControl:
    """Largest threshold t with (n/(n+1)) mean_i L_i(t') + B/(n+1) <= target for every t' <= t.

    ``losses[i, j]`` is calibration item i's loss at ``thresholds[j]`` (increasing thresholds, losses
    non-decreasing along j and in [0, B]). In Angelopoulos et al. (2024) the sets grow with lambda and
    lambda-hat = inf{lambda : (n/(n+1)) R_n(lambda) + B/(n+1) <= target}; here a higher threshold gives a
    smaller set, so the infimum over lambda is the largest admissible threshold. With monotone losses
    "every t' <= t" changes nothing; it keeps the choice conservative if they are not.
    When no threshold is admissible (n < B/target - 1), the smallest is returned with ``feasible``
    False.
    """
    losses = np.asarray(losses, dtype=float)
    thresholds = np.asarray(thresholds, dtype=float)
    if losses.ndim != 2 or losses.shape[1] != thresholds.size:
        raise ValueError(f"losses must have shape (n, {thresholds.size}), got {losses.shape}")
    if not 0 < target < max_loss:
        raise ValueError(f"target must be in (0, {max_loss}), got {target}")
    n = losses.shape[0]
    mean_loss = losses.mean(axis=0) if n else np.full(thresholds.size, max_loss)
    corrected = n / (n + 1) * mean_loss + max_loss / (n + 1)
    admissible = np.cumprod(corrected <= target).astype(bool)
    if not admissible[0]:
        warnings.warn(f"conformal risk control: {n} calibration item(s) cannot certify risk {target} "
                      f"(needs n >= {math.ceil(max_loss / target - 1)}); using the smallest threshold", stacklevel=2)
        return RiskControl(float(thresholds[0]), target, n, False, float(mean_loss[0]))
    index = int(np.flatnonzero(admissible)[-1])
    return RiskControl(float(thresholds[index]), target, n, True, float(mean_loss[index]))


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for a proportion (Clopper & Pearson 1934), as
    ``scipy.stats.binomtest(...).proportion_ci(method="exact")``; NaN for no trials."""
    from scipy.stats import binomtest

    if trials == 0:
        return math.nan, math.nan
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)

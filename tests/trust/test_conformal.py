"""Conformal statistics on synthetic numbers: agreement with MAPIE, coverage over random splits,
risk control of the false-negative rate."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from nnunet_robustness.trust.conformal import (
    DiceLowerBound,
    LinearQuantileModel,
    clopper_pearson,
    conformal_quantile,
    conformal_rank,
    conformal_risk_control,
    min_conformal_cases,
)
from nnunet_robustness.trust.uncertainty import THRESHOLDS, fnr_curve
from tests.trust.synthetic import dice_regression_data

ALPHA = 0.1


def test_conformal_quantile_equals_mapie_cqr_lower_end():
    """One-sided CQR = the lower end of MAPIE's asymmetric CQR interval at confidence 1 - 2 alpha."""
    from mapie.regression import ConformalizedQuantileRegressor
    from sklearn.linear_model import QuantileRegressor

    rng = np.random.default_rng(1)
    x, y = dice_regression_data(300, rng)
    fit, conf, test = slice(0, 100), slice(100, 137), slice(137, 300)
    models = [QuantileRegressor(quantile=q, alpha=0.0, solver="highs").fit(x[fit], y[fit])
              for q in (ALPHA, 1 - ALPHA, 0.5)]
    mapie = ConformalizedQuantileRegressor(models, confidence_level=1 - 2 * ALPHA, prefit=True)
    mapie.conformalize(x[conf], y[conf])
    _, intervals = mapie.predict_interval(x[test], symmetric_correction=False)
    quantile = conformal_quantile(models[0].predict(x[conf]) - y[conf], ALPHA)
    np.testing.assert_allclose(models[0].predict(x[test]) - quantile, intervals[:, 0, 0], atol=1e-12)


def test_conformal_rank_and_too_few_scores():
    assert conformal_rank(49, 0.1) == 45  # 50 * 0.9 is 45.000000000000007 in floating point
    assert conformal_rank(9, 0.1) == 9
    assert conformal_quantile(np.arange(9.0), 0.1) == 8.0
    assert conformal_quantile(np.arange(8.0), 0.1) == math.inf  # (8+1) * 0.9 = 8.1 -> rank 9 > 8
    assert conformal_quantile([3.0, 1.0, 2.0, 0.0], 0.5) == 2.0  # ceil(5 * 0.5) = 3rd smallest


def test_quantile_model_round_trips_through_json():
    x, y = dice_regression_data(60, np.random.default_rng(2))
    model = LinearQuantileModel.fit(x, y, 0.1)
    again = LinearQuantileModel.from_json(model.to_json())
    np.testing.assert_array_equal(model.predict(x), again.predict(x))
    assert np.mean(y >= model.predict(x)) == pytest.approx(0.9, abs=0.08)  # it estimates the 10 % quantile


def test_quantile_regression_matches_scikit_learn_and_keeps_signs():
    from sklearn.linear_model import QuantileRegressor

    rng = np.random.default_rng(7)
    x, y = dice_regression_data(80, rng)
    x = np.column_stack([x, rng.normal(size=80)])
    ours = LinearQuantileModel.fit(x, y, 0.2)
    standardised = (x - x.mean(axis=0)) / x.std(axis=0)
    reference = QuantileRegressor(quantile=0.2, alpha=0.01, solver="highs").fit(standardised, y)
    np.testing.assert_allclose(ours.predict(x), reference.predict(standardised), atol=1e-6)
    # y falls with feature 0; forcing that weight >= 0 pins it to 0, forcing <= 0 leaves it free
    assert ours.coefficients[0] < -0.05
    assert LinearQuantileModel.fit(x, y, 0.2, signs=[1, 0, 0]).coefficients[0] == pytest.approx(0, abs=1e-9)
    assert LinearQuantileModel.fit(x, y, 0.2, signs=[-1, 0, 0]).coefficients[0] == pytest.approx(ours.coefficients[0])


def test_dice_bound_coverage_over_random_splits():
    """Over 200 random calibration/test splits, mean coverage is ceil((n+1)(1-alpha))/(n+1) (= 0.9 for
    n = 49): exact for continuous scores, so it fails both the plain empirical quantile
    (``np.quantile(scores, 1 - alpha)``: about 0.88) and a conservative bound. The bound must also be informative (not 0)."""
    rng = np.random.default_rng(0)
    n_fit, n_conformal, n_test = 40, 49, 200
    coverages, bounds, zero = [], [], []
    for _ in range(200):
        x, y = dice_regression_data(n_fit + n_conformal + n_test, rng)
        model = DiceLowerBound.fit(x[:n_fit], y[:n_fit], x[n_fit:n_fit + n_conformal], y[n_fit:n_fit + n_conformal],
                                   ALPHA)
        bound = model.lower_bound(x[n_fit + n_conformal:])
        coverages.append(np.mean(y[n_fit + n_conformal:] >= bound))
        bounds.append(bound.mean())
        zero.append(np.mean(bound == 0))
    expected = conformal_rank(n_conformal, ALPHA) / (n_conformal + 1)
    assert expected == pytest.approx(0.9)
    assert np.mean(coverages) >= 1 - ALPHA - 0.01
    assert abs(np.mean(coverages) - expected) <= 0.01, np.mean(coverages)
    assert np.mean(bounds) > 0.45 and np.mean(zero) < 0.05
    # adaptive: certain cases get a higher bound than uncertain ones
    x, _ = dice_regression_data(400, rng)
    bound = model.lower_bound(x)
    assert bound[x[:, 0] < 0.2].mean() > bound[x[:, 0] > 0.8].mean() + 0.2


def test_fewest_conformal_cases_that_certify_a_level():
    for alpha, fewest in ((0.1, 9), (0.2, 4), (0.05, 19)):
        assert conformal_rank(fewest, alpha) <= fewest and conformal_rank(fewest - 1, alpha) > fewest - 1
        assert min_conformal_cases(alpha) == fewest


def test_too_few_conformal_cases_give_no_statement():
    x, y = dice_regression_data(20, np.random.default_rng(3))
    model = DiceLowerBound.fit(x[:12], y[:12], x[12:], y[12:], ALPHA)  # 8 < (1 - 0.1) / 0.1
    assert not model.informative and np.all(model.lower_bound(x) == 0)
    assert DiceLowerBound.from_json(model.to_json()).correction == math.inf


def _monotone_losses(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    return np.clip(np.cumsum(rng.exponential(0.002, size=(n, m)), axis=1) * rng.uniform(0.2, 2, (n, 1)), 0, 1)


def test_risk_control_threshold_equals_mapie():
    from mapie.risk_control.methods import find_best_predict_param, get_r_hat_plus

    rng = np.random.default_rng(4)
    thresholds = np.linspace(0, 1, 201)
    for n, target in ((30, 0.1), (100, 0.05), (57, 0.2)):
        losses = _monotone_losses(rng, n, thresholds.size)
        _, r_hat_plus = get_r_hat_plus(losses, thresholds, "crc", None, None, None)
        expected = find_best_predict_param(thresholds, r_hat_plus, np.array([target]))
        assert conformal_risk_control(losses, thresholds, target).threshold == pytest.approx(float(expected[0]))


def test_risk_control_infeasible_with_too_few_items():
    with pytest.warns(UserWarning, match="cannot certify"):
        result = conformal_risk_control(np.zeros((5, 3)), np.array([0.0, 0.5, 1.0]), 0.1)  # 1/6 > 0.1
    assert not result.feasible and result.threshold == 0.0


def _image(rng: np.random.Generator, size: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel probabilities from a miscalibrated model (over-confident: reference ~ Bernoulli(p), shown
    q = sharpened p), the argmax prediction, and the reference."""
    logit = rng.normal(-1.5, 2.5, size) + rng.normal(0, 1)
    p = 1 / (1 + np.exp(-logit))
    q = 1 / (1 + np.exp(-2.5 * logit))
    reference = rng.random(size) < p
    return q, q >= 0.5, reference


def test_fnr_control_over_random_splits():
    """CRC: mean test FNR <= target (+ Monte Carlo tolerance), and >= target - 2/(n+1) (tight, not
    trivially conservative); the prediction alone misses far more."""
    rng = np.random.default_rng(5)
    n_cal, n_test, target = 40, 40, 0.1
    curves = [fnr_curve(*_image(rng)) for _ in range(n_cal + n_test)]
    fnr = np.stack([c[0] for c in curves])
    size = np.stack([c[1] for c in curves])
    test_fnr, cost, unsafe = [], [], []
    for _ in range(200):
        order = rng.permutation(len(curves))
        calibration, test = order[:n_cal], order[n_cal:]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = conformal_risk_control(fnr[calibration], THRESHOLDS, target)
        j = int(np.searchsorted(THRESHOLDS, result.threshold))
        test_fnr.append(fnr[test, j].mean())
        cost.append((size[test, j] / size[test, -1]).mean())
        unsafe.append(fnr[test, -1].mean())
    assert np.mean(test_fnr) <= target + 0.005, np.mean(test_fnr)
    assert np.mean(test_fnr) >= target - 2 / (n_cal + 1) - 0.005
    assert np.mean(unsafe) > 2 * target and np.mean(cost) > 1


def test_fnr_curve_matches_direct_counts():
    rng = np.random.default_rng(6)
    q = rng.random((7, 9, 5)).astype(np.float32)
    q[0, 0, 0] = 0.5  # exactly on a threshold: q >= t is in the mask
    predicted, reference = q > 0.8, rng.random(q.shape) < q
    valid = rng.random(q.shape) > 0.1
    reference[0, 0, 0] = valid[0, 0, 0] = True
    fnr, size = fnr_curve(q, predicted, reference, valid=valid)
    for t in (0.0, 0.25, 0.5, 0.501, 1.0):
        j = int(np.searchsorted(THRESHOLDS, t))
        mask = (predicted | (q >= t)) & valid
        assert fnr[j] == pytest.approx(np.count_nonzero(reference & valid & ~mask) / np.count_nonzero(reference & valid))
        assert size[j] == np.count_nonzero(mask)


def test_clopper_pearson():
    """Against the definition by beta quantiles (Clopper & Pearson 1934), and the 0 / n edge cases."""
    from scipy.stats import beta

    low, high = clopper_pearson(17, 20)
    assert (low, high) == pytest.approx((beta.ppf(0.025, 17, 4), beta.ppf(0.975, 18, 3)))
    assert (round(low, 4), round(high, 4)) == (0.6211, 0.9679)
    assert clopper_pearson(20, 20)[1] == 1.0 and clopper_pearson(0, 20)[0] == 0.0

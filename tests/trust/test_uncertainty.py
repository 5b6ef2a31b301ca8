"""Uncertainty features, ECE / reliability, temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_robustness.metrics.masks import compare_masks, dice
from nnunet_robustness.trust import uncertainty as unc
from tests.trust.synthetic import softmax


def _calibrated_sample(rng: np.random.Generator, n: int, sharpen: float = 1.0):
    """3-class voxel probabilities with labels drawn from them; ``sharpen`` > 1 shows over-confident
    probabilities (logits multiplied) for the same labels."""
    logits = rng.normal(0, 2, size=(3, n))
    true = softmax(logits)
    labels = (rng.random(n)[None] > np.cumsum(true, axis=0)).sum(axis=0)
    return softmax(sharpen * logits), labels


def test_ece_small_when_calibrated_large_when_over_confident():
    rng = np.random.default_rng(0)
    for sharpen, low, high in ((1.0, 0.0, 0.01), (3.0, 0.05, 1.0)):
        probabilities, labels = _calibrated_sample(rng, 200_000, sharpen)
        for channel in range(3):
            reliability = unc.Reliability()
            reliability.add(probabilities[channel], labels == channel)
            assert low <= reliability.ece <= high, (sharpen, channel, reliability.ece)
    # reliability of an over-confident model lies below the diagonal at high confidence
    confidence, frequency, _ = reliability.curve()
    assert np.all(frequency[confidence > 0.8] < confidence[confidence > 0.8])


def test_reliability_merge_and_json():
    rng = np.random.default_rng(1)
    a, b = unc.Reliability(), unc.Reliability()
    q = rng.random(1000)
    a.add(q[:500], q[:500] > 0.5)
    b.add(q[500:], q[500:] > 0.5)
    both = unc.Reliability()
    both.add(q, q > 0.5)
    assert a.merge(b).ece == pytest.approx(both.ece)
    assert unc.Reliability.from_json(both.to_json()).ece == pytest.approx(both.ece)


def test_temperature_scaling_recovers_temperature_and_lowers_nll():
    rng = np.random.default_rng(2)
    probabilities, labels = _calibrated_sample(rng, 50_000, sharpen=2.0)
    temperature = unc.fit_temperature(probabilities, labels, regions=False)
    assert temperature == pytest.approx(2.0, rel=0.05)
    scaled = unc.apply_temperature(probabilities, temperature, regions=False)
    assert unc.nll(scaled, labels, False) < unc.nll(probabilities, labels, False) - 0.05
    calibrated, labels = _calibrated_sample(rng, 50_000)
    assert unc.fit_temperature(calibrated, labels, regions=False) == pytest.approx(1.0, rel=0.05)


def test_temperature_for_regions_uses_sigmoid():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, size=(2, 40_000))
    targets = rng.random(logits.shape) < 1 / (1 + np.exp(-logits))
    shown = 1 / (1 + np.exp(-3 * logits))
    temperature = unc.fit_temperature(shown, targets, regions=True)
    assert temperature == pytest.approx(3.0, rel=0.05)
    exact = np.abs(3 * logits) < 12  # beyond, float probabilities saturate and the floor applies
    np.testing.assert_allclose(unc.apply_temperature(shown, temperature, True)[exact],
                               (1 / (1 + np.exp(-3 * logits / temperature)))[exact], atol=1e-5)


@pytest.mark.parametrize("regions", [False, True])
def test_temperature_scaling_in_blocks_is_the_whole_array_formula(monkeypatch, regions):
    """apply_temperature works on blocks of voxels to bound its float64 temporaries; every voxel must get
    what the whole-array formula gives, whatever the block size."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, size=(3, 7, 11, 5))
    probabilities = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    p = np.clip(probabilities.astype(np.float64), unc.PROBABILITY_FLOOR, 1 - unc.PROBABILITY_FLOOR)
    if regions:
        expected = (1 / (1 + np.exp(-(np.log(p) - np.log1p(-p)) / 1.7))).astype(np.float32)
    else:
        scaled = np.log(p) / 1.7
        exp = np.exp(scaled - scaled.max(axis=0, keepdims=True))
        expected = (exp / exp.sum(axis=0, keepdims=True)).astype(np.float32)
    for block in (1, 13, 10_000):
        monkeypatch.setattr(unc, "_BLOCK_VOXELS", block)
        got = unc.apply_temperature(probabilities, 1.7, regions)
        assert got.dtype == np.float32 and got.shape == probabilities.shape
        np.testing.assert_array_equal(got, expected)


def test_structure_features_definitions():
    q = np.zeros((1, 10, 10), dtype=np.float32)
    q[0, 2:6, 2:6] = 0.9
    q[0, 6, 2:6] = 0.4
    predicted = q >= 0.5
    features = unc.structure_features(q, predicted, voxel_volume=2.0, band_width=1)
    assert features["expected_dice"] == pytest.approx(2 * 16 * 0.9 / (16 + 16 * 0.9 + 4 * 0.4))
    assert features["entropy_structure"] == pytest.approx(float(unc.binary_entropy(np.float32(0.9))))
    assert features["uncertain_fraction"] == pytest.approx((16 + 4) / 16)  # 0.9 and 0.4 are both in [0.1, 0.9]
    assert features["uncertain_volume"] == 40.0 and features["predicted_volume"] == 32.0
    assert "fold_std" not in features
    empty = unc.structure_features(np.zeros_like(q), np.zeros_like(predicted), 1.0, 1)
    assert empty["expected_dice"] == 1.0 and empty["entropy_boundary"] == 0.0
    members = [q, np.clip(q + 0.05, 0, 1)]
    masks = [predicted, np.roll(predicted, 1, axis=1)]
    folds = unc.structure_features(q, predicted, 1.0, 1, member_q=members, member_masks=masks)
    assert folds["fold_dice_disagreement"] == pytest.approx(1 - dice(masks[0], masks[1]))
    assert folds["fold_std"] == pytest.approx(0.025, abs=1e-6)


def test_boundary_band_and_dice_agree_with_evaluator():
    rng = np.random.default_rng(4)
    reference, prediction = rng.random((12, 14, 10)) > 0.6, rng.random((12, 14, 10)) > 0.5
    assert dice(reference, prediction) == pytest.approx(compare_masks(reference, prediction, (1, 1, 1))["dice"])
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    band = unc.boundary_band(mask, 1)
    assert band[1, 4] and band[2, 4] and not band[4, 4] and not band[0, 4]


def test_voxel_maps():
    p = np.array([[1.0, 1 / 3], [0.0, 1 / 3], [0.0, 1 / 3]])
    np.testing.assert_allclose(unc.voxel_entropy(p, regions=False), [0.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(unc.max_probability(p), [1.0, 1 / 3])
    assert unc.fold_spread([p, p]).max() == 0

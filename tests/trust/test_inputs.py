"""Probability files that would silently mislead calibration are refused with the file named."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.trust.rating_inputs import PROBABILITIES_KEY, read_probabilities


def _npz(path, probabilities):
    np.savez_compressed(path, **{PROBABILITIES_KEY: probabilities})
    return path


def _softmax(shape=(2, 4, 4)):
    p = np.random.default_rng(0).random(shape).astype(np.float32)
    return p / p.sum(0, keepdims=True)


def test_valid_probabilities_are_read(tmp_path):
    probabilities = _softmax()
    np.testing.assert_array_equal(read_probabilities(_npz(tmp_path / "c.npz", probabilities), 2, (4, 4)),
                                  probabilities)


@pytest.mark.parametrize("change, message", [
    (lambda p: np.where(p > 0.5, 7.0, -5.0), "not probabilities"),
    (lambda p: np.where(p > 0.5, np.nan, p), "NaN or Inf"),
])
def test_values_that_are_not_probabilities_are_refused(tmp_path, change, message):
    path = _npz(tmp_path / "case.npz", change(_softmax()).astype(np.float32))
    with pytest.raises(UserInputError, match=message) as error:
        read_probabilities(path, 2, (4, 4))
    assert "case.npz" in str(error.value)


def test_a_truncated_npz_is_refused_naming_it(tmp_path):
    path = _npz(tmp_path / "case.npz", _softmax((2, 64, 64)))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(UserInputError, match="case.npz.*cannot be read"):
        read_probabilities(path, 2, (64, 64))

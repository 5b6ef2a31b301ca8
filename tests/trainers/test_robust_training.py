"""Corruption augmentation and adversarial training: the transform, the options file, the PGD step."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

import nnunet_robustness.corruptions as corruptions
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.trainers.robust_trainers import (
    AdversarialTraining,
    AdversarialTrainingMixin,
    CorruptionAugmentation,
    CorruptionAugmentationTransform,
    RobustTrainingOptions,
)


def _sample(dim: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    shape = (32, 32) if dim == 2 else (12, 16, 16)
    image = torch.from_numpy(rng.normal(0, 1, (1, *shape)).astype(np.float32))  # z-scored, as nnU-Net trains
    segmentation = torch.from_numpy((rng.random((1, *shape)) > 0.7).astype(np.int16))
    return {"image": image, "segmentation": segmentation}


def _transform(families=("gaussian_noise", "bias_field", "motion"), probability=1.0, dim=3):
    return CorruptionAugmentationTransform(CorruptionAugmentation(tuple(families), (1.0, 4.0), probability),
                                           (1.0,) * dim)


@pytest.mark.parametrize("dim", [2, 3])
def test_the_transform_is_deterministic_for_a_seed_and_keeps_labels_and_shapes(dim):
    transform, sample = _transform(dim=dim), _sample(dim)
    outputs = []
    for seed in (7, 7, 8):
        np.random.seed(seed)  # nnU-Net seeds NumPy per augmentation worker; the transform draws from it
        outputs.append(transform(**{k: v.clone() for k, v in sample.items()}))
    for out in outputs:
        assert out["image"].shape == sample["image"].shape and out["image"].dtype == torch.float32
        assert torch.equal(out["segmentation"], sample["segmentation"])
        assert not torch.equal(out["image"], sample["image"])
    assert torch.equal(outputs[0]["image"], outputs[1]["image"])
    assert not torch.equal(outputs[0]["image"], outputs[2]["image"])


def test_the_transform_applies_only_the_chosen_families(monkeypatch):
    chosen = ("gaussian_blur", "ghosting")
    called = Counter()
    original = corruptions.get_corruption

    def recording(name, severity=None, **kwargs):
        called[name] += 1
        assert 1.0 <= severity <= 4.0
        return original(name, severity=severity, **kwargs)

    monkeypatch.setattr(corruptions, "get_corruption", recording)
    transform, sample = _transform(chosen, dim=2), _sample(2)
    np.random.seed(0)
    for _ in range(60):
        transform(**{k: v.clone() for k, v in sample.items()})
    assert set(called) == set(chosen) and sum(called.values()) == 60


@pytest.mark.parametrize("probability", [0.0, 0.25, 1.0])
def test_the_transform_respects_its_probability(probability):
    transform = _transform(probability=probability)
    np.random.seed(1)
    n = 4000
    applied = sum(transform.get_parameters()["family"] is not None for _ in range(n))
    if probability in (0.0, 1.0):
        assert applied == probability * n
    else:  # inside the 99.9 % binomial interval
        low, high = stats.binom.interval(0.999, n, probability)
        assert low <= applied <= high


def test_a_corrupted_sample_follows_an_offset_of_its_intensities():
    """z-scoring removes the raw offset; the transform treats the sample's minimum as the scanner's zero,
    so adding a constant to the input adds it to the output (and a multiplicative bias field still acts on
    intensities measured from the background)."""
    transform, sample = _transform(("bias_field",)), _sample(3)
    np.random.seed(3)
    shifted = transform(image=sample["image"] + 5.0)["image"]
    np.random.seed(3)
    plain = transform(image=sample["image"].clone())["image"]
    torch.testing.assert_close(shifted, plain + 5.0, atol=1e-4, rtol=1e-5)


def test_options_file_defaults_round_trip_and_refusals(tmp_path):
    path = tmp_path / "robust_training.json"
    assert RobustTrainingOptions.read(path) == RobustTrainingOptions()  # no file: the defaults
    path.write_text(json.dumps({"corruption_augmentation": {"families": ["motion"], "severity": [2, 5]},
                                "adversarial": {"steps": 1}}))
    options = RobustTrainingOptions.read(path)
    assert options.corruption_augmentation.families == ("motion",)
    assert options.corruption_augmentation.probability == CorruptionAugmentation().probability
    assert options.adversarial.step_size == options.adversarial.epsilon  # one step: FGSM
    assert RobustTrainingOptions.from_json(options.to_json()) == options
    for bad, message in (({"corruption_augmentation": {"families": ["gausian_noise"]}}, "unknown family"),
                         ({"corruption_augmentation": {"families": ["background_blur"]}}, "reference label"),
                         ({"corruption_augmentation": {"families": ["ct_metal"]}}, "absolute intensities"),
                         ({"corruption_augmentation": {"severity": [3, 1]}}, "low <= high"),
                         ({"corruption_augmentation": {"probability": 2}}, "probability"),
                         ({"adversarial": {"epsilon": 0}}, "epsilon"),
                         ({"adversarial": {"eps": 0.1}}, "keys among"),
                         ({"augmentation": {}}, "expected an object")):
        path.write_text(json.dumps(bad))
        with pytest.raises(UserInputError, match=message) as error:
            RobustTrainingOptions.read(path)
        assert str(path) in str(error.value)


def test_pgd_stays_in_its_ball_and_raises_the_training_loss():
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv2d(8, 2, 3, padding=1))
    trainer = SimpleNamespace(network=network, loss=torch.nn.CrossEntropyLoss(), device=torch.device("cpu"))
    data = torch.randn(4, 1, 16, 16)
    target = (data[:, 0] > 0).long()
    options = AdversarialTraining(epsilon=0.2, steps=5, share=1.0)
    adversarial = AdversarialTrainingMixin.adversarial_examples(trainer, data, target, options)
    assert (adversarial - data).abs().max() <= 0.2 + 1e-6
    with torch.no_grad():
        assert trainer.loss(network(adversarial), target) > trainer.loss(network(data), target) + 0.01
    fgsm = AdversarialTrainingMixin.adversarial_examples(trainer, data, target, AdversarialTraining(0.2, 1, 1.0))
    torch.testing.assert_close((fgsm - data).abs(), torch.full_like(data, 0.2))  # one full step, every voxel

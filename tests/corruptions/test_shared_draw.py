"""One random draw across severities: severities 1..5 of a case share the noise field, bias-field shape,
ghost axis, spike position..., so the change the model sees grows with the severity per case instead
of being redrawn at every level."""

from __future__ import annotations

import numpy as np
import pytest
from nnunetv2.preprocessing.normalization.default_normalization_schemes import ZScoreNormalization
from scipy.ndimage import gaussian_filter

from nnunet_robustness.conditions import Condition, family_condition
from nnunet_robustness.conditions.parsing import preset_condition
from nnunet_robustness.corruptions import CORRUPTIONS, get_corruption
from nnunet_robustness.corruptions.catalogue import GENERAL_GROUPS
from nnunet_robustness.corruptions.specs import item_seed
from nnunet_robustness.runner.input_space import input_change
from tests.corruptions.phantoms import SEED_FREE

STOCHASTIC = [name for name, cls in CORRUPTIONS.items()
              if cls.group in GENERAL_GROUPS and name not in SEED_FREE and not cls.cancelled_by]


def test_the_item_seed_depends_on_family_and_case_not_severity():
    same = {item_seed(0, "case_1", family_condition("bias_field", s)) for s in (1, 2.5, 5)}
    assert len(same) == 1
    assert item_seed(0, "case_1", family_condition("bias_field", 1)) != item_seed(0, "case_2",
                                                                                  family_condition("bias_field", 1))
    assert item_seed(0, "case_1", family_condition("bias_field", 1)) != item_seed(0, "case_1",
                                                                                  family_condition("spike", 1))
    harder, hardest = preset_condition("seed-study:harder"), preset_condition("seed-study:hardest")
    assert item_seed(0, "c", harder) != item_seed(0, "c", hardest)  # presets keep a seed each
    assert item_seed(0, "c", Condition("clean", severity=0)) == item_seed(0, "c", Condition("clean", severity=0))


def _zscore(image: np.ndarray) -> np.ndarray:
    """nnU-Net's default normalisation, as the model would see the image."""
    normaliser = ZScoreNormalization(use_mask_for_norm=False, intensityproperties={})
    return np.stack([normaliser.run(channel.copy()) for channel in image])


def _phantoms(dim: int, n: int, seed: int):
    """Smooth structure, a gradient and mild noise: images whose change can grow over five levels."""
    rng = np.random.default_rng(seed)
    shape = (64, 64) if dim == 2 else (32, 32, 24)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    for case in range(n):
        label = (np.sqrt(((grid - rng.uniform(-0.2, 0.2, (dim,) + (1,) * dim)) ** 2).sum(0))
                 < rng.uniform(0.3, 0.6)).astype(np.float32)
        image = 100 + 60 * gaussian_filter(label, 1.5) + 20 * grid[0] + rng.normal(0, 3, shape)
        yield f"case_{case}", image.astype(np.float32)[None], label[None]


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("family", STOCHASTIC)
def test_the_change_the_model_sees_grows_with_severity_per_case(family, dim):
    curves = []
    for case, image, label in _phantoms(dim, 10, seed=dim):
        clean = _zscore(image)
        changes = []
        for severity in range(1, 6):
            condition = family_condition(family, severity)
            corrupted = get_corruption(family, severity=severity)(image, (1.0,) * dim, label=label,
                                                                 seed=item_seed(0, case, condition))
            changes.append(input_change(clean, _zscore(corrupted)).relative_l2)
        curves.append(changes)
    curves = np.array(curves)
    assert np.all(np.diff(curves, axis=1) >= -1e-6 * curves[:, 1:]), curves.round(3)


@pytest.mark.parametrize("dim", [2, 3])
def test_motion_grows_with_severity_on_textured_images(dim):
    """Grading the movement's size made the change oscillate on textures (a shift by a texture period
    changes the image little); grading the share of k-space acquired after the movement cannot: the moved
    lines only grow. Checked on strongly textured images, in the model's input space."""
    rng = np.random.default_rng(11)
    shape = (48, 48) if dim == 2 else (24, 24, 20)
    for case in range(10):
        texture = gaussian_filter(rng.normal(0, 1, shape), rng.uniform(0.6, 2.0))
        image = (100 + 40 * texture / texture.std()).astype(np.float32)[None]
        clean = _zscore(image)
        condition = family_condition("motion", 1)
        changes = [input_change(clean, _zscore(get_corruption("motion", severity=s)(
            image, (1.0,) * dim, seed=item_seed(case, f"case_{case}", condition)))).relative_l2 for s in range(1, 6)]
        assert np.all(np.diff(changes) >= -1e-6 * np.array(changes[1:])), np.round(changes, 4)
        assert changes[0] > 0

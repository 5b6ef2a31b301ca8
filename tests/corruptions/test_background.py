"""Zero backgrounds (issue #29): corruptions keep a skull-stripped image's exact-zero background, and "what the
model saw" is measured through nnU-Net's own crop and masked normalisation, in agreement with its preprocessor."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_robustness.cli import main
from nnunet_robustness.corruptions import get_corruption
from nnunet_robustness.corruptions.background import body_mask, keep_background
from nnunet_robustness.runner.input_space import ModelInputSpace
from tests.corruptions.phantoms import ABSOLUTE_SCALE, FAMILIES
from tests.helpers.plans import DATASET_JSON, default_plans

N = 32
SPACING = (1.0, 1.0, 1.0)


def _plans(use_mask_for_norm: bool) -> tuple[PlansManager, object]:
    plans = default_plans()
    configuration = plans["configurations"]["3d_fullres"]
    configuration["normalization_schemes"] = ["ZScoreNormalization"]
    configuration["use_mask_for_norm"] = [use_mask_for_norm]
    manager = PlansManager(plans)
    return manager, manager.get_configuration("3d_fullres")


def _space(use_mask_for_norm: bool) -> ModelInputSpace:
    return ModelInputSpace(*_plans(use_mask_for_norm))


def _phantoms() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(full-field image, the same image skull-stripped to an exact-zero background, body, organ label)."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, N)] * 3, indexing="ij"))
    radius = np.sqrt((grid ** 2).sum(0))
    body, organ = radius < 0.8, radius < 0.35
    inside = 100 + 60 * organ + 20 * grid[0] + rng.normal(0, 6, body.shape)
    full = np.where(body, inside, 60 + rng.normal(0, 6, body.shape)).astype(np.float32)[None]
    stripped = np.where(body, full, 0).astype(np.float32)
    return full, stripped, body, organ[None].astype(np.uint8)


def _rms_in_body(a: np.ndarray, b: np.ndarray, body: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b)[0][body] ** 2)))


def test_keep_background_restores_exact_zeros_only_where_nnunet_masks():
    full, stripped, body, label = _phantoms()
    assert body_mask(full) is None  # full field: nothing to keep
    mask = body_mask(stripped)
    assert mask is not None and np.array_equal(mask, body)
    noisy = get_corruption("gaussian_noise", severity=3)(stripped, SPACING, seed=0)
    kept = keep_background(noisy, mask)
    assert np.all(kept[:, ~body] == 0) and np.array_equal(kept[:, body], noisy[:, body]) and kept.dtype == noisy.dtype


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in ABSOLUTE_SCALE])
def test_a_family_changes_what_the_model_sees_alike_with_and_without_a_zero_background(family):
    """With the background kept, nnU-Net's preprocessing turns a family's change of the raw image inside the
    body into a change of the normalised input alike with and without a zero background: the two ratios
    (normalised / raw change) stay within a factor 3 (written into the zero background the normalised change
    was up to 7x larger: the crop box and the normalisation mask move). The raw change itself may differ
    where a family reads the image around it (noise scaled to the intensity range, us_shadowing's local
    reflector search)."""
    full, stripped, body, label = _phantoms()
    corruption = get_corruption(family, severity=3)
    full_space, stripped_space = _space(False), _space(True)
    corrupted_full = corruption(full, SPACING, seed=1, label=label)
    corrupted_stripped = keep_background(corruption(stripped, SPACING, seed=1, label=label), body_mask(stripped))
    change_full = _rms_in_body(full_space.normalise(corrupted_full), full_space.normalise(full), body)
    change_stripped = _rms_in_body(stripped_space.normalise(corrupted_stripped), stripped_space.normalise(stripped),
                                   body)
    if change_full < 1e-6:  # cancelled by z-scoring on both: brightness, contrast
        assert change_stripped < 1e-6
        return
    raw_ratio = _rms_in_body(corrupted_stripped, stripped, body) / _rms_in_body(corrupted_full, full, body)
    assert 1 / 3 < (change_stripped / change_full) / raw_ratio < 3, (change_full, change_stripped, raw_ratio)


def _nnunet_preprocessed(image: np.ndarray, use_mask_for_norm: bool) -> np.ndarray:
    manager, configuration = _plans(use_mask_for_norm)
    data, _, _ = DefaultPreprocessor(verbose=False).run_case_npy(
        image.copy(), None, deepcopy({"spacing": list(SPACING)}), manager, configuration, DATASET_JSON)
    return data


@pytest.mark.parametrize("family", ["brightness", "contrast"])
def test_cancelled_is_decided_on_what_nnunet_feeds_the_network(family):
    """Brightness/contrast written into a zero background are *not* cancelled (nnU-Net's crop changes), on a
    full-field image they are, and with the background kept they are again: each verdict agrees with nnU-Net's
    own preprocessor output for the same two images."""
    full, stripped, body, _ = _phantoms()
    corruption = get_corruption(family, severity=3)
    cases = [(full, corruption(full, SPACING, seed=2), False, True),
             (stripped, corruption(stripped, SPACING, seed=2), True, False),
             (stripped, keep_background(corruption(stripped, SPACING, seed=2), body_mask(stripped)), True, True)]
    for clean, corrupted, masked, expected in cases:
        space = _space(masked)
        assert space.change(space.normalise(clean), corrupted).cancelled is expected
        reference, changed = _nnunet_preprocessed(clean, masked), _nnunet_preprocessed(corrupted, masked)
        identical = reference.shape == changed.shape and np.allclose(reference, changed, atol=1e-4)
        assert identical is expected


def test_corrupt_keeps_the_background_by_default_and_records_it(tmp_path: Path):
    _, stripped, body, _ = _phantoms()
    images = tmp_path / "imagesTs"
    images.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(stripped[0]), str(images / "brain_0000.nii.gz"))
    for background, out in (("keep", tmp_path / "kept"), ("corrupt", tmp_path / "everywhere")):
        arguments = ["corrupt", "-i", str(images), "-o", str(out), "--family", "gaussian_noise", "--severity", "2"]
        assert main(arguments + ([] if background == "keep" else ["--background", "corrupt"])) == 0
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "gaussian_noise" / "2" / "brain_0000.nii.gz")))
        outside_zero = bool(np.all(written[~body] == 0))
        assert outside_zero is (background == "keep")
        assert f'"background": "{background}"' in (out / "gaussian_noise" / "2" / "corruption.json").read_text()

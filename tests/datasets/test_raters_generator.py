"""Synthetic raters: displacement size controls agreement, labels stay valid, files are deterministic."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_robustness.datasets.blobs import random_blob_mask
from nnunet_robustness.datasets.synthetic_raters import (
    RATERS_GENERATION_FILE,
    RatersConfig,
    rater_rng,
    smooth_displacement_field,
    synthetic_rater_label,
    warp_label,
)
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.metrics.masks import compare_masks

pytestmark = pytest.mark.filterwarnings("ignore:fewer than 5 training cases")


def blob(shape=(64, 64), seed=3) -> np.ndarray:
    return random_blob_mask(shape, 1, (0.45, 0.55), np.random.default_rng(seed)).astype(np.uint8)


def mean_pairwise_dice(labels: list[np.ndarray]) -> float:
    return float(np.mean([compare_masks(a == 1, b == 1, (1.0, 1.0))["dice"]
                          for a, b in itertools.combinations(labels, 2)]))


def raters_of(label: np.ndarray, displacement: float, n: int = 3, smoothness: float = 6.0) -> list[np.ndarray]:
    return [synthetic_rater_label(label, displacement, smoothness, (1.0,) * label.ndim, rater_rng(0, 11, r))
            for r in range(1, n + 1)]


def test_displacement_size_controls_inter_rater_dice_monotonically():
    label = blob()
    dice = [mean_pairwise_dice(raters_of(label, d)) for d in (0.0, 1.0, 2.0, 4.0, 8.0)]
    assert dice[0] == 1.0  # no displacement: every rater is the reference
    assert all(a > b for a, b in zip(dice, dice[1:])), dice
    assert dice[-1] < 0.9  # large displacements make real disagreement


@pytest.mark.parametrize("shape", [(64, 64), (24, 28, 32)])
def test_field_magnitude_is_exactly_the_requested_maximum(shape):
    spacing = (1.0, 0.5, 2.0)[: len(shape)]
    field = smooth_displacement_field(shape, 3.0, 4.0, spacing, np.random.default_rng(0))
    assert field.shape == (len(shape), *shape)
    magnitude_mm = np.sqrt(sum((f * s) ** 2 for f, s in zip(field, spacing)))
    assert np.isclose(magnitude_mm.max(), 3.0)
    # smooth: neighbouring displacements differ far less than the maximum
    assert np.abs(np.diff(field[0], axis=0)).max() < 0.5 * np.abs(field[0]).max()


def test_rater_boundaries_stay_within_the_displacement_of_the_reference():
    label = blob()
    for displacement in (2.0, 5.0):
        for rater in raters_of(label, displacement):
            # +1: half a voxel of resampling on each of the two surfaces
            assert compare_masks(label == 1, rater == 1, (1.0, 1.0))["hd95_mm"] <= displacement + 1.0


def test_multi_label_values_stay_in_the_label_set_and_shapes_are_kept():
    label = blob().astype(np.uint8)
    label[5:15, 5:15] = 3
    for rater in raters_of(label, 4.0):
        assert rater.shape == label.shape and rater.dtype == label.dtype
        assert set(np.unique(rater)) == {0, 1, 3}
    assert np.array_equal(warp_label(label, np.zeros((2, *label.shape))), label)


def test_same_seed_same_rater_other_rater_differs():
    label = blob()
    a = synthetic_rater_label(label, 4.0, 6.0, (1.0, 1.0), rater_rng(0, 5, 1))
    b = synthetic_rater_label(label, 4.0, 6.0, (1.0, 1.0), rater_rng(0, 5, 1))
    c = synthetic_rater_label(label, 4.0, 6.0, (1.0, 1.0), rater_rng(0, 5, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_config_validation_names_the_option():
    assert RatersConfig.from_cli(3, [2.0], None, 0).max_displacement_mm == (2.0, 2.0, 2.0)
    assert RatersConfig.from_cli(2, [1.0, 3.0], 4.0, 0).max_displacement_mm == (1.0, 3.0)
    with pytest.raises(UserInputError, match="--raters 1"):
        RatersConfig.from_cli(1, [2.0], None, 0)
    with pytest.raises(UserInputError, match="one per rater"):
        RatersConfig.from_cli(3, [1.0, 2.0], None, 0)
    with pytest.raises(UserInputError, match="--rater-displacement -1"):
        RatersConfig.from_cli(2, [-1.0], None, 0)
    with pytest.raises(UserInputError, match="--rater-smoothness 0"):
        RatersConfig.from_cli(2, [1.0], 0.0, 0)


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_make_dataset_writes_rater_folders(robust_cli, tmp_path, capsys):
    args = ("make-dataset", "textures", "-d", 9, "--name", "Raters", "-o", tmp_path, "--shape", 48, 48,
            "--alpha", 0.2, 0.6, "--num-train", 1, "--num-test", 2, "--raters", 3, "--rater-displacement", 1, 2, 4)
    assert robust_cli(*args) == 0
    folder = tmp_path / "Dataset009_Raters"
    assert "3 raters' labels" in capsys.readouterr().out
    references = sorted(p.name for p in (folder / "labelsTs").iterdir())
    assert len(references) == 4
    dice_by_rater = []
    for rater in (1, 2, 3):
        rater_folder = folder / f"labelsTs_rater{rater}"
        assert sorted(p.name for p in rater_folder.iterdir()) == references
        dice = []
        for name in references:
            reference, annotation = read(folder / "labelsTs" / name), read(rater_folder / name)
            assert annotation.shape == reference.shape and set(np.unique(annotation)) <= {0, 1}
            assert annotation.any()
            dice.append(compare_masks(reference == 1, annotation == 1, (1.0, 1.0))["dice"])
        dice_by_rater.append(np.mean(dice))
    assert dice_by_rater[0] > dice_by_rater[1] > dice_by_rater[2]  # per-rater displacement 1 < 2 < 4 mm
    # paired design: test case i has the same rater labels at every alpha
    for i in range(2):
        assert np.array_equal(read(folder / "labelsTs_rater2" / f"ts_a020_{i:04d}.nii.gz"),
                              read(folder / "labelsTs_rater2" / f"ts_a060_{i:04d}.nii.gz"))
    record = json.loads((folder / RATERS_GENERATION_FILE).read_text())
    assert record["complete"] and record["parameters"]["max_displacement_mm"] == [1.0, 2.0, 4.0]

    # same arguments again: nothing changes; other rater parameters: refused, naming the file
    before = read(folder / "labelsTs_rater3" / references[0])
    assert robust_cli(*args) == 0
    assert np.array_equal(before, read(folder / "labelsTs_rater3" / references[0]))
    assert robust_cli(*args[:-3], 5) == 2
    assert RATERS_GENERATION_FILE in capsys.readouterr().err


def test_raters_need_test_cases(robust_cli, tmp_path, capsys):
    assert robust_cli("make-dataset", "textures", "-d", 10, "-o", tmp_path, "--shape", 32, 32, "--alpha", 0.2,
                      "--num-train", 1, "--num-test", 0, "--raters", 2) == 2
    assert "--raters 2" in capsys.readouterr().err
    assert not (tmp_path / "Dataset010_Textures").exists()  # refused before anything was written

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_robustness.datasets.dataset_complexity import measure_dataset, summarize
from nnunet_robustness.datasets.textures_dataset import (
    GENERATION_FILE,
    TexturesDatasetConfig,
    generate_textures_dataset,
    plan_cases,
    render_case,
)
from nnunet_robustness.errors import UserInputError

# The small test datasets have fewer training cases than nnU-Net's 5 folds; that warning has its own test.
pytestmark = pytest.mark.filterwarnings("ignore:fewer than 5 training cases")


def small_config(**changes) -> TexturesDatasetConfig:
    values = dict(dataset_id=501, name="Textures", shape=(64, 64), texture_foreground="brick",
                  texture_background="grass", train_alphas=(0.3,), test_alphas=(0.1, 0.9),
                  num_train_per_alpha=3, num_test_per_alpha=2, blobs_per_image=(1, 2),
                  blob_diameter=(0.3, 0.6), seed=0)
    values.update(changes)
    return TexturesDatasetConfig(**values)


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_arrays_other_seed_other_arrays():
    config = small_config()
    case = plan_cases(config)[0]
    image, label = render_case(config, case)
    again_image, again_label = render_case(small_config(), case)
    other_image, other_label = render_case(small_config(seed=1), case)
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(label, again_label)
    assert not np.array_equal(image, other_image) and not np.array_equal(label, other_label)
    assert image.dtype == np.uint8 and label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}


@pytest.mark.parametrize("shape,textures", [((64, 64), ("brick", "grass")),
                                            ((24, 32, 28), ("noise-coarse", "noise-fine"))])
def test_alpha_blends_foreground_towards_background(shape, textures):
    """image = (1 - alpha) * A + alpha * B inside the blobs, B outside; alpha = 1 erases the blobs."""
    config = small_config(shape=shape, texture_foreground=textures[0], texture_background=textures[1],
                          test_alphas=(0.0, 0.5, 1.0), num_test_per_alpha=1)
    tests = [c for c in plan_cases(config) if c.split == "test"]
    (pure_a, label), (half, half_label), (pure_b, b_label) = (render_case(config, c) for c in tests)
    # paired design: one geometry and one pair of texture patches at every alpha
    np.testing.assert_array_equal(label, half_label)
    np.testing.assert_array_equal(label, b_label)
    outside = label == 0
    np.testing.assert_array_equal(pure_a[outside], pure_b[outside])
    np.testing.assert_array_equal(half[outside], pure_b[outside])
    inside = label == 1
    expected_half = (pure_a[inside].astype(float) + pure_b[inside]) / 2
    assert np.abs(half[inside] - expected_half).max() <= 1.0  # each image is rounded to integers once
    # at alpha = 0 the blob shows texture A, which differs from the background texture B under it
    assert np.abs(pure_a[inside].astype(float) - pure_b[inside]).mean() > 20
    # direction: alpha = 1 erases texture A (another A changes nothing), alpha = 0 shows it
    other_a = small_config(shape=shape, texture_foreground="fractal", texture_background=textures[1],
                           test_alphas=(0.0, 0.5, 1.0), num_test_per_alpha=1)
    at_zero, _ = render_case(other_a, tests[0])
    at_one, _ = render_case(other_a, tests[2])
    np.testing.assert_array_equal(at_one, pure_b)
    assert not np.array_equal(at_zero[inside], pure_a[inside])


def test_dataset_layout_and_records(tmp_path):
    config = small_config()
    folder = generate_textures_dataset(config, tmp_path, show_progress=False)
    assert folder == tmp_path / "Dataset501_Textures"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "foreground": 1}
    assert dataset_json["channel_names"] == {"0": "texture"}
    assert dataset_json["file_ending"] == ".nii.gz" and dataset_json["numTraining"] == 3

    train_images = sorted(p.name for p in (folder / "imagesTr").iterdir())
    assert train_images == [f"tr_a030_{i:04d}_0000.nii.gz" for i in range(3)]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"tr_a030_{i:04d}.nii.gz" for i in range(3)]
    assert sorted(p.name for p in (folder / "labelsTs").iterdir()) == [
        "ts_a010_0000.nii.gz", "ts_a010_0001.nii.gz", "ts_a090_0000.nii.gz", "ts_a090_0001.nii.gz"]

    # 2D cases are true 2D images with 1 mm pixels, which nnU-Net's SimpleITKIO reads as 2D
    image = sitk.ReadImage(str(folder / "imagesTr" / train_images[0]))
    assert image.GetDimension() == 2 and image.GetSize() == (64, 64) and image.GetSpacing() == (1.0, 1.0)

    generation = json.loads((folder / GENERATION_FILE).read_text())
    assert generation["complete"] and generation["parameters"]["seed"] == 0
    records = {r["case"]: r for r in generation["cases"]}
    assert len(records) == 7
    assert records["ts_a090_0001"]["alpha"] == 0.9 and records["ts_a090_0001"]["split"] == "test"
    assert records["tr_a030_0002"]["texture_foreground"] == "brick"
    assert records["tr_a030_0002"]["texture_background"] == "grass"
    assert all(1 <= r["num_blobs"] <= 2 for r in records.values())

    # the recorded scores are exactly what `complexity` measures on the files nnU-Net will read
    measured = {r.case: r for r in measure_dataset(folder, show_progress=False)}
    assert measured.keys() == records.keys()
    for name, record in records.items():
        assert measured[name].alpha == record["alpha"]
        assert measured[name].measures.texture_disparity_bits == record["texture_disparity_bits"]
        assert measured[name].measures.contrast_to_noise == record["contrast_to_noise"]
        assert measured[name].measures.foreground_voxels == record["foreground_voxels"]
        assert record["foreground_voxels"] == int(read(folder / ("labelsTr" if name.startswith("tr")
                                                                  else "labelsTs") / f"{name}.nii.gz").sum())


def test_rerun_reuses_finished_cases_and_completes_interrupted_runs(tmp_path):
    config = small_config()
    folder = generate_textures_dataset(config, tmp_path, show_progress=False)
    first = folder_bytes(folder)
    image = folder / "imagesTs" / "ts_a010_0000_0000.nii.gz"
    inode, mtime = image.stat().st_ino, image.stat().st_mtime_ns

    generate_textures_dataset(config, tmp_path, show_progress=False)
    assert folder_bytes(folder) == first
    assert (image.stat().st_ino, image.stat().st_mtime_ns) == (inode, mtime)  # not rewritten

    # a killed run: a label and dataset.json missing, a temporary file left behind (nnU-Net would list it)
    (folder / "labelsTr" / "tr_a030_0001.nii.gz").unlink()
    (folder / "dataset.json").unlink()
    (folder / "imagesTr" / ".tr_a030_0001_0000.x1y2.tmp.nii.gz").write_bytes(b"partial")
    generate_textures_dataset(config, tmp_path, show_progress=False)
    assert folder_bytes(folder) == first


def test_a_folder_from_other_parameters_is_refused(tmp_path):
    generate_textures_dataset(small_config(), tmp_path, show_progress=False)
    with pytest.raises(UserInputError, match="Dataset501_Textures was generated with other parameters "
                                             r"\(differing: seed, texture_foreground\)"):
        generate_textures_dataset(small_config(seed=3, texture_foreground="gravel"), tmp_path,
                                  show_progress=False)
    with pytest.raises(UserInputError, match="dataset id 501 is already used by .*Dataset501_Textures"):
        generate_textures_dataset(small_config(name="Other"), tmp_path, show_progress=False)
    stranger = tmp_path / "Dataset502_Mine"
    (stranger / "imagesTr").mkdir(parents=True)
    with pytest.raises(UserInputError, match="Dataset502_Mine exists and was not written by"):
        generate_textures_dataset(small_config(dataset_id=502, name="Mine"), tmp_path, show_progress=False)


def test_train_at_one_level_test_at_all_levels_shares_the_test_sets(tmp_path):
    """The study's protocol: one dataset per training alpha, each with the same test sets."""
    folders = [generate_textures_dataset(small_config(dataset_id=510 + i, name=f"TexturesA{a}",
                                                      train_alphas=(a / 10,), test_alphas=(0.1, 0.5, 0.9)),
                                         tmp_path, show_progress=False)
               for i, a in enumerate((2, 8))]
    low, high = folders
    assert sorted(p.name for p in (low / "imagesTr").iterdir())[0] == "tr_a020_0000_0000.nii.gz"
    assert sorted(p.name for p in (high / "imagesTr").iterdir())[0] == "tr_a080_0000_0000.nii.gz"
    for split in ("imagesTs", "labelsTs"):
        assert folder_bytes(low / split) == folder_bytes(high / split)
        assert len(list((low / split).iterdir())) == 6
    # training cases of several alphas in one dataset are all different shapes
    mixed = generate_textures_dataset(small_config(dataset_id=520, train_alphas=(0.1, 0.2), test_alphas=()),
                                      tmp_path, show_progress=False)
    labels = [read(p) for p in sorted((mixed / "labelsTr").iterdir())]
    assert len(labels) == 6 and not (mixed / "imagesTs").exists()
    assert all(not np.array_equal(labels[i], labels[j]) for i in range(6) for j in range(i + 1, 6))


@pytest.mark.parametrize("shape", [(256, 256), (48, 48, 48)], ids=["2d", "3d"])
def test_texture_disparity_falls_monotonically_with_alpha(tmp_path, robust_cli, shape):
    """Acceptance: mean TD over cases decreases with alpha for the default pair, in 2D and in 3D,
    measured by `nnunet-robust complexity` on the files of a generated dataset (paired test cases)."""
    alphas = [f"{a / 10:.1f}" for a in range(1, 10)]
    assert robust_cli("make-dataset", "textures", "-d", 530, "-o", tmp_path, "--shape", *shape,
                      "--train-alpha", "0.5", "--test-alpha", *alphas, "--num-train", 1,
                      "--num-test", 6 if len(shape) == 2 else 4) == 0
    table = tmp_path / "td.csv"
    assert robust_cli("complexity", tmp_path / "Dataset530_Textures", "-o", table) == 0
    summary = (tmp_path / "td_summary.csv").read_text().splitlines()
    header = summary[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in summary[1:]]
    test_rows = [r for r in rows if r["split"] == "test"]
    assert [float(r["alpha"]) for r in test_rows] == [float(a) for a in alphas]
    mean_td = [float(r["td_mean"]) for r in test_rows]
    # Strictly falling while the textures still differ (alpha <= 0.7); beyond, TD sits at the floor of the
    # KL estimate from a few thousand pixels (the study too: 0.008 at 0.8, 0.009 at 0.9), where a later
    # level may not exceed an earlier one by more than 0.002 bits.
    assert all(a > b for a, b in zip(mean_td[:7], mean_td[1:7])), mean_td
    assert all(later < earlier + 0.002 for i, earlier in enumerate(mean_td) for later in mean_td[i + 1:]), mean_td
    assert mean_td[0] > 5 * mean_td[-1] and mean_td[-1] >= 0, mean_td


@pytest.mark.parametrize("config,message", [
    (small_config(test_alphas=(0.1, 1.5)), r"--test-alpha 1.5: alpha must lie in \[0, 1\]"),
    (small_config(train_alphas=(0.125,)), r"--train-alpha 0.125: alpha must be a multiple of 0.01"),
    (small_config(train_alphas=(0.3, 0.30000001)), "an alpha is listed twice"),
    (small_config(shape=(32, 32, 32)), "texture 'brick' is not available in 3D"),
    (small_config(texture_background="marble"), "unknown texture 'marble'"),
    (small_config(shape=(8, 64)), "--shape 8 64: give 2 or 3 sizes, each at least 16"),
    (small_config(dataset_id=1000), "dataset id 1000 must be between 1 and 999"),
    (small_config(name="My Data"), "dataset name 'My Data' may only contain"),
    (small_config(blob_diameter=(0.5, 0.2)), "--blob-diameter 0.5 0.2"),
    (small_config(blobs_per_image=(0, 2)), "--blobs 0 2"),
])
def test_bad_parameters_are_named(config, message, tmp_path):
    with pytest.raises(UserInputError, match=message):
        generate_textures_dataset(config, tmp_path, show_progress=False)
    assert not any(tmp_path.iterdir())  # nothing written for a rejected configuration


def test_summary_groups_by_split_and_alpha(tmp_path):
    folder = generate_textures_dataset(small_config(), tmp_path, show_progress=False)
    groups = summarize(measure_dataset(folder, show_progress=False))
    assert [(g.split, g.alpha, g.cases) for g in groups] == [("train", 0.3, 3), ("test", 0.1, 2), ("test", 0.9, 2)]


def test_too_few_training_cases_for_five_folds_warn(tmp_path):
    with pytest.warns(UserWarning, match="fewer than 5 training cases"):
        generate_textures_dataset(small_config(num_train_per_alpha=2, test_alphas=()), tmp_path,
                                  show_progress=False)

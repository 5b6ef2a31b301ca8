"""The two commands through `nnunet-robust`'s own entry point: arguments, files written, error lines."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_robustness.datasets.texture_sources import TEXTURES

pytestmark = pytest.mark.filterwarnings("ignore:fewer than 5 training cases")


def write_image(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), True)


def user_dataset(root: Path, cases: int = 3, with_test_images: bool = False) -> Path:
    """A dataset not made by our generator: a bright noisy square on a dark noisy background."""
    folder = root / "Dataset042_Mine"
    rng = np.random.default_rng(0)
    for i in range(cases):
        label = np.zeros((40, 40), dtype=np.uint8)
        label[10:25, 12:30] = 1
        image = (rng.normal(100, 10, label.shape) + 40 * label).astype(np.int16)
        write_image(image, folder / "imagesTr" / f"case{i}_0000.nii.gz")
        write_image(label, folder / "labelsTr" / f"case{i}.nii.gz")
    if with_test_images:
        write_image(np.zeros((40, 40), np.int16), folder / "imagesTs" / "new_0000.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MR"}, "labels": {"background": 0, "lesion": 1}, "numTraining": cases,
        "file_ending": ".nii.gz"}))
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_list_textures(robust_cli, capsys):
    assert robust_cli("make-dataset", "textures", "--list-textures") == 0
    out = capsys.readouterr().out
    assert all(name in out for name in TEXTURES)


def test_make_dataset_writes_under_nnunet_raw_by_default(robust_cli, nnunet_env, capsys):
    assert robust_cli("make-dataset", "textures", "-d", 7, "--name", "Tiny", "--shape", 32, 32,
                      "--alpha", 0.2, 0.6, "--num-train", 2, "--num-test", 1, "--seed", 4) == 0
    folder = Path(nnunet_env["nnUNet_raw"]) / "Dataset007_Tiny"
    assert "4 training, 2 test cases" in capsys.readouterr().out
    assert (folder / "dataset.json").is_file()
    parameters = json.loads((folder / "textures_generation.json").read_text())["parameters"]
    assert parameters["train_alphas"] == [0.2, 0.6] and parameters["test_alphas"] == [0.2, 0.6]
    assert parameters["seed"] == 4 and parameters["shape"] == [32, 32]
    assert (parameters["texture_foreground"], parameters["texture_background"]) == ("brick", "grass")


def test_3d_defaults_to_procedural_textures(robust_cli, tmp_path):
    assert robust_cli("make-dataset", "textures", "-d", 8, "-o", tmp_path, "--shape", 20, 24, 16,
                      "--train-alpha", 0.4, "--test-alpha", "--num-train", 1) == 0
    folder = tmp_path / "Dataset008_Textures"
    parameters = json.loads((folder / "textures_generation.json").read_text())["parameters"]
    assert (parameters["texture_foreground"], parameters["texture_background"]) == ("noise-coarse", "noise-fine")
    image = sitk.ReadImage(str(folder / "imagesTr" / "tr_a040_0000_0000.nii.gz"))
    assert image.GetSize() == (16, 24, 20) and image.GetSpacing() == (1.0, 1.0, 1.0)  # SimpleITK is x, y, z
    assert not (folder / "imagesTs").exists()


@pytest.mark.parametrize("argv,message", [
    (["make-dataset", "textures"], "-d/--dataset-id is required"),
    (["make-dataset", "textures", "-d", "5", "--shape", "32", "32", "32", "--textures", "gravel", "fractal"],
     "texture 'gravel' is not available in 3D"),
    (["make-dataset", "textures", "-d", "5", "--alpha", "0.1", "-0.2"], r"--train-alpha -0.2: alpha must lie"),
])
def test_make_dataset_errors_are_one_line_with_status_2(robust_cli, argv, message, capsys, tmp_path):
    assert robust_cli(*argv, "-o", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnunet-robust: error: ") and "\n" not in err
    assert re.search(message, err), err


def test_make_dataset_needs_an_output_folder(robust_cli, monkeypatch, capsys):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert robust_cli("make-dataset", "textures", "-d", 5) == 2
    assert "nnUNet_raw is not set; set it or give -o/--output" in capsys.readouterr().err


def test_complexity_of_a_users_dataset_by_id(robust_cli, nnunet_env, tmp_path, capsys, monkeypatch):
    user_dataset(Path(nnunet_env["nnUNet_raw"]))
    monkeypatch.chdir(tmp_path)
    assert robust_cli("complexity", "42") == 0
    out = capsys.readouterr().out
    assert "train" in out and "TD mean" in out
    assert "NaN: cases whose TD is undefined" in out and "TD: texture disparity in bits" in out  # the legend
    rows = read_csv(tmp_path / "complexity_Dataset042_Mine.csv")
    assert [r["case"] for r in rows] == ["case0", "case1", "case2"]
    for row in rows:
        assert row["split"] == "train" and row["alpha"] == ""
        assert int(row["foreground_voxels"]) == 15 * 18
        assert float(row["foreground_fraction"]) == pytest.approx(15 * 18 / 1600)
        assert float(row["contrast_to_noise"]) == pytest.approx(4.0, rel=0.2)  # 40 / sigma 10
        assert float(row["texture_disparity_bits"]) >= 0
    summary = read_csv(tmp_path / "complexity_Dataset042_Mine_summary.csv")
    assert len(summary) == 1 and summary[0]["cases"] == "3" and summary[0]["undefined_td"] == "0"


def test_complexity_reports_nan_for_an_empty_label(robust_cli, tmp_path, capsys):
    folder = user_dataset(tmp_path)
    write_image(np.zeros((40, 40), np.uint8), folder / "labelsTr" / "case1.nii.gz")
    with pytest.warns(RuntimeWarning, match="case1 .*texture disparity is undefined"):
        assert robust_cli("complexity", folder, "-o", tmp_path / "out.csv") == 0
    rows = {r["case"]: r for r in read_csv(tmp_path / "out.csv")}
    assert math.isnan(float(rows["case1"]["texture_disparity_bits"]))
    assert not math.isnan(float(rows["case0"]["texture_disparity_bits"]))
    summary = read_csv(tmp_path / "out_summary.csv")[0]
    assert summary["undefined_td"] == "1" and math.isfinite(float(summary["td_mean"]))


def test_test_images_without_labels_are_skipped_with_a_warning(robust_cli, tmp_path):
    folder = user_dataset(tmp_path, with_test_images=True)
    with pytest.warns(UserWarning, match="imagesTs has no labelsTs folder"):
        assert robust_cli("complexity", folder, "-o", tmp_path / "out.csv") == 0
    assert {r["split"] for r in read_csv(tmp_path / "out.csv")} == {"train"}


def corrupt_missing_label(folder: Path) -> str:
    (folder / "labelsTr" / "case2.nii.gz").unlink()
    return r"imagesTr/case2_0000.nii.gz has no label \(.*labelsTr/case2.nii.gz is missing\)"


def corrupt_orphan_label(folder: Path) -> str:
    write_image(np.zeros((40, 40), np.uint8), folder / "labelsTr" / "ghost.nii.gz")
    return r"labelsTr/ghost.nii.gz has no image"


def corrupt_shape(folder: Path) -> str:
    write_image(np.zeros((40, 41), np.uint8), folder / "labelsTr" / "case1.nii.gz")
    return r"shape mismatch: image .*imagesTr/case1_0000.nii.gz has shape .*label .*labelsTr/case1.nii.gz"


def corrupt_unreadable(folder: Path) -> str:
    (folder / "imagesTr" / "case0_0000.nii.gz").write_bytes(b"not an image")
    return r"cannot read image .*imagesTr/case0_0000.nii.gz"


def corrupt_dataset_json(folder: Path) -> str:
    (folder / "dataset.json").unlink()
    return r"Dataset042_Mine has no dataset.json"


@pytest.mark.parametrize("corrupt", [corrupt_missing_label, corrupt_orphan_label, corrupt_shape,
                                     corrupt_unreadable, corrupt_dataset_json])
def test_complexity_names_the_bad_file(robust_cli, tmp_path, capsys, corrupt):
    folder = user_dataset(tmp_path)
    pattern = corrupt(folder)
    assert robust_cli("complexity", folder, "-o", tmp_path / "out.csv") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnunet-robust: error: ") and "\n" not in err
    assert re.search(pattern, err), err
    assert not (tmp_path / "out.csv").exists()


def test_complexity_dataset_lookup_errors(robust_cli, nnunet_env, capsys):
    assert robust_cli("complexity", "77") == 2
    assert "no dataset '77' in nnUNet_raw" in capsys.readouterr().err
    assert robust_cli("complexity", "/no/such/folder") == 2
    assert "'/no/such/folder' is neither a folder nor a dataset id" in capsys.readouterr().err

"""``nnunet-robust corrupt`` on a tiny synthetic imagesTs folder (.nii.gz, two channels, int16 + float32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_robustness.cli import main
from nnunet_robustness.corruptions import list_families
from nnunet_robustness.corruptions.catalogue import catalogue_text
from tests.corruptions.phantoms import make_phantom

SPACING = (0.8, 0.9, 2.5)  # SimpleITK order (x, y, z)
ORIGIN = (-12.5, 30.0, 7.25)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _write(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    sitk.WriteImage(image, str(path))


@pytest.fixture
def images_ts(tmp_path: Path) -> tuple[Path, Path]:
    images, labels = tmp_path / "imagesTs", tmp_path / "labelsTs"
    images.mkdir()
    labels.mkdir()
    for case in ("case_001", "case_002"):
        ct, label = make_phantom((12, 20, 18), low=-1000.0, high=800.0)  # numpy (z, y, x)
        mr, _ = make_phantom((12, 20, 18), low=0.0, high=350.0)
        _write(ct[0].numpy().astype(np.int16), images / f"{case}_0000.nii.gz")
        _write(mr[0].numpy().astype(np.float32), images / f"{case}_0001.nii.gz")
        _write(label.numpy().astype(np.uint8), labels / f"{case}.nii.gz")
    return images, labels


def test_list_shows_every_family_with_a_description(capsys):
    assert main(["corrupt", "--list"]) == 0
    printed = capsys.readouterr().out
    assert len(list_families()) >= 16
    for family in list_families():
        line = next(line for line in printed.splitlines() if line.strip().startswith(family + " "))
        assert len(line.split(None, 1)[1]) > 20
    assert "seed-study:harder" in printed and printed.strip() == catalogue_text().strip()


def test_list_and_run_help_name_every_adversarial_and_context_condition(capsys):
    """Every condition kind `run` accepts is listed where a user looks (corrupt --list, run --help), not
    only in the README: the attacks as the runner knows them, and the context crops."""
    from nnunet_robustness.adversarial.attacks import ATTACKS
    from nnunet_robustness.conditions import ATTACK_ALIASES
    from nnunet_robustness.conditions.parsing import parse_condition_spec

    assert main(["corrupt", "--list"]) == 0
    listed = capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["run", "--help"])
    assert exited.value.code == 0
    helped = capsys.readouterr().out
    for text in (listed, helped):
        names = {line.split()[0] for line in text.splitlines() if line.startswith("  ") and line.split()}
        assert set(ATTACKS) <= names and "context" in names, text
        assert all(alias in text for alias in ATTACK_ALIASES)
        assert "docs/adversarial.md" in text
    for name in {line.split()[0] for line in listed.splitlines() if line.startswith("  adv_")}:
        assert parse_condition_spec(f"{name}:3")[0].family == name  # what is listed is what run takes


def test_corrupt_writes_one_folder_per_condition_and_keeps_geometry_and_pixel_type(images_ts, tmp_path, capsys):
    images, labels = images_ts
    out = tmp_path / "out"
    status = main(["corrupt", "-i", str(images), "-o", str(out), "--family", "gaussian_noise", "motion",
                   "--severity", "1", "3", "--preset", "seed-study", "-l", str(labels)])
    assert status == 0
    folders = ["gaussian_noise/1", "gaussian_noise/3", "motion/1", "motion/3", "seed-study/easier",
               "seed-study/easiest", "seed-study/harder", "seed-study/hardest"]
    for folder in folders:
        assert (out / folder / "corruption.json").is_file()
        for name in ("case_001_0000.nii.gz", "case_001_0001.nii.gz", "case_002_0000.nii.gz", "case_002_0001.nii.gz"):
            original = sitk.ReadImage(str(images / name))
            corrupted = sitk.ReadImage(str(out / folder / name))
            assert corrupted.GetSpacing() == original.GetSpacing()
            assert corrupted.GetOrigin() == original.GetOrigin()
            assert corrupted.GetDirection() == original.GetDirection()
            assert corrupted.GetPixelID() == original.GetPixelID()
            before, after = sitk.GetArrayFromImage(original), sitk.GetArrayFromImage(corrupted)
            assert after.shape == before.shape and not np.array_equal(after, before)
    # Background blur leaves the labelled foreground untouched.
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(labels / "case_001.nii.gz"))) > 0
    blurred = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "seed-study/easiest/case_001_0001.nii.gz")))
    clean = sitk.GetArrayFromImage(sitk.ReadImage(str(images / "case_001_0001.nii.gz")))
    assert np.array_equal(blurred[label], clean[label]) and not np.array_equal(blurred[~label], clean[~label])
    assert "16 case-condition(s) written" in capsys.readouterr().out  # 2 cases x 8 conditions


def test_rerun_skips_existing_outputs_unless_overwrite(images_ts, tmp_path, capsys):
    images, _ = images_ts
    out = tmp_path / "out"
    arguments = ["corrupt", "-i", str(images), "-o", str(out), "--family", "spike", "--severity", "2"]
    assert main(arguments) == 0
    target = out / "spike/2/case_001_0000.nii.gz"
    target.write_bytes(b"sentinel")  # a re-run must not look at, let alone replace, existing outputs
    capsys.readouterr()
    assert main(arguments) == 0
    assert target.read_bytes() == b"sentinel" and "2 already present" in capsys.readouterr().out
    assert main([*arguments, "--overwrite"]) == 0
    assert "2 case-condition(s) written" in capsys.readouterr().out
    assert sitk.ReadImage(str(target)).GetSize() == (18, 20, 12)
    assert not list(out.rglob(".*tmp*"))  # no temporary files left behind


def test_same_seed_reproduces_the_files(images_ts, tmp_path):
    images, _ = images_ts
    for run in ("a", "b"):
        assert main(["corrupt", "-i", str(images), "-o", str(tmp_path / run), "--family", "rician_noise",
                     "--severity", "4", "--seed", "3"]) == 0
    for name in ("case_001_0000.nii.gz", "case_002_0001.nii.gz"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a/rician_noise/4" / name)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b/rician_noise/4" / name)))
        assert np.array_equal(a, b)


@pytest.mark.parametrize("arguments,message", [
    (["--family", "gausian_noise"], "did you mean 'gaussian_noise'"),
    (["--family", "spike", "--severity", "7"], "severity 7"),
    (["--preset", "seed-study:easier"], "need the reference labels"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    ([], "nothing to do"),
])
def test_user_errors_are_one_line_with_exit_status_2(images_ts, tmp_path, capsys, arguments, message):
    images, _ = images_ts
    assert main(["corrupt", "-i", str(images), "-o", str(tmp_path / "out"), *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("nnunet-robust: error:") and message in error and "\n" not in error


def test_folder_without_nnunet_file_names_is_a_user_error(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scan.nii.gz").write_bytes(b"")
    assert main(["corrupt", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--family", "spike"]) == 2
    assert "no images named CASE_0000<ending>" in capsys.readouterr().err

"""Atomic writes: all or nothing, usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from nnunet_robustness.io import atomic_path, atomic_write_json


def test_atomic_path_renames_only_on_success(tmp_path):
    target = tmp_path / "sub" / "case.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == target.parent
            tmp.write_text("partial")
            raise RuntimeError("killed mid-write")
    assert not target.exists() and list(target.parent.iterdir()) == []
    atomic_write_json(target.with_name("a.json"), {"x": 1})
    assert (target.parent / "a.json").read_text().strip().startswith("{")


def test_written_files_get_umask_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    atomic_write_json(tmp_path / "a.json", {})
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~umask


def test_a_truncated_nii_gz_is_refused_naming_the_file(tmp_path):
    """ITK reads a truncated .nii.gz with zeros filled in; eval would score a perfect prediction 0.44."""
    import numpy as np
    import SimpleITK as sitk

    from nnunet_robustness.errors import UserInputError
    from nnunet_robustness.io import check_image_file

    path = tmp_path / "case_000.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 3, (20, 30, 30)).astype(np.uint8)),
                    str(path), True)
    check_image_file(path)  # complete: fine
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.75)])
    with pytest.raises(UserInputError, match=r"case_000.nii.gz: cannot be read: truncated or corrupt gzip file"):
        check_image_file(path)


def test_nan_voxels_in_a_float_nifti_are_refused_although_simpleitk_reads_them_as_zero(tmp_path):
    import numpy as np
    import SimpleITK as sitk

    from nnunet_robustness.errors import UserInputError
    from nnunet_robustness.io import check_image_file

    array = np.ones((8, 8), np.float32)
    array[2, 3] = np.nan
    path = tmp_path / "case_0000.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()  # why the check exists
    with pytest.raises(UserInputError, match="case_0000.nii.gz: contains NaN or Inf"):
        check_image_file(path)
    labels = tmp_path / "labels.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 8), np.uint8)), str(labels))
    check_image_file(labels)  # integer files cannot hold NaN: header only


def test_csv_cells_that_start_like_a_formula_get_a_quote_and_read_back_unchanged():
    """CSV injection: names from files and arguments must not run as spreadsheet formulas (#32)."""
    import pandas as pd

    from nnunet_robustness.io import csv_cell, csv_safe, csv_unescape

    table = pd.DataFrame({"case": ["=1+1", "+x", "-y", "@z", "plain", "it's"], "dice": [-0.5, 0.1, 0.2, 0.3, 0.4, 0.5]})
    safe = csv_safe(table)
    assert list(safe["case"]) == ["'=1+1", "'+x", "'-y", "'@z", "plain", "it's"]
    assert list(safe["dice"]) == list(table["dice"]) and list(table["case"])[0] == "=1+1"  # numbers and input kept
    assert csv_cell(-3) == -3
    assert list(csv_unescape(safe)["case"]) == list(table["case"])

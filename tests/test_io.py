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

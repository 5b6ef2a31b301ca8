"""Shared fixtures: nnU-Net's environment pointed at temporary folders, small worker counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def nnunet_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Set nnU-Net's folders to fresh temp dirs (for this process and any subprocess it starts)."""
    env = {
        "nnUNet_raw": str(tmp_path / "nnUNet_raw"),
        "nnUNet_preprocessed": str(tmp_path / "nnUNet_preprocessed"),
        "nnUNet_results": str(tmp_path / "nnUNet_results"),
        "nnUNet_n_proc_DA": "2",
        "nnUNet_def_n_proc": "2",
        "nnUNet_compile": "false",
    }
    for key, value in env.items():
        if key.startswith("nnUNet_") and not key.startswith("nnUNet_n") and key != "nnUNet_compile":
            Path(value).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}

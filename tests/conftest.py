"""Shared fixtures: nnU-Net's environment pointed at temporary folders, small worker counts; the blob datasets
preprocessed and the tiny models trained once per session (tests/helpers/nnunet_models.py); a small prediction
study (two models, three conditions) and its evaluation, shared by the analysis and report tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.nnunet_models import SharedNnunet
from tests.helpers.prediction_folders import write_study


@pytest.fixture
def nnunet_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Set nnU-Net's folders to fresh temp dirs (for this process and any subprocess it starts)."""
    env = {
        "nnUNet_raw": str(tmp_path / "nnUNet_raw"),
        "nnUNet_preprocessed": str(tmp_path / "nnUNet_preprocessed"),
        "nnUNet_results": str(tmp_path / "nnUNet_results"),
        "nnUNet_n_proc_DA": "2",
        # one process for nnU-Net's own pools (planning, a training's final validation export): each spawned
        # worker imports torch, seconds of CPU, for a handful of tiny cases
        "nnUNet_def_n_proc": "1",
        "nnUNet_compile": "false",
    }
    for key, value in env.items():
        if key.startswith("nnUNet_") and not key.startswith("nnUNet_n") and key != "nnUNet_compile":
            Path(value).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}


@pytest.fixture(scope="session")
def nnunet_models(tmp_path_factory: pytest.TempPathFactory) -> SharedNnunet:
    """Blob datasets and trained models built on first use and shared by every module (read-only), and by
    every pytest-xdist worker: the workers' base folders share one parent."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return SharedNnunet(tmp_path_factory.getbasetemp().parent / "nnunet_shared")
    return SharedNnunet(tmp_path_factory.mktemp("nnunet_shared"))


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two models (A better than B), clean + two severities of one family, 4 cases, run.json layout.
    Read-only: tests that break files make their own copy."""
    root = tmp_path_factory.mktemp("study")
    folders = write_study(root)
    return {"root": root, "reference": root / "labelsTs", "dataset_json": root / "dataset.json", **folders}


@pytest.fixture(scope="session")
def study_result(study: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    from nnunet_robustness.evaluation import evaluate

    output = tmp_path_factory.mktemp("study_eval")
    result = evaluate({"A": study["A"], "B": study["B"]}, study["reference"], study["dataset_json"], output,
                      n_bootstrap=200, progress=False)
    return result, output


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests first (a stable sort: files and tests otherwise keep their order). Under
    `make test`'s two workers the long files (the wheel's venv, the smoke studies) then start at once and the
    many short tests fill the other worker's time, instead of one long file running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)

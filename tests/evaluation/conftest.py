from __future__ import annotations

from pathlib import Path

import pytest

from tests.evaluation.folders import write_study


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

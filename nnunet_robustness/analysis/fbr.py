"""The context-vs-FBR study in ``eval``: each case's test FBR set against the training range of the
model that predicted it (see :mod:`nnunet_robustness.foreground_ratio` and
:mod:`nnunet_robustness.records.training_fbr` for the definitions)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from nnunet_robustness.records.run_manifest import RunManifest
from nnunet_robustness.records.training_fbr import training_fbr_range


def training_fbr_range_of_predictions(prediction_folder: Path) -> dict | None:
    """The training range of the model behind a ``run`` output folder (its run.json names the model);
    None for folders not made by ``run`` and for models trained without FBR logging."""
    manifest = RunManifest.read_if_present(prediction_folder)
    if manifest is None or not manifest.model_folder.is_dir():
        return None
    return training_fbr_range(manifest.model_folder, manifest.folds_used)


def annotate_training_range(per_case: pd.DataFrame, ranges: dict[str, dict | None]) -> pd.DataFrame:
    """Add ``training_fbr_low/high`` and ``fbr_outside_training`` (NA without a training log)."""
    low = per_case["model"].map(lambda m: (ranges.get(m) or {}).get("low", math.nan)).astype(float)
    high = per_case["model"].map(lambda m: (ranges.get(m) or {}).get("high", math.nan)).astype(float)
    outside = pd.Series(pd.NA, index=per_case.index, dtype="boolean")
    known = low.notna() & per_case["test_fbr"].notna()
    outside[known] = (per_case.loc[known, "test_fbr"] < low[known]) | (per_case.loc[known, "test_fbr"] > high[known])
    return per_case.assign(training_fbr_low=low, training_fbr_high=high, fbr_outside_training=outside)

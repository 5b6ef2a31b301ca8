"""The model sanity gate: no robustness verdict about a model that does not work on clean images.

A model that predicts nothing cannot degrade (its Dice is 0 everywhere, its "robustness" perfect), and
one that predicts a few blobs can even gain under noise; comparing such models gives confident-looking
statistics about nothing. Before any comparison, each model is checked on the clean condition:

- **fails** when it predicts an empty mask for at least ``EMPTY_SHARE_FLOOR`` of the clean structures
  whose reference is not empty, or when its mean clean foreground Dice is below ``CLEAN_DICE_FLOOR``;
  failed models are marked in the report and left out of the verdict (``--allow-weak-models`` keeps
  them in, marked);
- **short schedule** when its training ran fewer than ``SHORT_SCHEDULE_SHARE`` of nnU-Net's default
  iterations (1000 epochs x 250), read from the fold's ``debug.json`` that nnU-Net writes (the
  ``_tiny``/``_short`` schedules and the demo): marked with a warning, since its robustness is that
  of an undertrained network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nnunet_robustness.io import read_json
from nnunet_robustness.records.run_manifest import RunManifest

EMPTY_SHARE_FLOOR = 0.5
CLEAN_DICE_FLOOR = 0.2
NNUNET_DEFAULT_ITERATIONS = 1000 * 250
SHORT_SCHEDULE_SHARE = 0.1


@dataclass(frozen=True)
class ModelCheck:
    model: str
    clean_dice: float
    empty_share: float  # clean structures with a non-empty reference predicted empty
    iterations: int | None  # epochs x iterations per epoch of the training, None when unknown
    reasons: tuple[str, ...] = field(default_factory=tuple)  # why it fails the gate

    @property
    def passed(self) -> bool:
        return not self.reasons

    @property
    def short_schedule(self) -> bool:
        return self.iterations is not None and self.iterations < SHORT_SCHEDULE_SHARE * NNUNET_DEFAULT_ITERATIONS

    def to_json(self) -> dict:
        return {"model": self.model, "clean_dice": self.clean_dice, "empty_share": self.empty_share,
                "iterations": self.iterations, "passed": self.passed, "short_schedule": self.short_schedule,
                "reasons": list(self.reasons)}


def training_iterations(prediction_folder: Path) -> int | None:
    """Epochs x iterations per epoch of the model behind a ``run`` folder (nnU-Net's ``debug.json`` of its
    first fold); None for folders without run.json or models without the log."""
    manifest = RunManifest.read_if_present(prediction_folder)
    if manifest is None:
        return None
    folds = manifest.folds_used or [path.name[len("fold_"):] for path in sorted(manifest.model_folder.glob("fold_*"))]
    for fold in folds:
        debug = manifest.model_folder / f"fold_{fold}" / "debug.json"
        if debug.is_file():
            data = read_json(debug, "nnU-Net training log")
            try:
                return int(data["num_epochs"]) * int(data["num_iterations_per_epoch"])
            except (KeyError, TypeError, ValueError):
                return None
    return None


def check_models(per_case: pd.DataFrame, clean: str | None, folders: dict[str, Path]) -> list[ModelCheck]:
    """The gate for every model, from its clean rows of the per-case table (one row per structure)."""
    checks = []
    for model, folder in folders.items():
        rows = per_case[(per_case["model"] == model) & (per_case["condition"] == clean)] if clean else per_case[:0]
        reasons = []
        with_reference = rows[rows["ref_voxels"] > 0]
        empty_share = float((with_reference["pred_voxels"] == 0).mean()) if len(with_reference) else math.nan
        clean_dice = float(rows.groupby("case")["dice"].mean().mean()) if len(rows) else math.nan
        if len(with_reference) and empty_share >= EMPTY_SHARE_FLOOR:
            reasons.append(f"predicts empty masks on {100 * empty_share:.0f}% of the clean structures that have a "
                           "reference")
        if math.isfinite(clean_dice) and clean_dice < CLEAN_DICE_FLOOR:
            reasons.append(f"mean clean Dice {clean_dice:.2f} is below {CLEAN_DICE_FLOOR}")
        checks.append(ModelCheck(model, clean_dice, empty_share, training_iterations(folder), tuple(reasons)))
    return checks

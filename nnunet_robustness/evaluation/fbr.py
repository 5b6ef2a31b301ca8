"""Test-time foreground-to-background ratio (FBR): the context condition of ``run``, and FBR in ``eval``.

**Context condition** (``run --conditions context:0.5,0.15``): for each test case the image is cropped
to a box around the reference foreground, grown until the box's foreground fraction is as close as
possible to the level: the tight bounding box has the highest fraction, the whole image the lowest,
and between them the fraction only falls as the box grows (the box always holds all foreground), so
the closest margin is found by bisection. The margin is the same physical distance on every axis
(voxels of the finest axis, converted per axis with the spacing), clipped at the image border. The
crop goes through nnU-Net's complete inference (``predict_single_npy_array``) as an image of its own;
its prediction is pasted into a background canvas of the full image, so the output keeps the input
geometry and is compared with the full reference. Outside the box the reference is background by
construction, so the comparison equals one on the crop. ``<condition>/<case>.fbr.json`` records
the achieved fraction, the box and the margin (written before the segmentation, which marks the
item done).

**Eval**: each case's test FBR is the fraction of its evaluated image: the whole reference for
ordinary conditions, the crop's for context conditions. The training range of a model comes from
the ``fbr_train.json`` logs of its folds (fg trainers, ``nnunet_robustness.trainers.fbr``): the
range of the foreground fraction of the patches the network was trained on (after augmentation),
pooled over folds. Cases outside it are flagged (``fbr_outside_training``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nnunet_robustness.io import atomic_write_json

FBR_RECORD_SUFFIX = ".fbr.json"
TRAINING_LOG = "fbr_train.json"


def foreground_fraction(label: np.ndarray, ignore_label: int | None = None) -> float:
    """Foreground voxels (label > 0, not the ignore label) / annotated voxels."""
    annotated = np.ones(label.shape, dtype=bool) if ignore_label is None else label != ignore_label
    n = int(annotated.sum())
    return float(((label > 0) & annotated).sum()) / n if n else math.nan


# --- the context condition -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ContextBox:
    target_fbr: float
    fbr: float  # achieved
    box: list[list[int]]  # [start, stop) per spatial axis
    margin_voxels: list[int]
    tight_fbr: float  # fraction of the foreground bounding box (the highest reachable)
    image_fbr: float  # fraction of the whole image (the lowest reachable)

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.box)

    def to_json(self) -> dict:
        return {**asdict(self), "clipped": not self.image_fbr <= self.target_fbr <= self.tight_fbr}


def context_box(label: np.ndarray, spacing: Sequence[float], target_fbr: float,
                ignore_label: int | None = None) -> ContextBox:
    """The box around the foreground of ``label`` (spatial axes only) whose foreground fraction is
    closest to ``target_fbr``. Without foreground: the whole image."""
    shape = label.shape
    full = [[0, s] for s in shape]
    foreground = (label > 0) if ignore_label is None else (label > 0) & (label != ignore_label)
    image_fbr = foreground_fraction(label, ignore_label)
    if not foreground.any():
        return ContextBox(target_fbr, image_fbr, full, [0] * len(shape), math.nan, image_fbr)
    coords = np.nonzero(foreground)
    low = [int(c.min()) for c in coords]
    high = [int(c.max()) + 1 for c in coords]
    finest = min(float(s) for s in spacing)

    def margins(k: int) -> list[int]:
        return [int(round(k * finest / float(s))) for s in spacing]

    def box(k: int) -> list[list[int]]:
        return [[max(0, lo - m), min(n, hi + m)] for lo, hi, m, n in zip(low, high, margins(k), shape)]

    def fbr(k: int) -> float:
        return foreground_fraction(label[tuple(slice(a, b) for a, b in box(k))], ignore_label)

    # the smallest k whose box is the whole image
    k_full = max(math.ceil(max(lo, n - hi) * float(s) / finest) for lo, hi, n, s in zip(low, high, shape, spacing))
    while box(k_full) != full:  # rounding of the per-axis margins
        k_full += 1
    # bisection for the first k with fbr(k) <= target (fbr is non-increasing in k)
    lo_k, hi_k = 0, k_full
    if fbr(0) <= target_fbr:
        hi_k = 0
    else:
        while hi_k - lo_k > 1:
            mid = (lo_k + hi_k) // 2
            lo_k, hi_k = (lo_k, mid) if fbr(mid) <= target_fbr else (mid, hi_k)
    best = min({max(0, hi_k - 1), hi_k}, key=lambda k: (abs(fbr(k) - target_fbr), k))
    return ContextBox(target_fbr, fbr(best), box(best), margins(best), fbr(0), image_fbr)


def paste_into_background(prediction: np.ndarray, full_shape: Sequence[int], box: ContextBox,
                          probabilities: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The crop's segmentation (and class probabilities) in a full-size canvas: background outside."""
    canvas = np.zeros(tuple(full_shape), dtype=prediction.dtype)
    canvas[box.slices] = prediction
    full_probabilities = None
    if probabilities is not None:
        full_probabilities = np.zeros((probabilities.shape[0], *full_shape), dtype=probabilities.dtype)
        full_probabilities[0] = 1
        full_probabilities[(slice(None), *box.slices)] = probabilities
    return canvas, full_probabilities


def record_path(condition_folder: Path, case: str) -> Path:
    return Path(condition_folder) / f"{case}{FBR_RECORD_SUFFIX}"


def write_context_record(condition_folder: Path, case: str, box: ContextBox) -> None:
    atomic_write_json(record_path(condition_folder, case), {"case": case, **box.to_json()})


def read_context_fbr(condition_folder: Path, case: str) -> float | None:
    path = record_path(condition_folder, case)
    if not path.is_file():
        return None
    return float(json.loads(path.read_text())["fbr"])


# --- training range ------------------------------------------------------------------------------------

def training_fbr_range(model_folder: Path, folds: Sequence[Any] | None = None) -> dict | None:
    """``{"low", "high", "logs"}`` over the folds' ``fbr_train.json`` (kind ``network``), or None."""
    model_folder = Path(model_folder)
    folders = ([model_folder / f"fold_{f}" for f in folds] if folds is not None
               else sorted(model_folder.glob("fold_*")))
    lows, highs, logs = [], [], []
    for folder in folders:
        path = folder / TRAINING_LOG
        if not path.is_file():
            continue
        network = json.loads(path.read_text())["overall"]["network"]
        if network.get("n"):
            lows.append(network["min"])
            highs.append(network["max"])
            logs.append(str(path))
    if not logs:
        return None
    return {"low": float(min(lows)), "high": float(max(highs)), "logs": logs}


def training_fbr_range_of_predictions(prediction_folder: Path) -> dict | None:
    """The training range of the model behind a ``run`` output folder (its run.json names the model)."""
    manifest = Path(prediction_folder) / "run.json"
    if not manifest.is_file():
        return None
    try:
        model = json.loads(manifest.read_text())["model"]
        return training_fbr_range(Path(model["model_folder"]), model.get("folds_used"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def annotate_training_range(per_case, ranges: dict[str, dict | None]):
    """Add ``training_fbr_low/high`` and ``fbr_outside_training`` (NA without a training log)."""
    import pandas as pd

    low = per_case["model"].map(lambda m: (ranges.get(m) or {}).get("low", math.nan)).astype(float)
    high = per_case["model"].map(lambda m: (ranges.get(m) or {}).get("high", math.nan)).astype(float)
    outside = pd.Series(pd.NA, index=per_case.index, dtype="boolean")
    known = low.notna() & per_case["test_fbr"].notna()
    outside[known] = (per_case.loc[known, "test_fbr"] < low[known]) | (per_case.loc[known, "test_fbr"] > high[known])
    return per_case.assign(training_fbr_low=low, training_fbr_high=high, fbr_outside_training=outside)


# --- report --------------------------------------------------------------------------------------------

def has_fbr_study(result: Any) -> bool:
    """A context condition was run, or a model has a training FBR log."""
    return (result.conditions["family"].eq("context").any()
            or any(result.settings.get("training_fbr_ranges", {}).values()))


def report_section(result: Any) -> str:
    """HTML: metric vs test FBR per model, the training range shaded, and counts of flagged cases."""
    from nnunet_robustness.evaluation.report import _note, _png, _table

    per_case = result.per_case
    if "test_fbr" not in per_case or not per_case["test_fbr"].notna().any():
        return _note("No test FBR (no reference foreground).")
    import matplotlib.pyplot as plt

    cases = (per_case.groupby(["model", "condition", "case"], sort=False)
             .agg(dice=("dice", "mean"), test_fbr=("test_fbr", "first"), low=("training_fbr_low", "first"),
                  high=("training_fbr_high", "first"), outside=("fbr_outside_training", "first"))
             .reset_index())
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for index, model in enumerate(result.models):
        colour = f"C{index % 10}"
        rows = cases[cases["model"] == model]
        if rows["low"].notna().any():
            low, high = rows["low"].iloc[0], rows["high"].iloc[0]
            axis.axvspan(max(low, 1e-4), high, color=colour, alpha=0.12, linewidth=0,
                         label=f"{model}: training FBR {low:.2f}-{high:.2f}")
        axis.scatter(rows["test_fbr"].clip(lower=1e-4), rows["dice"], s=14, alpha=0.5, color=colour)
        means = rows.groupby("condition", sort=False)[["test_fbr", "dice"]].mean().sort_values("test_fbr")
        axis.plot(means["test_fbr"].clip(lower=1e-4), means["dice"], marker="o", color=colour, label=model)
    axis.set_xscale("log")
    axis.set_xlabel("test FBR (foreground fraction of the evaluated image)")
    axis.set_ylabel("Dice (per case, mean over labels)")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize="small")
    figure.tight_layout()
    image = _png(figure)
    plt.close(figure)
    table = (cases.groupby(["model", "condition"], sort=False)
             .agg(n=("case", "size"), fbr=("test_fbr", "mean"), dice=("dice", "mean"),
                  outside=("outside", lambda s: int(s.fillna(False).sum()) if s.notna().any() else None))
             .reset_index())
    rows = [[r["model"], r["condition"], r["n"], r["fbr"], r["dice"], r["outside"]] for _, r in table.iterrows()]
    return (_note("One point per case and condition; lines join the per-condition means. Shaded: the range of "
                  "foreground fractions of the training patches (fbr_train.json of the model's folds).")
            + image + _table(["model", "condition", "cases", "mean test FBR", "mean Dice",
                              "cases outside training FBR"], rows, text_columns=(0, 1)))

"""Foreground-to-background ratio (FBR): the foreground fraction, the context condition of ``run``, and
the training log ``fbr_train.json`` (:class:`TrainingFBR`) that ``eval`` compares test FBRs with.

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
pooled over folds. Cases outside it are flagged (``fbr_outside_training``, :mod:`nnunet_robustness.analysis.fbr`).

Torch-free: the trainers (``nnunet_robustness.trainers.fbr``) write the log through this module,
``eval`` reads it without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_json, read_json

FBR_RECORD_SUFFIX = ".fbr.json"
TRAINING_LOG = "fbr_train.json"
TRAINING_LOG_FORMAT = 1
HISTOGRAM_EDGES: tuple[float, ...] = tuple(np.round(np.linspace(0, 1, 21), 2).tolist())
KINDS = ("network", "sampled")


def foreground_fraction(label: Any, ignore_label: int | None = None) -> float:
    """Foreground voxels / annotated voxels of a label map or patch (numpy array or torch tensor, any
    shape): labels > 0 are foreground; the ignore label is neither foreground nor counted; negative
    values (nnU-Net's -1 padding) are background. NaN when nothing is annotated."""
    if hasattr(label, "detach"):  # a torch tensor; duck-typed so that this module needs no torch
        label = label.detach().cpu().numpy()
    label = np.asarray(label)
    if ignore_label is None:
        annotated_voxels = label.size
        foreground = np.count_nonzero(label > 0)
    else:
        annotated = label != ignore_label
        annotated_voxels = int(np.count_nonzero(annotated))
        foreground = np.count_nonzero((label > 0) & annotated)
    return float(foreground) / annotated_voxels if annotated_voxels else math.nan


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
    record = read_json(path, "context record")
    try:
        return float(record["fbr"])
    except (KeyError, TypeError, ValueError):
        raise UserInputError(f"{path}: context record without a numeric 'fbr'; re-run `nnunet-robust run` for "
                             "this condition") from None


# --- the training log ----------------------------------------------------------------------------------

def summarize(values: Sequence[float]) -> dict[str, Any]:
    """One epoch's patches of one kind: n, mean, min, max, percentiles and the histogram."""
    array = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if not array.size:
        return {"n": 0, "mean": None, "min": None, "max": None, "p05": None, "p50": None, "p95": None,
                "histogram": [0] * (len(HISTOGRAM_EDGES) - 1)}
    counts, _ = np.histogram(array, bins=np.asarray(HISTOGRAM_EDGES))
    p05, p50, p95 = np.percentile(array, [5, 50, 95])
    return {"n": int(array.size), "mean": float(array.mean()), "min": float(array.min()), "max": float(array.max()),
            "p05": float(p05), "p50": float(p50), "p95": float(p95), "histogram": counts.tolist()}


def pooled(epochs: Sequence[dict], kind: str) -> dict[str, Any]:
    """Pooled over epochs: exact min/max/mean, summed histogram."""
    entries = [e[kind] for e in epochs if e[kind]["n"]]
    if not entries:
        return summarize([])
    n = sum(e["n"] for e in entries)
    return {"n": n, "mean": sum(e["mean"] * e["n"] for e in entries) / n,
            "min": min(e["min"] for e in entries), "max": max(e["max"] for e in entries),
            "histogram": np.sum([e["histogram"] for e in entries], axis=0).astype(int).tolist()}


@dataclass(frozen=True)
class TrainingFBR:
    """``<fold folder>/fbr_train.json``: the foreground fraction of every training patch, per epoch
    (``epochs``: ``{"epoch", "network": summary, "sampled": summary}``), written by the fg trainers."""

    trainer: str
    configuration: str
    fold: int | str
    oversample_foreground_percent: float
    batch_size: int
    patch_size: list[int]
    epochs: list[dict] = field(default_factory=list)
    format: int = TRAINING_LOG_FORMAT

    DEFINITION = ("foreground voxels / annotated voxels per training patch; network: target after augmentation "
                  "(what the loss sees); sampled: centre final-size patch of the sampled crop before augmentation "
                  "(what oversampling controls)")

    def overall(self, kind: str) -> dict[str, Any]:
        return pooled(self.epochs, kind)

    @property
    def network_range(self) -> tuple[float, float] | None:
        """(min, max) foreground fraction of the patches the network was trained on, None without patches."""
        network = self.overall("network")
        return (float(network["min"]), float(network["max"])) if network["n"] else None

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "trainer": self.trainer, "configuration": self.configuration,
                "fold": self.fold, "oversample_foreground_percent": self.oversample_foreground_percent,
                "batch_size": self.batch_size, "patch_size": list(self.patch_size), "definition": self.DEFINITION,
                "histogram_edges": list(HISTOGRAM_EDGES), "overall": {k: self.overall(k) for k in KINDS},
                "epochs": self.epochs}

    @classmethod
    def read(cls, path: str | Path) -> "TrainingFBR":
        path = Path(path)
        data = read_json(path, "training FBR log")
        try:
            epochs = [dict(e) for e in data["epochs"]]
            for epoch in epochs:
                for kind in KINDS:
                    if not isinstance(epoch[kind]["n"], int):
                        raise TypeError(f"epoch {epoch.get('epoch')}: {kind} n is not an int")
            return cls(str(data["trainer"]), str(data["configuration"]), data["fold"],
                       float(data["oversample_foreground_percent"]), int(data["batch_size"]),
                       [int(s) for s in data["patch_size"]], epochs, int(data.get("format", TRAINING_LOG_FORMAT)))
        except (KeyError, TypeError, ValueError) as e:
            raise UserInputError(f"{path}: not a training FBR log ({type(e).__name__}: {e}); it is written by the "
                                 "_fgXXX trainers") from None

    def write(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())


def training_fbr_range(model_folder: Path, folds: Sequence[Any] | None = None) -> dict | None:
    """``{"low", "high", "logs"}`` over the folds' ``fbr_train.json`` (patches the network saw), or None
    when no fold has a log (a trainer without FBR logging)."""
    model_folder = Path(model_folder)
    folders = ([model_folder / f"fold_{f}" for f in folds] if folds is not None
               else sorted(model_folder.glob("fold_*")))
    ranges, logs = [], []
    for folder in folders:
        path = folder / TRAINING_LOG
        if path.is_file() and (network := TrainingFBR.read(path).network_range) is not None:
            ranges.append(network)
            logs.append(str(path))
    if not logs:
        return None
    return {"low": min(low for low, _ in ranges), "high": max(high for _, high in ranges), "logs": logs}

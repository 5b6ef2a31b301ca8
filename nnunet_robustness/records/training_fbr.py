"""``<fold folder>/fbr_train.json``: the foreground fraction of the training patches, per epoch.

The fg trainers (:mod:`nnunet_robustness.trainers.fbr_logging`) measure every patch and rewrite this log after
each epoch; ``eval`` reads the range of the patches the network was trained on
(:func:`training_fbr_range`) and flags test cases outside it (:mod:`nnunet_robustness.analysis.fbr`).
Torch-free, so ``eval`` reads it without loading the training stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_json, read_json

TRAINING_LOG = "fbr_train.json"
TRAINING_LOG_FORMAT = 1
HISTOGRAM_EDGES: tuple[float, ...] = tuple(np.round(np.linspace(0, 1, 21), 2).tolist())
KINDS = ("network", "sampled")


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

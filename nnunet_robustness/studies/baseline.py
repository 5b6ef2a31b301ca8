"""The trivial baseline a model must beat to have learned anything: an image-independent prediction.

Three image-independent predictions per label, all fitted on the *training* labels only:

- **prior mask**: the voxel-wise frequency of the label over the training cases, thresholded at ``t``;
  ``t`` (a grid of 0.05 ... 0.95) maximises the mean Dice on the training labels. It is what a network
  that ignores the image and learns only where the structure usually is would predict.
- **everything**: the whole image is the label (scores where the structure fills most of the image);
- **nothing**: an empty prediction (scores 1 only on cases without the structure, by eval's policy).

The baseline is the one of the three with the highest mean training Dice; its Dice on each *test*
case (the same per-label Dice and empty-mask policy as ``eval``, :func:`nnunet_robustness.metrics.masks.dice`,
averaged over the labels) is what a model is compared with. A model whose in-distribution Dice does not
exceed it (paired, 95 % interval above 0) "did not learn the task".

The prior mask needs training labels of one shape (the seed studies' synthetic images are); with
mixed shapes only everything / nothing are fitted, and the record says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nnunet_robustness.metrics.masks import dice

THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
PRIOR, EVERYTHING, NOTHING = "prior mask", "everything", "nothing"


@dataclass
class LabelBaseline:
    """The image-independent prediction chosen for one label."""

    label: int
    strategy: str
    threshold: float | None  # prior mask only
    training_dice: float
    mask: np.ndarray | None = field(default=None, repr=False)  # prior mask only

    def predict(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.strategy == PRIOR and self.mask is not None and self.mask.shape == tuple(shape):
            return self.mask
        return np.full(shape, self.strategy == EVERYTHING)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "strategy": self.strategy, "threshold": self.threshold,
                "training_dice": self.training_dice}


def _mean_dice(references: Sequence[np.ndarray], prediction_of) -> float:
    return float(np.mean([dice(r, prediction_of(r.shape)) for r in references]))


def fit_label(label: int, training: Sequence[np.ndarray]) -> LabelBaseline:
    """The best of prior mask / everything / nothing for ``label`` on the training label maps."""
    references = [np.asarray(t) == label for t in training]
    candidates = [LabelBaseline(label, EVERYTHING, None, _mean_dice(references, lambda s: np.ones(s, bool))),
                  LabelBaseline(label, NOTHING, None, _mean_dice(references, lambda s: np.zeros(s, bool)))]
    if len({r.shape for r in references}) == 1:
        frequency = np.mean(np.stack(references), axis=0)
        for t in THRESHOLDS:
            mask = frequency >= t
            candidates.append(LabelBaseline(label, PRIOR, t, _mean_dice(references, lambda s, m=mask: m), mask))
    # ties go to the simplest prediction (everything, nothing, then the lowest threshold)
    return max(candidates, key=lambda c: c.training_dice)


@dataclass
class TrivialBaseline:
    """Per label, the image-independent prediction fitted on the training labels; scores test cases."""

    labels: list[LabelBaseline]
    num_training: int
    note: str = ""

    def case_dice(self, reference: np.ndarray) -> float:
        """Mean over the labels of the baseline's Dice on one test label map (eval's foreground mean)."""
        reference = np.asarray(reference)
        return float(np.mean([dice(reference == b.label, b.predict(reference.shape)) for b in self.labels]))

    def to_json(self) -> dict[str, Any]:
        return {"labels": [b.to_json() for b in self.labels], "num_training": self.num_training, "note": self.note}


def fit(training: Sequence[np.ndarray], labels: Sequence[int]) -> TrivialBaseline:
    note = "" if len({np.shape(t) for t in training}) == 1 else \
        "training label maps differ in shape: no prior mask, only everything / nothing"
    return TrivialBaseline([fit_label(label, training) for label in labels], len(training), note)


def _read(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def dataset_baseline(raw: Path, test_cases: Sequence[str] | None = None) -> tuple[TrivialBaseline, dict[str, float]]:
    """The baseline of an nnU-Net raw dataset (fitted on ``labelsTr``) and its Dice on each case of
    ``labelsTs`` (or the named ones)."""
    raw = Path(raw)
    meta = json.loads((raw / "dataset.json").read_text())
    ending = meta["file_ending"]
    labels = sorted(int(v) for k, v in meta["labels"].items() if k != "background" and not isinstance(v, list))
    training = [_read(p) for p in sorted((raw / "labelsTr").glob(f"*{ending}"))]
    baseline = fit(training, labels)
    scores = {}
    for path in sorted((raw / "labelsTs").glob(f"*{ending}")):
        case = path.name[: -len(ending)]
        if test_cases is None or case in test_cases:
            scores[case] = baseline.case_dice(_read(path))
    return baseline, scores


def summary(baseline: TrivialBaseline, scores: dict[str, float], cases: Sequence[str]) -> dict[str, Any]:
    """The record ``study.json`` keeps: what was fitted and its mean Dice on ``cases``."""
    chosen = [scores[c] for c in cases if c in scores]
    return {**baseline.to_json(), "test_cases": len(chosen),
            "test_dice": float(np.mean(chosen)) if chosen else None}


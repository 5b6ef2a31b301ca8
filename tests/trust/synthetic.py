"""Synthetic data for the trust tests: per-case features with a known Dice distribution, voxel
probabilities with known calibration, and tiny nnU-Net-style prediction folders (npz + nii.gz)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from nnunet_robustness.conditions import Condition
from tests.helpers.prediction_folders import SPACING, reference_case, write_dataset_json, write_label, write_manifest


def dice_regression_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Features (uncertainty-like) and a Dice whose mean falls and whose spread grows with uncertainty:
    heteroscedastic, as real per-case Dice is."""
    uncertainty = rng.uniform(0, 1, n)
    nuisance = rng.normal(size=n)
    noise = rng.normal(size=n) * (0.02 + 0.12 * uncertainty)
    dice = np.clip(0.92 - 0.35 * uncertainty + noise, 0, 1)
    return np.column_stack([uncertainty, nuisance]), dice


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=0, keepdims=True))
    return exp / exp.sum(axis=0, keepdims=True)


def noisy_probabilities(label: np.ndarray, n_classes: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Softmax of smoothed one-hot logits plus smooth noise: errors at boundaries, more with ``noise``."""
    one_hot = np.stack([label == c for c in range(n_classes)]).astype(float)
    logits = np.stack([ndimage.gaussian_filter(4.0 * channel, 1.0) for channel in one_hot])
    logits += noise * np.stack([ndimage.gaussian_filter(rng.normal(size=label.shape), 1.0) * 3
                                for _ in range(n_classes)])
    return softmax(logits).astype(np.float32)


def write_prediction_study(root: Path, n_cases: int, conditions: Sequence[tuple[str, float]], n_folds: int,
                           seed: int, prefix: str) -> dict[str, Path]:
    """``labels/``, ``dataset.json`` and one prediction folder per fold in ``run``'s layout (run.json,
    ``<condition>/<case>.nii.gz`` + ``.npz``). Each case gets its own noise level; a condition adds
    its extra noise (a corruption)."""
    rng = np.random.default_rng(seed)
    dataset_json = write_dataset_json(root / "dataset.json", {"background": 0, "organ": 1, "tumour": 2})
    cases = [f"{prefix}_{i:03d}" for i in range(n_cases)]
    folds = [root / f"pred_fold{f}" for f in range(n_folds)]
    for case in cases:
        label = reference_case(rng)
        write_label(root / "labels" / f"{case}.nii.gz", label, SPACING)
        base_noise = rng.uniform(0.2, 1.6)
        for name, extra in conditions:
            for fold in folds:
                probabilities = noisy_probabilities(label, 3, base_noise + extra, rng)
                write_label(fold / name / f"{case}.nii.gz", probabilities.argmax(0), SPACING)
                np.savez_compressed(fold / name / f"{case}.npz", probabilities=probabilities)
    for fold in folds:
        write_manifest(fold, [Condition.from_folder_name(n) for n, _ in conditions], cases, fold.name)
    return {"labels": root / "labels", "dataset_json": dataset_json, "folds": folds}

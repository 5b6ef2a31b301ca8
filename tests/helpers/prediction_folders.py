"""Tiny nnU-Net-style folders for evaluation tests: label maps written with SimpleITK, a dataset.json,
and prediction folders in the layouts ``nnunet-robust eval`` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from nnunet_robustness.conditions import Condition
from nnunet_robustness.records.run_manifest import RunManifest

SPACING = (2.5, 0.8, 1.1)  # anisotropic on purpose, array axis order
SHAPE = (12, 24, 20)


def write_label(path: Path, array: np.ndarray, spacing: Sequence[float]) -> Path:
    """Write a label map; ``spacing`` in array axis order (nnU-Net reads it back in that order)."""
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)
    return path


def write_dataset_json(path: Path, labels: dict, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 1,
                                "file_ending": ".nii.gz", **extra}))
    return path


def ellipsoid(shape: Sequence[int], center: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1


def reference_case(rng: np.random.Generator, shape: Sequence[int] = SHAPE) -> np.ndarray:
    """Organ (1) with a tumour (2) inside it."""
    center = [s / 2 + rng.uniform(-1, 1) for s in shape]
    label = ellipsoid(shape, center, [s * rng.uniform(0.25, 0.35) for s in shape]).astype(np.uint8)
    label[ellipsoid(shape, center, [s * 0.12 for s in shape]) & (label == 1)] = 2
    return label


def degrade(label: np.ndarray, rng: np.random.Generator, strength: int) -> np.ndarray:
    """A plausible prediction: organ eroded/shifted by ``strength`` voxels, some tumour noise."""
    out = label.copy()
    if strength:
        organ = np.roll(label > 0, strength, axis=1)
        organ = ndimage.binary_erosion(organ, iterations=max(1, strength // 2))
        out = np.where(organ, np.maximum(out, 1), 0).astype(np.uint8)
        out[(label == 2) & (rng.random(label.shape) < 0.1 * strength)] = 1
    return out


def write_manifest(folder: Path, conditions: Sequence[Condition], cases: Sequence[str], model: str = "A",
                   parameters: dict | None = None) -> None:
    """The run.json ``run`` would write for these predictions (of a model folder that does not exist)."""
    RunManifest(model={"model_folder": str(folder.parent / f"model_{model}"), "folds": None}, seed=0,
                save_probabilities=False, file_ending=".nii.gz", conditions=tuple(conditions),
                cases=tuple(cases), parameters=parameters or {}).write(folder)


def write_study(root: Path, n_cases: int = 4, conditions: Sequence[tuple[str, str | None, int]] = (
        ("clean", None, 0), ("noise_sev1", "noise", 1), ("noise_sev2", "noise", 2)),
        models: Sequence[str] = ("A", "B"), seed: int = 0, manifest: bool = True) -> dict[str, Path]:
    """labelsTs, dataset.json and one prediction folder per model (``run``'s layout with run.json,
    or plain condition sub-folders). Model ``B`` degrades one voxel more than ``A``."""
    rng = np.random.default_rng(seed)
    cases = [f"case_{i:03d}" for i in range(n_cases)]
    references = {case: reference_case(rng) for case in cases}
    for case, label in references.items():
        write_label(root / "labelsTs" / f"{case}.nii.gz", label, SPACING)
    write_dataset_json(root / "dataset.json", {"background": 0, "organ": 1, "tumour": 2})
    folders = {}
    for extra, model in enumerate(models):
        folder = root / f"pred_{model}"
        for name, family, severity in conditions:
            for case in cases:
                write_label(folder / name / f"{case}.nii.gz",
                            degrade(references[case], rng, severity + extra), SPACING)
        if manifest:
            write_manifest(folder, [Condition(n, f, s) for n, f, s in conditions], cases, model)
        folders[model] = folder
    return folders


def add_views(folder: Path) -> None:
    """A view per prediction, as run writes them (the prediction's own grid, 2D slice of a volume)."""
    from nnunet_robustness.records.item_view import ItemView

    for prediction in Path(folder).rglob("*.nii.gz"):
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(prediction))).astype(np.float32)
        image = array[None] if array.ndim == 3 else array[None, None]
        ItemView.of(image, (0.0, 2.0), image.astype(np.uint8)).write(prediction.parent,
                                                                       prediction.name[: -len(".nii.gz")])

"""Tiny synthetic nnU-Net raw datasets for tests: bright noisy blobs (one label) on a noisy background."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _blob_case(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=0).astype(np.float32)
    center = np.array([rng.uniform(0.35 * s, 0.65 * s) for s in shape], dtype=np.float32)
    radii = np.array([rng.uniform(0.15 * s, 0.3 * s) for s in shape], dtype=np.float32)
    distance = np.sqrt((((grid - center.reshape(-1, *[1] * len(shape))) / radii.reshape(-1, *[1] * len(shape))) ** 2)
                       .sum(0))
    label = (distance <= 1).astype(np.uint8)
    image = 100 + 60 * label + rng.normal(0, 15, size=shape)
    return image.astype(np.float32), label


def write_nnunet_dataset(raw_root: Path, dataset_id: int, dim: int, n_train: int = 6, n_test: int = 2,
                         size: int | None = None, seed: int = 0, spacing: float = 1.0) -> Path:
    """Write ``DatasetXXX_Blobs{dim}D`` with imagesTr/labelsTr/imagesTs/labelsTs/dataset.json (.nii.gz)."""
    size = size or (48 if dim == 2 else 32)
    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_Blobs{dim}D"
    rng = np.random.default_rng(seed)
    for split, n in (("Tr", n_train), ("Ts", n_test)):
        (folder / f"images{split}").mkdir(parents=True, exist_ok=True)
        (folder / f"labels{split}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            case = f"blob{split.lower()}_{i:03d}"
            image, label = _blob_case((size,) * dim, rng)
            for array, path in ((image, folder / f"images{split}" / f"{case}_0000.nii.gz"),
                                (label, folder / f"labels{split}" / f"{case}.nii.gz")):
                itk = sitk.GetImageFromArray(array)
                itk.SetSpacing((spacing,) * dim)
                sitk.WriteImage(itk, str(path))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "blob": 1},
        "numTraining": n_train,
        "file_ending": ".nii.gz",
        "name": folder.name,
    }, indent=2))
    return folder

"""Synthetic raters: several plausible annotations of each test case, made by smoothly deforming its
reference label (``make-dataset textures --raters N``).

Each rater's label is the reference sampled through a smooth random displacement field ``u``:

    rater(x) = reference(x + u(x))

``u`` is Gaussian white noise, one component per axis, smoothed with a Gaussian of standard deviation
``smoothness_mm`` and scaled so that its largest magnitude over the image is exactly
``max_displacement_mm``. Hence every boundary point of a rater's label lies within
``max_displacement_mm`` of the reference boundary (up to about a voxel more from resampling), and the size
of the disagreement is set by one number per rater. Labels are resampled with linear interpolation
of their one-hot form and an argmax (a threshold at 0.5 for binary masks), which keeps boundaries
smooth and values within the reference's label set.

Determinism: the field of rater ``r`` for a case comes from ``SeedSequence([seed, RATER_STREAM,
case_key, r])``. For the texture datasets ``case_key`` is the test case's number, so rater ``r``
draws the same field for case ``i`` at every alpha (the paired design of the generator); changing
the displacement size rescales the same field rather than drawing a new one.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from nnunet_robustness import __version__
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_path, atomic_write_json

RATER_STREAM = 7  # keeps the rater streams apart from the generator's (seed, split, case) streams
RATERS_GENERATION_FILE = "raters_generation.json"
REFERENCE_FOLDER = "labelsTs"


def rater_folder_name(rater: int) -> str:
    """``labelsTs_rater1`` for rater 1 (raters are numbered from 1, like the folders)."""
    return f"{REFERENCE_FOLDER}_rater{rater}"


def smooth_displacement_field(shape: Sequence[int], max_displacement_mm: float, smoothness_mm: float,
                              spacing: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """A displacement field in voxels, shape ``(ndim, *shape)``, whose largest Euclidean magnitude
    in mm is ``max_displacement_mm`` (0 gives the zero field)."""
    spacing = np.asarray(spacing, dtype=np.float64)
    sigma_voxels = smoothness_mm / spacing
    field_mm = np.stack([ndimage.gaussian_filter(rng.standard_normal(tuple(shape)), sigma_voxels, mode="reflect")
                         for _ in shape])
    magnitude = np.sqrt(np.sum(field_mm ** 2, axis=0)).max()
    field_mm *= max_displacement_mm / magnitude if magnitude > 0 else 0.0
    return field_mm / spacing.reshape((-1,) + (1,) * len(shape))


def warp_label(label: np.ndarray, displacement_voxels: np.ndarray) -> np.ndarray:
    """``label(x + u(x))`` with linear interpolation of each label's indicator and an argmax; the
    result has ``label``'s shape and dtype and only values that occur in ``label``."""
    coordinates = np.indices(label.shape, dtype=np.float64) + displacement_voxels
    values = np.unique(label)
    if values.size == 1:
        return label.copy()
    # mode="nearest": the image border continues outwards, so no background is invented at the edge
    scores = np.stack([ndimage.map_coordinates((label == v).astype(np.float32), coordinates, order=1, mode="nearest")
                       for v in values])
    return values[np.argmax(scores, axis=0)].astype(label.dtype)  # ties: the lower label (background first)


def synthetic_rater_label(label: np.ndarray, max_displacement_mm: float, smoothness_mm: float,
                          spacing: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """One synthetic rater's annotation of ``label`` (see the module docstring)."""
    field = smooth_displacement_field(label.shape, max_displacement_mm, smoothness_mm, spacing, rng)
    return warp_label(label, field)


def case_key_of(identifier: str) -> int:
    """A stable integer for a case name (for datasets without a generator case number)."""
    return zlib.crc32(identifier.encode("utf-8"))


def rater_rng(seed: int, case_key: int, rater: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, RATER_STREAM, case_key, rater]))


@dataclass(frozen=True)
class RatersConfig:
    """Everything that determines the rater labels (recorded in RATERS_GENERATION_FILE)."""

    num_raters: int
    max_displacement_mm: tuple[float, ...]  # one per rater
    smoothness_mm: float | None  # None: 10 % of the shortest image side, per case
    seed: int

    @classmethod
    def from_cli(cls, num_raters: int, displacement_mm: Sequence[float], smoothness_mm: float | None,
                 seed: int) -> "RatersConfig":
        """``displacement_mm``: one value for every rater, or one per rater."""
        if num_raters < 2:
            raise UserInputError(f"--raters {num_raters}: at least 2 raters are needed for inter-rater agreement")
        if len(displacement_mm) not in (1, num_raters):
            raise UserInputError(f"--rater-displacement {' '.join(map(str, displacement_mm))}: give one value for "
                                 f"all raters or one per rater ({num_raters})")
        for value in displacement_mm:
            if not math.isfinite(value) or value < 0:
                raise UserInputError(f"--rater-displacement {value}: must be a finite number of mm >= 0")
        if smoothness_mm is not None and (not math.isfinite(smoothness_mm) or smoothness_mm <= 0):
            raise UserInputError(f"--rater-smoothness {smoothness_mm}: must be a positive number of mm")
        displacements = tuple(float(d) for d in displacement_mm) * (num_raters if len(displacement_mm) == 1 else 1)
        return cls(num_raters, displacements, smoothness_mm, seed)

    def smoothness_for(self, shape: Sequence[int], spacing: Sequence[float]) -> float:
        if self.smoothness_mm is not None:
            return self.smoothness_mm
        return 0.1 * min(n * s for n, s in zip(shape, spacing))

    def parameters(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def write_rater_labels(dataset_folder: Path, config: RatersConfig, file_ending: str = ".nii.gz",
                       case_keys: Mapping[str, int] | None = None) -> list[Path]:
    """Write ``labelsTs_rater1..N`` next to ``labelsTs`` (same case names and geometry) and record the
    parameters in RATERS_GENERATION_FILE. Returns the rater folders.

    ``case_keys`` maps case names to the integers that seed their fields (default: a hash of the
    name). Existing rater files are kept when the recorded parameters are the same; different
    parameters are refused rather than mixed.
    """
    dataset_folder = Path(dataset_folder)
    reference_folder = dataset_folder / REFERENCE_FOLDER
    references = sorted(p for p in reference_folder.glob(f"*{file_ending}") if not p.name.startswith(".")) \
        if reference_folder.is_dir() else []
    if not references:
        raise UserInputError(f"{reference_folder} has no {file_ending} labels to derive raters from "
                             "(the dataset needs test cases: --num-test > 0)")
    record_path = dataset_folder / RATERS_GENERATION_FILE
    if record_path.is_file():
        try:
            previous = json.loads(record_path.read_text())["parameters"]
        except (ValueError, KeyError) as e:
            raise UserInputError(f"{record_path} is unreadable ({e}); delete it and the labelsTs_rater* folders") from e
        if previous != config.parameters():
            raise UserInputError(f"{dataset_folder} has rater labels made with other parameters ({record_path}); "
                                 "delete the labelsTs_rater* folders and that file to regenerate them")
    atomic_write_json(record_path, _record(config, complete=False))

    folders = [dataset_folder / rater_folder_name(r) for r in range(1, config.num_raters + 1)]
    for reference_path in references:
        identifier = reference_path.name[: -len(file_ending)]
        key = case_keys[identifier] if case_keys is not None and identifier in case_keys else case_key_of(identifier)
        targets = [folder / reference_path.name for folder in folders]
        if all(t.is_file() for t in targets):
            continue
        image = sitk.ReadImage(str(reference_path))
        label = sitk.GetArrayFromImage(image)
        spacing = tuple(reversed(image.GetSpacing()))  # array axis order
        smoothness = config.smoothness_for(label.shape, spacing)
        for rater, target in enumerate(targets, start=1):
            rater_label = synthetic_rater_label(label, config.max_displacement_mm[rater - 1], smoothness, spacing,
                                                rater_rng(config.seed, key, rater))
            out = sitk.GetImageFromArray(rater_label)
            out.CopyInformation(image)
            with atomic_path(target) as tmp:
                sitk.WriteImage(out, str(tmp), True)
    atomic_write_json(record_path, _record(config, complete=True))
    return folders


def _record(config: RatersConfig, complete: bool) -> dict:
    return {
        "generator": "nnunet-robust make-dataset --raters",
        "nnunet_robustness_version": __version__,
        "definition": "rater_k(x) = reference(x + u_k(x)); u_k: Gaussian-smoothed white noise (sigma = "
                      "smoothness_mm) scaled to a largest magnitude of max_displacement_mm[k-1]; linear "
                      "interpolation of the one-hot labels, argmax",
        "folders": [rater_folder_name(r) for r in range(1, config.num_raters + 1)],
        "parameters": config.parameters(),
        "complete": complete,
    }

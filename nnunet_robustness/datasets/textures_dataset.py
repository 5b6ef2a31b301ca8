"""Synthetic texture-blend segmentation datasets in nnU-Net's raw format.

Each case has one or several random smooth blobs (the foreground, label 1) on a background texture B;
inside the blobs the image is ``(1 - alpha) * A + alpha * B`` for a foreground texture A. alpha = 0
shows pure A inside the blobs (easiest); alpha = 1 makes the foreground identical to the background
(impossible). See docs/datasets.md for the protocol and file layout.

Determinism: case number ``i`` of a split draws its blobs and texture patches from
``numpy.random.SeedSequence([seed, split, i])``, independently of alpha and of the texture choice.
Test case ``i`` therefore has the same shapes and texture patches at every test alpha (a paired design:
levels differ in alpha only), and so does training case ``i`` of datasets built with another training
alpha. Within one training set spanning several alphas, cases are numbered across levels and all
differ.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_robustness import __version__
from nnunet_robustness.datasets.blobs import random_blob_mask
from nnunet_robustness.datasets.complexity import case_complexity
from nnunet_robustness.datasets.raw_dataset import SPLIT_FOLDERS
from nnunet_robustness.datasets.texture_sources import get_texture
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_path, atomic_write_json, read_json

FILE_ENDING = ".nii.gz"
GENERATION_FILE = "textures_generation.json"
DEFAULT_ALPHAS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Photographs, as in the study, where they exist (2D); a procedural pair with a similar trend in 3D.
DEFAULT_TEXTURES: dict[int, tuple[str, str]] = {2: ("brick", "grass"), 3: ("noise-coarse", "noise-fine")}
SPLIT_CODES = {"train": 0, "test": 1}
MIN_IMAGE_SIDE = 16  # LBP(24, 3) drops a 3-pixel border; smaller images leave too little to measure


@dataclass(frozen=True)
class TexturesDatasetConfig:
    """Everything that determines the generated dataset (all of it is recorded in GENERATION_FILE)."""

    dataset_id: int
    name: str
    shape: tuple[int, ...]
    texture_foreground: str
    texture_background: str
    train_alphas: tuple[float, ...]
    test_alphas: tuple[float, ...]
    num_train_per_alpha: int
    num_test_per_alpha: int
    blobs_per_image: tuple[int, int]
    blob_diameter: tuple[float, float]
    seed: int

    @property
    def folder_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.name}"

    def validate(self) -> None:
        """Raise UserInputError naming the first argument value that cannot work."""
        if not 1 <= self.dataset_id <= 999:
            raise UserInputError(f"dataset id {self.dataset_id} must be between 1 and 999")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", self.name):
            raise UserInputError(f"dataset name {self.name!r} may only contain letters, digits, '_' and '-'")
        if len(self.shape) not in (2, 3) or min(self.shape) < MIN_IMAGE_SIDE:
            raise UserInputError(f"--shape {' '.join(map(str, self.shape))}: give 2 or 3 sizes, "
                                 f"each at least {MIN_IMAGE_SIDE}")
        get_texture(self.texture_foreground, len(self.shape))
        get_texture(self.texture_background, len(self.shape))
        for option, alphas in (("--train-alpha", self.train_alphas), ("--test-alpha", self.test_alphas)):
            _validate_alphas(option, alphas)
        if not self.train_alphas:
            raise UserInputError("--train-alpha: at least one training alpha is needed")
        if self.num_train_per_alpha < 1:
            raise UserInputError(f"--num-train {self.num_train_per_alpha} must be at least 1")
        if self.num_test_per_alpha < 0:
            raise UserInputError(f"--num-test {self.num_test_per_alpha} must not be negative")
        if self.num_train_per_alpha > 9999 or self.num_test_per_alpha > 9999:
            raise UserInputError("--num-train/--num-test: at most 9999 cases per alpha level")
        low, high = self.blobs_per_image
        if not 1 <= low <= high:
            raise UserInputError(f"--blobs {low} {high}: need 1 <= MIN <= MAX")
        low_d, high_d = self.blob_diameter
        if not 0 < low_d <= high_d <= 1:
            raise UserInputError(f"--blob-diameter {low_d} {high_d}: need 0 < MIN <= MAX <= 1 "
                                 "(fractions of the shortest image side)")
        if self.seed < 0:
            raise UserInputError(f"--seed {self.seed} must not be negative")
        needed, available = case_memory_bytes(self.shape), available_memory_bytes()
        if available is not None and needed > available:
            raise UserInputError(f"--shape {' '.join(map(str, self.shape))}: one case needs about "
                                 f"{needed / 2**30:.1f} GiB while rendering, {available / 2**30:.1f} GiB is available")

    def parameters(self) -> dict[str, Any]:
        """JSON form of the configuration (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


# Peak bytes per voxel while one case is rendered (float64 textures and blend, blob geometry, the
# written image and label): tracemalloc peak of render_case was 68-76 bytes per voxel on 64^3, 96^3
# and 512^2 cases; rounded up.
RENDER_BYTES_PER_VOXEL = 80


def case_memory_bytes(shape: tuple[int, ...]) -> int:
    return int(np.prod(np.asarray(shape, dtype=np.float64)) * RENDER_BYTES_PER_VOXEL)


def available_memory_bytes() -> int | None:
    """Memory the system can give now: Linux's MemAvailable (free memory plus the page cache it can
    drop; sysconf's free pages alone leave that cache out and would refuse shapes that fit), else
    sysconf's free pages; None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _validate_alphas(option: str, alphas: tuple[float, ...]) -> None:
    for alpha in alphas:
        if not 0.0 <= alpha <= 1.0:
            raise UserInputError(f"{option} {alpha}: alpha must lie in [0, 1]")
        if not math.isclose(alpha * 100, round(alpha * 100), abs_tol=1e-6):
            raise UserInputError(f"{option} {alpha}: alpha must be a multiple of 0.01 (case names "
                                 "encode it in percent)")
    percents = [round(a * 100) for a in alphas]
    if len(set(percents)) != len(percents):
        raise UserInputError(f"{option} {' '.join(map(str, alphas))}: an alpha is listed twice")


@dataclass(frozen=True)
class CasePlan:
    identifier: str
    split: str  # "train" or "test"
    alpha: float
    seed_index: int  # case number that, with the seed and split, fixes shapes and texture patches


def plan_cases(config: TexturesDatasetConfig) -> list[CasePlan]:
    """All cases of the dataset in a fixed order: training cases first, then test cases."""
    plans = []
    for level, alpha in enumerate(config.train_alphas):
        for i in range(config.num_train_per_alpha):
            plans.append(CasePlan(_case_identifier("train", alpha, i), "train", alpha,
                                  level * config.num_train_per_alpha + i))
    for alpha in config.test_alphas:
        for i in range(config.num_test_per_alpha):
            plans.append(CasePlan(_case_identifier("test", alpha, i), "test", alpha, i))
    return plans


def _case_identifier(split: str, alpha: float, number: int) -> str:
    return f"{'tr' if split == 'train' else 'ts'}_a{round(alpha * 100):03d}_{number:04d}"


def _case_random_streams(config: TexturesDatasetConfig,
                         case: CasePlan) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent (geometry, foreground texture, background texture) streams of one case, so that
    changing the textures leaves the shapes alone and vice versa."""
    seeds = np.random.SeedSequence([config.seed, SPLIT_CODES[case.split], case.seed_index]).spawn(3)
    geometry, foreground, background = (np.random.default_rng(s) for s in seeds)
    return geometry, foreground, background


def _draw_num_blobs(config: TexturesDatasetConfig, geometry_rng: np.random.Generator) -> int:
    return int(geometry_rng.integers(config.blobs_per_image[0], config.blobs_per_image[1] + 1))


def case_num_blobs(config: TexturesDatasetConfig, case: CasePlan) -> int:
    """The number of blobs of a case without rendering it (the first draw of its geometry stream)."""
    return _draw_num_blobs(config, _case_random_streams(config, case)[0])


def render_case(config: TexturesDatasetConfig, case: CasePlan) -> tuple[np.ndarray, np.ndarray]:
    """(image, label) of one case, both uint8; identical for identical inputs."""
    geometry_rng, foreground_rng, background_rng = _case_random_streams(config, case)
    num_blobs = _draw_num_blobs(config, geometry_rng)
    mask = random_blob_mask(config.shape, num_blobs, config.blob_diameter, geometry_rng)

    ndim = len(config.shape)
    texture_a = get_texture(config.texture_foreground, ndim).sample(config.shape, foreground_rng)
    texture_b = get_texture(config.texture_background, ndim).sample(config.shape, background_rng)
    blended = np.where(mask, (1.0 - case.alpha) * texture_a + case.alpha * texture_b, texture_b)
    # 8-bit grey levels, like the study's photographs; LBP compares neighbours on these integer levels
    image = np.round(blended * 255).astype(np.uint8)
    return image, mask.astype(np.uint8)


def _write_image(array: np.ndarray, path: Path) -> None:
    # A 2D array becomes a 2D NIfTI image, which nnU-Net's SimpleITKIO reads as a 2D case.
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0,) * array.ndim)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), True)


def _case_paths(folder: Path, case: CasePlan) -> tuple[Path, Path]:
    images, labels = SPLIT_FOLDERS[case.split]
    return (folder / images / f"{case.identifier}_0000{FILE_ENDING}",
            folder / labels / f"{case.identifier}{FILE_ENDING}")


def _check_or_claim_folder(folder: Path, config: TexturesDatasetConfig) -> None:
    """Refuse to mix cases of different parameters in one folder; record the parameters up front so
    an interrupted run is guarded too."""
    generation_file = folder / GENERATION_FILE
    parameters = config.parameters()
    if generation_file.is_file():
        try:
            previous = json.loads(generation_file.read_text())["parameters"]
        except (ValueError, KeyError) as e:
            raise UserInputError(f"{generation_file} is unreadable ({e}); delete {folder} to regenerate") from e
        changed = sorted(key for key in parameters.keys() | previous.keys()
                         if parameters.get(key) != previous.get(key))
        if changed:
            raise UserInputError(f"{folder} was generated with other parameters (differing: "
                                 f"{', '.join(changed)}); use another dataset id/name or delete the folder")
        _remove_stale_temporary_files(folder)
        return
    if folder.exists() and any(folder.iterdir()):
        raise UserInputError(f"{folder} exists and was not written by `make-dataset textures` (no "
                             f"{GENERATION_FILE}); use another dataset id/name or delete the folder")
    atomic_write_json(generation_file, _generation_record(config, cases=None))


def _remove_stale_temporary_files(folder: Path) -> None:
    # A killed run can leave atomic_path's hidden ".NAME.*.tmp.nii.gz" files; nnU-Net lists every file
    # ending in .nii.gz, hidden or not, and would take them for cases.
    for images_name, labels_name in SPLIT_FOLDERS.values():
        for sub in (folder / images_name, folder / labels_name):
            if sub.is_dir():
                for stale in sub.glob(f".*.tmp{FILE_ENDING}"):
                    stale.unlink()


def _check_dataset_id_is_free(output_root: Path, config: TexturesDatasetConfig) -> None:
    # nnU-Net resolves `-d 501` by the number alone, so two folders with one id would be ambiguous.
    if not output_root.is_dir():
        return
    clashes = sorted(p.name for p in output_root.glob(f"Dataset{config.dataset_id:03d}_*")
                     if p.name != config.folder_name)
    if clashes:
        raise UserInputError(f"dataset id {config.dataset_id} is already used by {output_root / clashes[0]}; "
                             "choose another -d")


def _generation_record(config: TexturesDatasetConfig, cases: list[dict] | None) -> dict[str, Any]:
    return {
        "generator": "nnunet-robust make-dataset textures",
        "nnunet_robustness_version": __version__,
        "alpha_meaning": "inside the foreground, image = (1 - alpha) * texture_foreground + alpha * "
                         "texture_background; alpha = 1 makes foreground and background identical",
        "parameters": config.parameters(),
        "complete": cases is not None,
        "cases": cases or [],
    }


def case_alphas(folder: Path, split: str | None = None) -> dict[str, float]:
    """Case -> blend level alpha, from the generation record of a dataset made by ``make-dataset
    textures`` (``folder`` holds its dataset.json), only the cases of ``split`` ("train"/"test") when
    given; empty for a folder without the record."""
    record = Path(folder) / GENERATION_FILE
    if not record.is_file():
        return {}
    try:
        cases = read_json(record, "texture dataset record").get("cases", [])
        return {c["case"]: float(c["alpha"]) for c in cases if split is None or c.get("split") == split}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserInputError(f"{record} is unreadable ({e!r})") from e


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None  # strict JSON has no NaN or Infinity


def _dataset_json(config: TexturesDatasetConfig, num_training: int) -> dict[str, Any]:
    return {
        "name": config.name,
        "description": (f"Synthetic texture blend: foreground texture {config.texture_foreground!r} blended "
                        f"with background texture {config.texture_background!r}; training alpha "
                        f"{list(config.train_alphas)}, test alpha {list(config.test_alphas)}. Per-case "
                        f"alpha and complexity: {GENERATION_FILE}."),
        "reference": "nnunet-robustness `nnunet-robust make-dataset textures`",
        "licence": "Generated data; photographic textures from scikit-image's data (CC0)",
        "channel_names": {"0": "texture"},
        "labels": {"background": 0, "foreground": 1},
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        "nnunet_robustness": {
            "generator": "textures",
            "case_metadata_file": GENERATION_FILE,
            "texture_foreground": config.texture_foreground,
            "texture_background": config.texture_background,
            "train_alpha": list(config.train_alphas),
            "test_alpha": list(config.test_alphas),
            "seed": config.seed,
        },
    }


def count_existing_cases(config: TexturesDatasetConfig, output_root: Path) -> int:
    """How many of the dataset's cases are already on disk (a re-run reuses them)."""
    folder = Path(output_root) / config.folder_name
    return sum(all(path.is_file() for path in _case_paths(folder, case)) for case in plan_cases(config))


def generate_textures_dataset(config: TexturesDatasetConfig, output_root: Path,
                              show_progress: bool = True) -> Path:
    """Write (or finish) the dataset under ``output_root / config.folder_name`` and return its folder.

    Cases whose image and label files both exist are not rewritten (they were produced by the same
    parameters, which the generation file guarantees); their measures are recomputed from the files.
    ``dataset.json`` is written last, so its presence marks a complete dataset.
    """
    config.validate()
    folder = Path(output_root) / config.folder_name
    _check_dataset_id_is_free(Path(output_root), config)
    _check_or_claim_folder(folder, config)
    cases = plan_cases(config)
    if len([c for c in cases if c.split == "train"]) < 5:
        warnings.warn("fewer than 5 training cases: nnU-Net's default 5-fold split needs at least 5 "
                      "(train with fold 'all' instead)", UserWarning, stacklevel=2)

    records = []
    for case in tqdm(cases, desc=f"{config.folder_name}", unit="case", disable=not show_progress):
        image_path, label_path = _case_paths(folder, case)
        if image_path.is_file() and label_path.is_file():
            image = sitk.GetArrayFromImage(sitk.ReadImage(str(image_path)))
            label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
        else:
            image, label = render_case(config, case)
            _write_image(image, image_path)
            _write_image(label, label_path)
        measures = case_complexity(image, label, spacing=(1.0,) * image.ndim, case_name=case.identifier)
        records.append({
            "case": case.identifier,
            "split": case.split,
            "alpha": case.alpha,
            "texture_foreground": config.texture_foreground,
            "texture_background": config.texture_background,
            "num_blobs": case_num_blobs(config, case),
            "texture_disparity_bits": _json_number(measures.texture_disparity_bits),
            "contrast_to_noise": _json_number(measures.contrast_to_noise),
            "foreground_fraction": _json_number(measures.foreground_fraction),
            "foreground_voxels": measures.foreground_voxels,
        })

    atomic_write_json(folder / GENERATION_FILE, _generation_record(config, records))
    num_training = sum(1 for c in cases if c.split == "train")
    atomic_write_json(folder / "dataset.json", _dataset_json(config, num_training))
    return folder


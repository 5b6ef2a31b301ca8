"""What to evaluate: models, conditions, cases, labels/regions, and the checks on the files.

Prediction folders come in three layouts (``docs/evaluation.md``):

1. made by ``nnunet-robust run``: ``<folder>/run.json`` lists the conditions (name, family,
   severity, preset), the cases and the file ending; predictions are ``<folder>/<condition>/<case><ending>``;
2. a folder of condition sub-folders without ``run.json``: each sub-folder holding predictions is a
   condition; ``<family>_sev<k>`` names give family and severity, ``clean`` is severity 0;
3. a folder of predictions: one condition, named after the folder.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from nnunet_robustness.conditions import Condition
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import check_image_file, files_with_ending, read_json
from nnunet_robustness.records.run_manifest import RunManifest


@dataclass(frozen=True)
class ConditionFolder:
    """One set of predictions of a model: a condition and the folder holding its files."""

    condition: Condition
    folder: Path
    parameters: dict | None = None  # what run applied (run.json), None for folders not made by run

    @property
    def name(self) -> str:
        return self.condition.name

    @property
    def family(self) -> str | None:
        return self.condition.family

    @property
    def severity(self) -> float | None:
        return self.condition.severity

    @property
    def preset(self) -> str | None:
        return self.condition.preset

    @property
    def is_clean(self) -> bool:
        return self.condition.is_clean


@dataclass(frozen=True)
class Target:
    """A label (int) or an nnU-Net region (tuple of labels) evaluated as one structure."""

    name: str
    value: int | tuple[int, ...]

    @property
    def key(self) -> str:
        """nnU-Net's key for it in ``summary.json`` (``"1"``, ``"(1, 2)"``)."""
        return str(self.value)

    def mask(self, segmentation: np.ndarray) -> np.ndarray:
        if isinstance(self.value, tuple):
            return np.isin(segmentation, self.value)
        return segmentation == self.value


@dataclass(frozen=True)
class DatasetInfo:
    targets: tuple[Target, ...]
    ignore_label: int | None
    allowed_values: frozenset[int]
    file_ending: str
    content: dict[str, Any]
    path: Path


def load_dataset_json(path: Path) -> DatasetInfo:
    """Labels and regions to evaluate, as nnU-Net's ``LabelManager`` reads them from ``dataset.json``.

    Evaluated: the regions if the dataset is region-based (a ``labels`` entry is a list of several
    labels), else the foreground labels; both as nnU-Net's own evaluation (``compute_metrics_on_folder2``).
    """
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    path = Path(path)
    content = read_json(path, "dataset.json")
    if not isinstance(content, dict):
        raise UserInputError(f"{path}: dataset.json must be a JSON object with 'labels' and 'file_ending'")
    labels = content.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise UserInputError(f"{path}: no 'labels' mapping (name -> label or list of labels)")
    if "file_ending" not in content:
        raise UserInputError(f"{path}: no 'file_ending' entry (e.g. \".nii.gz\")")
    try:
        manager = LabelManager(labels, content.get("regions_class_order"))
    except (AssertionError, RuntimeError, ValueError, TypeError) as e:
        raise UserInputError(f"{path}: labels not usable by nnU-Net: {e or 'invalid label definition'}") from None
    values = manager.foreground_regions if manager.has_regions else manager.foreground_labels
    names = {}
    for name, value in labels.items():
        key = tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else int(value)
        names.setdefault(key, name)
        if isinstance(key, tuple) and len(key) == 1:
            names.setdefault(key[0], name)
    targets = []
    for value in values:
        value = tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else int(value)
        targets.append(Target(names.get(value, f"label_{value}"), value))
    if not targets:
        raise UserInputError(f"{path}: no foreground labels to evaluate")
    allowed = {0, *manager.all_labels}
    if manager.ignore_label is not None:
        allowed.add(int(manager.ignore_label))
    return DatasetInfo(tuple(targets), manager.ignore_label, frozenset(int(v) for v in allowed),
                       str(content["file_ending"]), content, path)


# --- conditions and cases ------------------------------------------------------------------------------

def find_conditions(folder: Path, file_ending: str) -> tuple[list[ConditionFolder], list[str] | None]:
    """The conditions of one model's prediction folder, and the cases its ``run.json`` promises
    (None without a manifest)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"{folder}: prediction folder does not exist")
    manifest = RunManifest.read_if_present(folder)
    if manifest is not None:
        if manifest.file_ending != file_ending:
            raise UserInputError(f"{RunManifest.path(folder)}: predictions end in {manifest.file_ending!r} but "
                                 f"dataset.json says {file_ending!r}")
        conditions = [ConditionFolder(c, folder / c.name, manifest.parameters.get(c.name))
                      for c in manifest.conditions]
        for condition in conditions:
            if not condition.folder.is_dir():
                raise UserInputError(f"{condition.folder}: condition folder listed in {RunManifest.path(folder)} "
                                     "does not exist")
        return conditions, list(manifest.cases)
    if _prediction_files(folder, file_ending):
        return [ConditionFolder(Condition.from_folder_name(folder.resolve().name), folder)], None
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    conditions = [ConditionFolder(Condition.from_folder_name(p.name), p) for p in subfolders
                  if _prediction_files(p, file_ending)]
    if not conditions:
        raise UserInputError(f"{folder}: no predictions ending in {file_ending!r}, neither in the folder nor in "
                             f"condition sub-folders (and no run.json)")
    return conditions, None


def _prediction_files(folder: Path, file_ending: str) -> dict[str, Path]:
    return {p.name[:-len(file_ending)]: p for p in files_with_ending(folder, file_ending)}


@dataclass(frozen=True)
class ModelPredictions:
    name: str
    folder: Path
    conditions: tuple[ConditionFolder, ...]
    files: dict[str, dict[str, Path]]  # condition name -> case -> prediction file


def check_same_cases(folder: Path, found: Iterable[str], expected: Iterable[str], source: str | Path,
                     file_ending: str) -> None:
    """The rule of every reader of prediction folders (eval, calibrate, rate): a condition holds exactly the
    cases that run.json promises (or, without it, those of the first condition). A condition with a case
    missing would be scored on another set of cases than the rest, without a word."""
    missing = sorted(set(expected) - set(found))
    if missing:
        raise UserInputError(f"{Path(folder) / (missing[0] + file_ending)}: missing ({len(missing)} "
                             f"case(s) missing that {source} has); every condition needs the same cases")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise UserInputError(f"{Path(folder) / (extra[0] + file_ending)}: case not in {source}; every condition "
                             "needs the same cases")


def collect_predictions(models: dict[str, Path], reference: Path, file_ending: str
                        ) -> tuple[list[ModelPredictions], list[str], dict[str, Path]]:
    """Check every prediction has a reference and every condition the same cases.

    Returns the models, the sorted evaluated cases, and the reference file of each case.
    """
    reference = Path(reference)
    if not reference.is_dir():
        raise UserInputError(f"{reference}: reference folder does not exist")
    references = _prediction_files(reference, file_ending)
    if not references:
        raise UserInputError(f"{reference}: no reference files ending in {file_ending!r}")
    if not models:
        raise UserInputError("no prediction folders given")
    collected: list[ModelPredictions] = []
    expected_cases: list[str] | None = None
    expected_source = ""
    for model, folder in models.items():
        conditions, manifest_cases = find_conditions(Path(folder), file_ending)
        names = [c.name for c in conditions]
        if len(set(names)) != len(names):
            raise UserInputError(f"{folder}: condition names repeat: {names}")
        files = {}
        for condition in conditions:
            found = _prediction_files(condition.folder, file_ending)
            for case, path in found.items():
                if case not in references:
                    raise UserInputError(f"{path}: no reference {reference / (case + file_ending)} for this "
                                         f"prediction")
            if expected_cases is None:
                # Paired statistics need the same cases everywhere: the first condition (or the
                # manifest) fixes them.
                expected_cases = sorted(manifest_cases) if manifest_cases is not None else sorted(found)
                expected_source = f"{folder / 'run.json'}" if manifest_cases is not None else f"{condition.folder}"
            check_same_cases(condition.folder, found, expected_cases, expected_source, file_ending)
            files[condition.name] = {case: found[case] for case in expected_cases}
        collected.append(ModelPredictions(model, Path(folder), tuple(conditions), files))
    assert expected_cases is not None
    return collected, expected_cases, {case: references[case] for case in expected_cases}


# --- reading -------------------------------------------------------------------------------------------

def reader_writer_for(dataset: DatasetInfo, example_file: Path):
    """nnU-Net's reader for these files (``overwrite_image_reader_writer`` in dataset.json honoured)."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    # nnU-Net prints a traceback for each reader it tries and rejects; keep the terminal clean.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return determine_reader_writer_from_dataset_json(dataset.content, str(example_file), verbose=False)
        except RuntimeError:
            raise UserInputError(f"{example_file}: no nnU-Net reader can read files ending in "
                                 f"{dataset.file_ending!r}") from None


@dataclass(frozen=True)
class Segmentation:
    array: np.ndarray  # integer labels, 2D or 3D
    spacing: tuple[float, ...]
    path: Path
    # world placement (SimpleITK origin and direction cosines) where the reader reports it, else None
    origin: tuple[float, ...] | None = None
    direction: tuple[float, ...] | None = None



def read_segmentation(reader_writer, path: Path, allowed_values: frozenset[int], dataset_json: Path) -> Segmentation:
    """Read a label map with nnU-Net's reader and check its values against dataset.json.

    nnU-Net stores 2D images as one-slice volumes with a placeholder spacing along the first axis;
    those are returned as 2D arrays so that surfaces are contours with lengths in mm.
    """
    check_image_file(path)
    try:
        array, properties = reader_writer.read_seg(str(path))
    except Exception as e:  # noqa: BLE001 - whatever the reader raises, the file is unusable
        raise UserInputError(f"{path}: cannot be read by nnU-Net's {type(reader_writer).__name__}: "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")) from None
    array = np.asarray(array)[0]
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise UserInputError(f"{path}: contains NaN or Inf values; a label map holds whole label numbers")
    spacing = tuple(float(s) for s in properties["spacing"])
    placement = properties.get("sitk_stuff") or {}
    if array.ndim == 3 and array.shape[0] == 1:
        array, spacing = array[0], spacing[1:]
    # nnU-Net's readers return float32 label maps; labels must be whole numbers. They are kept in the
    # smallest integer type that holds them (a 512x512x300 CT label map: 79 MB as uint8, 315 MB as int32),
    # which also makes every mask comparison downstream cheaper.
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    dtype = np.uint8 if low >= 0 and high <= 255 else np.uint16 if low >= 0 and high <= 65535 else np.int32
    labels = array.astype(dtype)
    if not np.array_equal(labels, array):
        bad = array[labels != array].flat[0]
        raise UserInputError(f"{path}: not a label map (non-integer value {float(bad):g})")
    if dtype == np.int32:  # negative or huge values: rare, and wrong anyway
        unknown = sorted(int(v) for v in np.unique(labels) if int(v) not in allowed_values)
    else:  # one pass through a lookup table over the value range, not a sort of all voxels
        table = np.ones(int(high) + 1, dtype=bool)
        table[[v for v in allowed_values if 0 <= v <= high]] = False
        outside = table[labels]
        unknown = sorted(int(v) for v in np.unique(labels[outside])) if outside.any() else []
    if unknown:
        raise UserInputError(f"{path}: label value(s) {unknown} not in {dataset_json} (labels there: "
                             f"{sorted(allowed_values)})")
    array = labels
    origin, direction = placement.get("origin"), placement.get("direction")
    return Segmentation(array, spacing, Path(path), None if origin is None else tuple(map(float, origin)),
                        None if direction is None else tuple(map(float, direction)))


def check_same_geometry(reference: Segmentation, prediction: Segmentation) -> None:
    if reference.array.shape != prediction.array.shape:
        raise UserInputError(f"{prediction.path}: shape {prediction.array.shape} differs from the reference "
                             f"{reference.path} {reference.array.shape}")
    if not all(math.isclose(p, r, rel_tol=1e-4, abs_tol=1e-6) for p, r in zip(prediction.spacing, reference.spacing)):
        raise UserInputError(f"{prediction.path}: spacing {_fmt(prediction.spacing)} differs from the reference "
                             f"{reference.path} {_fmt(reference.spacing)}")
    # origin and direction with nnU-Net's own tolerance (np.allclose defaults, as in
    # nnunetv2/experiment_planning/verify_dataset_integrity.py, which warns where we refuse)
    for name in ("origin", "direction"):
        mine, theirs = getattr(prediction, name), getattr(reference, name)
        if mine is not None and theirs is not None and not np.allclose(mine, theirs):
            raise UserInputError(f"{prediction.path}: {name} {_fmt(mine)} differs from the reference {reference.path} "
                                 f"{_fmt(theirs)}: the prediction lies on another grid in world space")


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"

"""Reading what ``calibrate`` and ``rate`` work on: one or more prediction folders of the same model
(``nnunet-robust run --save-probabilities`` output, one folder per fold for fold-spread features), the
dataset's labels, and optionally reference labels.

With one folder, the rated segmentation is that folder's ``<case><file_ending>`` (nnU-Net's own output)
and its probabilities are ``<case>.npz``. With several folders (``run -f 0``, ``run -f 1``, ... into
separate folders), the rated prediction is their ensemble as ``nnUNetv2_ensemble`` forms it: the mean
of the folds' probabilities, segmented with nnU-Net's ``LabelManager`` (argmax, or regions > 0.5).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import check_image_file, files_with_ending
from nnunet_robustness.metrics.inputs import (
    ConditionFolder,
    DatasetInfo,
    check_same_cases,
    find_conditions,
    load_dataset_json,
    reader_writer_for,
)
from nnunet_robustness.records.run_manifest import RunManifest

PROBABILITIES_KEY = "probabilities"


@dataclass(frozen=True)
class DatasetContext:
    """The labels/regions of dataset.json and how they map to probability channels."""

    info: DatasetInfo
    label_manager: Any  # nnunetv2 LabelManager
    reader_writer: type

    @property
    def regions(self) -> bool:
        return bool(self.label_manager.has_regions)

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.info.targets]

    def channel(self, target_index: int) -> int:
        """Probability channel of a target: the label value (nnU-Net's labels are consecutive and the
        softmax has one channel per label) or, for regions, the region's position."""
        return target_index if self.regions else int(self.info.targets[target_index].value)


def load_dataset(dataset_json: Path, example_file: Path) -> DatasetContext:
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    info = load_dataset_json(Path(dataset_json))
    manager = LabelManager(info.content["labels"], info.content.get("regions_class_order"))
    return DatasetContext(info, manager, reader_writer_for(info, example_file))


@dataclass(frozen=True)
class PredictionSet:
    """Fold prediction folders of one model with the same conditions and cases (checked)."""

    members: tuple[Path, ...]
    conditions: tuple[ConditionFolder, ...]
    cases: dict[str, tuple[str, ...]]  # condition name -> cases
    file_ending: str

    def segmentation_file(self, member: int, condition: str, case: str) -> Path:
        return self._folder(member, condition) / f"{case}{self.file_ending}"

    def probability_file(self, member: int, condition: str, case: str) -> Path:
        return self._folder(member, condition) / f"{case}.npz"

    def _folder(self, member: int, condition: str) -> Path:
        first = next(c for c in self.conditions if c.name == condition)
        relative = first.folder.relative_to(self.members[0]) if first.folder != self.members[0] else Path()
        return self.members[member] / relative


def first_prediction_file(folder: Path, file_ending: str) -> Path:
    """Any segmentation in a prediction folder (to pick nnU-Net's reader for the file type)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"{folder}: prediction folder does not exist")
    for path in sorted(folder.rglob(f"*{file_ending}")):
        if not path.name.startswith("."):
            return path
    raise UserInputError(f"{folder}: no predictions ending in {file_ending!r}")


def open_predictions(folders: Sequence[Path], file_ending: str, conditions: Sequence[str] | None = None
                     ) -> PredictionSet:
    """Check the folders: same conditions, same cases, a ``.npz`` of probabilities next to every
    segmentation. ``conditions`` restricts to those names (each must exist)."""
    if not folders:
        raise UserInputError("no prediction folders given (-i)")
    members = tuple(Path(f) for f in folders)
    found, manifest_cases = find_conditions(members[0], file_ending)
    if conditions is not None:
        names = [c.name for c in found]
        missing = [c for c in conditions if c not in names]
        if missing:
            raise UserInputError(f"{members[0]}: no condition {missing[0]!r} (conditions there: {', '.join(names)})")
        found = [c for c in found if c.name in conditions]
    cases: dict[str, tuple[str, ...]] = {}
    expected: tuple[str, ...] | None = None if manifest_cases is None else tuple(sorted(manifest_cases))
    source: Path = RunManifest.path(members[0])
    prediction_set = PredictionSet(members, tuple(found), {}, file_ending)
    for condition in found:
        listed = tuple(sorted(p.name[: -len(file_ending)] for p in files_with_ending(condition.folder, file_ending)))
        if not listed:
            raise UserInputError(f"{condition.folder}: no predictions ending in {file_ending!r}")
        if expected is None:  # eval's rule (metrics.inputs.check_same_cases)
            expected, source = listed, condition.folder
        check_same_cases(condition.folder, listed, expected, source, file_ending)
        for member in range(len(members)):
            for case in listed:
                seg = prediction_set.segmentation_file(member, condition.name, case)
                if not seg.is_file():
                    raise UserInputError(f"{seg}: missing; every fold folder needs the same conditions and cases")
                npz = prediction_set.probability_file(member, condition.name, case)
                if not npz.is_file():
                    raise UserInputError(f"{npz}: missing; predict with `nnunet-robust run --save-probabilities`")
        cases[condition.name] = listed
    return PredictionSet(members, tuple(found), cases, file_ending)


@dataclass
class CaseArrays:
    """One case under one condition, arrays squeezed to 2D for nnU-Net's one-slice 2D images."""

    probabilities: np.ndarray  # (channels, *shape), the rated prediction's (ensemble mean for folds)
    member_probabilities: list[np.ndarray]  # per fold when several, else empty
    segmentation: np.ndarray  # rated segmentation (label map)
    member_segmentations: list[np.ndarray]
    reference: np.ndarray | None
    spacing: tuple[float, ...]
    properties: dict  # nnU-Net reader properties of the segmentation (for writing masks)
    squeezed: bool  # True when a one-slice 2D image was squeezed (write masks back with [None])

    @property
    def voxel_volume(self) -> float:
        return float(np.prod(self.spacing))


def read_label_map(context: DatasetContext, path: Path) -> tuple[np.ndarray, dict]:
    check_image_file(path)
    reader = context.reader_writer()
    try:
        array, properties = reader.read_seg(str(path))
    except Exception as e:  # noqa: BLE001 - any reader failure means the file is unusable
        raise UserInputError(f"{path}: cannot be read by nnU-Net's {type(reader).__name__}: {type(e).__name__}") from None
    array = np.asarray(array)[0]
    labels = array.astype(np.int32)
    if not np.array_equal(labels, array):
        raise UserInputError(f"{path}: not a label map (non-integer values)")
    unknown = sorted(set(np.unique(labels).tolist()) - set(context.info.allowed_values))
    if unknown:
        raise UserInputError(f"{path}: label value(s) {unknown} not in {context.info.path}")
    return labels, properties


def read_probabilities(path: Path, expected_channels: int, shape: tuple[int, ...]) -> np.ndarray:
    try:
        with np.load(path) as data:
            if PROBABILITIES_KEY not in data:
                raise UserInputError(f"{path}: no '{PROBABILITIES_KEY}' array (nnU-Net's probability file)")
            probabilities = np.asarray(data[PROBABILITIES_KEY], dtype=np.float32)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserInputError(f"{path}: cannot be read as an .npz file ({e}); truncated or not nnU-Net's "
                             "probability file") from None
    if probabilities.shape != (expected_channels, *shape):
        raise UserInputError(f"{path}: probabilities have shape {probabilities.shape}, expected "
                             f"{(expected_channels, *shape)} (channels x the segmentation's shape)")
    if not np.isfinite(probabilities).all():
        raise UserInputError(f"{path}: probabilities contain NaN or Inf values")
    # a little slack for float16/float32 softmax rounding; anything beyond is not a probability
    if probabilities.min() < -1e-3 or probabilities.max() > 1 + 1e-3:
        raise UserInputError(f"{path}: values in [{probabilities.min():g}, {probabilities.max():g}] are not "
                             "probabilities (expected [0, 1]: nnU-Net's softmax output, run --save-probabilities)")
    return probabilities


def load_case(prediction_set: PredictionSet, context: DatasetContext, condition: str, case: str,
              reference_folder: Path | None) -> CaseArrays:
    channels = context.label_manager.num_segmentation_heads
    segmentations, member_probabilities, properties = [], [], {}
    for member in range(len(prediction_set.members)):
        seg, props = read_label_map(context, prediction_set.segmentation_file(member, condition, case))
        probabilities = read_probabilities(prediction_set.probability_file(member, condition, case), channels,
                                           seg.shape)
        segmentations.append(seg)
        member_probabilities.append(probabilities)
        properties = properties or props
    if len(member_probabilities) == 1:
        probabilities, segmentation = member_probabilities[0], segmentations[0]
    else:
        probabilities = np.mean(member_probabilities, axis=0, dtype=np.float64).astype(np.float32)
        segmentation = np.asarray(context.label_manager.convert_probabilities_to_segmentation(probabilities))
        segmentation = segmentation.astype(np.int32)
    reference = None
    if reference_folder is not None:
        path = Path(reference_folder) / f"{case}{prediction_set.file_ending}"
        if not path.is_file():
            raise UserInputError(f"{path}: no reference for case {case}")
        reference, _ = read_label_map(context, path)
        if reference.shape != segmentation.shape:
            raise UserInputError(f"{path}: shape {reference.shape} differs from the prediction's {segmentation.shape}")
    spacing = tuple(float(s) for s in properties["spacing"])
    squeezed = segmentation.ndim == 3 and segmentation.shape[0] == 1
    if squeezed:  # nnU-Net's 2D images: one slice with a placeholder spacing
        probabilities, segmentation, spacing = probabilities[:, 0], segmentation[0], spacing[1:]
        member_probabilities = [p[:, 0] for p in member_probabilities]
        segmentations = [s[0] for s in segmentations]
        reference = None if reference is None else reference[0]
    several = len(member_probabilities) > 1
    return CaseArrays(probabilities, member_probabilities if several else [], segmentation,
                      segmentations if several else [], reference, spacing, properties, squeezed)


def write_mask(context: DatasetContext, arrays: CaseArrays, mask: np.ndarray, path: Path) -> None:
    """Write a 0/1 (or label-map) array in the prediction's geometry, atomically."""
    from nnunet_robustness.io import atomic_path

    array = mask[None] if arrays.squeezed else mask
    with atomic_path(path) as tmp:
        context.reader_writer().write_seg(array.astype(np.uint8 if array.max(initial=0) < 255 else np.uint16),
                                          str(tmp), arrays.properties)

"""Finding an nnU-Net raw dataset and pairing its images with their labels."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import files_with_ending, read_json

SPLIT_FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}


@dataclass(frozen=True)
class LabelledCase:
    identifier: str
    split: str  # "train" or "test"
    image_files: tuple[Path, ...]  # one per channel, in channel order (_0000, _0001, ...)
    label_file: Path


def resolve_raw_dataset(dataset: str) -> Path:
    """The raw dataset folder named by ``dataset``: a folder path, a dataset id (``501``) or a dataset
    folder name (``Dataset501_Textures``) looked up under ``$nnUNet_raw``."""
    path = Path(dataset).expanduser()
    if path.is_dir():
        folder = path
    elif re.fullmatch(r"\d+|Dataset\d{3}_.+", dataset):
        raw_root = os.environ.get("nnUNet_raw")
        if not raw_root:
            raise UserInputError(f"{dataset!r} is not a folder, and nnUNet_raw is not set, so it cannot be "
                                 "looked up as a dataset id")
        pattern = f"Dataset{int(dataset):03d}_*" if dataset.isdigit() else dataset
        matches = sorted(p for p in Path(raw_root).glob(pattern) if p.is_dir())
        if not matches:
            raise UserInputError(f"no dataset {dataset!r} in nnUNet_raw ({raw_root})")
        if len(matches) > 1:
            raise UserInputError(f"dataset id {dataset} is ambiguous in nnUNet_raw: "
                                 f"{', '.join(p.name for p in matches)}")
        folder = matches[0]
    else:
        raise UserInputError(f"{dataset!r} is neither a folder nor a dataset id / DatasetXXX_Name")
    if not (folder / "dataset.json").is_file():
        raise UserInputError(f"{folder} has no dataset.json; expected an nnU-Net raw dataset folder")
    return folder


def raw_dataset_json(folder: Path) -> dict[str, Any]:
    """The ``dataset.json`` of a raw dataset folder, checked for the folder layout we read
    (labels and regions are read by :func:`nnunet_robustness.metrics.inputs.load_dataset_json`)."""
    path = folder / "dataset.json"
    content = read_json(path, "dataset.json")
    if not isinstance(content, dict):
        raise UserInputError(f"{path}: dataset.json must be a JSON object")
    missing = [key for key in ("file_ending", "labels") if key not in content]
    if missing:
        raise UserInputError(f"{path} lacks {', '.join(missing)}")
    if "dataset" in content:
        raise UserInputError(f"{path} lists its files under 'dataset'; only the imagesTr/labelsTr folder "
                             "layout is supported")
    return content


def list_labelled_cases(folder: Path, file_ending: str) -> list[LabelledCase]:
    """Every case of imagesTr/labelsTr, then of imagesTs/labelsTs where that pair of folders exists.

    Raises UserInputError naming the file when an image has no label or a label has no image.
    """
    cases: list[LabelledCase] = []
    for split, (images_name, labels_name) in SPLIT_FOLDERS.items():
        images_dir, labels_dir = folder / images_name, folder / labels_name
        if split == "train" and not images_dir.is_dir():
            raise UserInputError(f"{images_dir} does not exist; expected an nnU-Net raw dataset folder")
        if not images_dir.is_dir():
            continue
        if not labels_dir.is_dir():
            if split == "train":
                raise UserInputError(f"{labels_dir} does not exist: the training images have no labels")
            warnings.warn(f"{images_dir} has no {labels_name} folder; its cases are skipped", UserWarning,
                          stacklevel=2)
            continue

        channel_files: dict[str, list[Path]] = {}
        for image_file in files_with_ending(images_dir, file_ending):
            stem = image_file.name[: -len(file_ending)]
            match = re.fullmatch(r"(.+)_(\d{4})", stem)
            if match is None:
                raise UserInputError(f"{image_file}: image names must end in a 4-digit channel index "
                                     f"(CASE_0000{file_ending})")
            channel_files.setdefault(match.group(1), []).append(image_file)

        label_files = {p.name[: -len(file_ending)]: p for p in files_with_ending(labels_dir, file_ending)}
        for identifier in sorted(channel_files):
            if identifier not in label_files:
                raise UserInputError(f"{channel_files[identifier][0]} has no label "
                                     f"({labels_dir / (identifier + file_ending)} is missing)")
        orphans = sorted(set(label_files) - set(channel_files))
        if orphans:
            raise UserInputError(f"{label_files[orphans[0]]} has no image "
                                 f"({images_dir / (orphans[0] + '_0000' + file_ending)} is missing)")
        cases.extend(LabelledCase(identifier, split, tuple(sorted(channel_files[identifier])),
                                  label_files[identifier])
                     for identifier in sorted(channel_files))
    return cases

"""Complexity measures of every labelled case of an nnU-Net raw dataset, and their summary per group
(split and, for datasets from `make-dataset textures`, alpha)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from nnunet_robustness.datasets.complexity import CaseComplexity, case_complexity
from nnunet_robustness.datasets.raw_dataset import list_labelled_cases, raw_dataset_json
from nnunet_robustness.datasets.textures_dataset import case_alphas
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_text, csv_cell

CASE_COLUMNS = ("case", "split", "alpha", "texture_disparity_bits", "contrast_to_noise",
                "foreground_fraction", "foreground_voxels")
SUMMARY_COLUMNS = ("split", "alpha", "cases", "undefined_td", "td_mean", "td_median", "cnr_median",
                   "foreground_fraction_median")


@dataclass(frozen=True)
class CaseResult:
    case: str
    split: str
    alpha: float | None  # known only for datasets written by `make-dataset textures`
    measures: CaseComplexity


@dataclass(frozen=True)
class GroupSummary:
    split: str
    alpha: float | None
    cases: int
    undefined_td: int
    td_mean: float
    td_median: float
    cnr_median: float
    foreground_fraction_median: float


def measure_dataset(folder: Path, channel: int = 0, show_progress: bool = True) -> list[CaseResult]:
    """Complexity of every labelled case (imagesTr/labelsTr, then imagesTs/labelsTs if present), read
    with the reader nnU-Net itself would pick for the dataset."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    dataset_json = raw_dataset_json(folder)
    num_channels = len(dataset_json.get("channel_names", dataset_json.get("modality", {"0": None})))
    if not 0 <= channel < num_channels:
        raise UserInputError(f"--channel {channel}: {folder / 'dataset.json'} has {num_channels} channel(s)")
    file_ending = dataset_json["file_ending"]
    cases = list_labelled_cases(folder, file_ending)
    if not cases:
        raise UserInputError(f"{folder / 'imagesTr'} has no images ending in {file_ending}")
    ignore_label = dataset_json["labels"].get("ignore")
    alphas = case_alphas(folder)

    # No example file: nnU-Net would then trial-read it with every reader and print their tracebacks;
    # a file that the chosen reader cannot read is reported by name below instead.
    try:
        reader = determine_reader_writer_from_dataset_json(dataset_json, None, verbose=False)()
    except RuntimeError as e:
        raise UserInputError(f"{folder / 'dataset.json'}: nnU-Net has no reader for file_ending "
                             f"{file_ending!r} ({e})") from e
    results = []
    for case in tqdm(cases, desc=f"complexity {folder.name}", unit="case", disable=not show_progress):
        if channel >= len(case.image_files):
            raise UserInputError(f"case {case.identifier} in {folder} has no channel {channel} "
                                 f"({len(case.image_files)} image file(s))")
        image_file = case.image_files[channel]
        try:
            image, properties = reader.read_images([str(image_file)])
        except Exception as e:  # noqa: BLE001 - the readers raise anything; the user needs the file name
            raise UserInputError(f"cannot read image {image_file}: {e!r}") from e
        try:
            label, _ = reader.read_seg(str(case.label_file))
        except Exception as e:  # noqa: BLE001
            raise UserInputError(f"cannot read label {case.label_file}: {e!r}") from e
        if image.shape[1:] != label.shape[1:]:
            raise UserInputError(f"shape mismatch: image {image_file} has shape {image.shape[1:]}, label "
                                 f"{case.label_file} has shape {label.shape[1:]}")
        measures = case_complexity(image[0], label[0], properties["spacing"], ignore_label=ignore_label,
                                   case_name=f"{case.identifier} ({image_file})")
        results.append(CaseResult(case.identifier, case.split, alphas.get(case.identifier), measures))
    return results


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.median(finite)) if finite else math.nan


def summarize(results: Iterable[CaseResult]) -> list[GroupSummary]:
    """One row per (split, alpha) group: training groups first, then by ascending alpha. Undefined
    (NaN) values are left out of the statistics and counted in ``undefined_td``."""
    groups: dict[tuple[str, float | None], list[CaseResult]] = {}
    for result in results:
        groups.setdefault((result.split, result.alpha), []).append(result)

    def order(key: tuple[str, float | None]) -> tuple[int, float]:
        split, alpha = key
        return (0 if split == "train" else 1, -1.0 if alpha is None else alpha)

    summaries = []
    for split, alpha in sorted(groups, key=order):
        members = groups[(split, alpha)]
        disparities = [m.measures.texture_disparity_bits for m in members]
        defined = [d for d in disparities if not math.isnan(d)]
        summaries.append(GroupSummary(
            split=split, alpha=alpha, cases=len(members), undefined_td=len(disparities) - len(defined),
            td_mean=float(np.mean(defined)) if defined else math.nan,
            td_median=_median(disparities),
            cnr_median=_median([m.measures.contrast_to_noise for m in members]),
            foreground_fraction_median=_median([m.measures.foreground_fraction for m in members]),
        ))
    return summaries


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision, so the CSV reproduces the generator's recorded values
    return str(value)


def _csv_text(header: tuple[str, ...], rows: Iterable[tuple]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_cell(csv_cell(v)) for v in row] for row in rows])  # names: no formulas (CSV injection)
    return buffer.getvalue()


def write_case_table(results: list[CaseResult], path: Path) -> None:
    """Per-case CSV (columns CASE_COLUMNS), written atomically."""
    rows = [(r.case, r.split, r.alpha, r.measures.texture_disparity_bits, r.measures.contrast_to_noise,
             r.measures.foreground_fraction, r.measures.foreground_voxels) for r in results]
    atomic_write_text(path, _csv_text(CASE_COLUMNS, rows))


def write_summary_table(summaries: list[GroupSummary], path: Path) -> None:
    """Per-group CSV (columns SUMMARY_COLUMNS), written atomically."""
    rows = [tuple(getattr(s, column) for column in SUMMARY_COLUMNS) for s in summaries]
    atomic_write_text(path, _csv_text(SUMMARY_COLUMNS, rows))


def format_summary(summaries: list[GroupSummary]) -> str:
    """The summary as an aligned text table for the terminal."""
    header = ("split", "alpha", "cases", "NaN", "TD mean", "TD median", "CNR median", "fg fraction")
    lines = [[s.split, "-" if s.alpha is None else f"{s.alpha:.2f}", str(s.cases), str(s.undefined_td),
              f"{s.td_mean:.4f}", f"{s.td_median:.4f}", f"{s.cnr_median:.3f}",
              f"{s.foreground_fraction_median:.3f}"] for s in summaries]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths))
                     for row in [header, *lines])

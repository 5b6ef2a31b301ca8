"""``<condition>/<case>.fbr.json``: the crop a context condition made of one test case.

``run --conditions context:...`` computes the box (:func:`nnunet_robustness.foreground_ratio.context_box`) and writes
this record before the segmentation, which marks the item done; ``eval`` reads the achieved foreground
fraction back as the case's test FBR.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_json, read_json

FBR_RECORD_SUFFIX = ".fbr.json"


@dataclass(frozen=True)
class ContextBox:
    target_fbr: float
    fbr: float  # achieved
    box: list[list[int]]  # [start, stop) per spatial axis
    margin_voxels: list[int]
    tight_fbr: float  # fraction of the foreground bounding box (the highest reachable)
    image_fbr: float  # fraction of the whole image (the lowest reachable)

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.box)

    def to_json(self) -> dict:
        return {**asdict(self), "clipped": not self.image_fbr <= self.target_fbr <= self.tight_fbr}


def record_path(condition_folder: Path, case: str) -> Path:
    return Path(condition_folder) / f"{case}{FBR_RECORD_SUFFIX}"


def write_context_record(condition_folder: Path, case: str, box: ContextBox) -> None:
    atomic_write_json(record_path(condition_folder, case), {"case": case, **box.to_json()})


def read_context_fbr(condition_folder: Path, case: str) -> float | None:
    """The achieved foreground fraction of a context item; None where ``run`` wrote no record (not a
    context condition, or a folder not made by ``run``)."""
    path = record_path(condition_folder, case)
    if not path.is_file():
        return None
    record = read_json(path, "context record")
    try:
        return float(record["fbr"])
    except (KeyError, TypeError, ValueError):
        raise UserInputError(f"{path}: context record without a numeric 'fbr'; re-run `nnunet-robust run` for "
                             "this condition") from None

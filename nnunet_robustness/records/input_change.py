"""``<condition>/<case>.input.json``: how much a condition changed one item in the model's input space.

``run`` measures it (:mod:`nnunet_robustness.runner.input_space`: SSIM and relative L2 change of the
image after nnU-Net's own normalisation) and writes it next to the prediction; ``eval`` reads it into
the per-case table and names a condition *cancelled by the model's normalisation* when its relative L2
change stays below ``CANCELLED_BELOW`` on every case.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_json, read_json

INPUT_CHANGE_SUFFIX = ".input.json"
# Relative L2 change in the model's input space below which a condition is "cancelled": float32
# round-off of a z-scored affine map is ~1e-7; a visible corruption is above 1e-2.
CANCELLED_BELOW = 1e-4


@dataclass(frozen=True)
class InputChange:
    """The change of one (case, condition) item in the model's input space."""

    ssim: float
    relative_l2: float

    @property
    def cancelled(self) -> bool:
        return self.relative_l2 < CANCELLED_BELOW

    def to_json(self) -> dict[str, float]:
        return {"input_ssim": self.ssim, "input_rel_l2": self.relative_l2}

    @staticmethod
    def path(condition_folder: Path, case: str) -> Path:
        return Path(condition_folder) / f"{case}{INPUT_CHANGE_SUFFIX}"

    def write(self, condition_folder: Path, case: str) -> None:
        atomic_write_json(self.path(condition_folder, case), self.to_json())

    @classmethod
    def read_if_present(cls, condition_folder: Path, case: str) -> "InputChange | None":
        """The record ``run`` wrote for this item; None for clean items and folders not made by ``run``."""
        path = cls.path(condition_folder, case)
        return cls.read(path) if path.is_file() else None

    @classmethod
    def read(cls, path: Any) -> "InputChange":
        data = read_json(path, "input-change record")
        try:
            return cls(float(data["input_ssim"]), float(data["input_rel_l2"]))
        except (KeyError, TypeError, ValueError):
            raise UserInputError(f"{path}: input-change record without numeric input_ssim/input_rel_l2; re-run "
                                 "`nnunet-robust run --overwrite` for this condition") from None

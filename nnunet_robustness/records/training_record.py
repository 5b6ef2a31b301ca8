"""``<model folder>/robust_training_record.json``: what a robust trainer trained with.

The robust trainers (:mod:`nnunet_robustness.trainers.robust_trainers`) write it next to their
checkpoints; ``eval`` finds it through each prediction folder's ``run.json`` and compares the model
with baselines trained without one (:mod:`nnunet_robustness.analysis.robust_training`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_json, read_json

RECORD_FILE = "robust_training_record.json"


@dataclass(frozen=True)
class TrainingRecord:
    """``<model folder>/robust_training_record.json``: the trainer and the options it trained with."""

    trainer: str
    options: dict[str, Any] = field(default_factory=dict)  # sections: corruption_augmentation, adversarial

    @property
    def seen_families(self) -> tuple[str, ...]:
        return tuple(self.options.get("corruption_augmentation", {}).get("families", ()))

    @property
    def kind(self) -> str:
        return " + ".join(name.replace("_", " ") for name in self.options) or "robust training"

    def write(self, model_folder: Path) -> None:
        atomic_write_json(Path(model_folder) / RECORD_FILE, {"trainer": self.trainer, **self.options})

    @classmethod
    def read_if_present(cls, model_folder: Path) -> "TrainingRecord | None":
        path = Path(model_folder) / RECORD_FILE
        if not path.is_file():
            return None
        data = read_json(path, "robust-training record")
        if not isinstance(data, dict) or not isinstance(data.get("trainer"), str):
            raise UserInputError(f"{path}: not a robust-training record (needs a trainer name)")
        return cls(data["trainer"], {k: v for k, v in data.items() if k != "trainer"})

"""Iterations inside an epoch, written where the pipeline reads them (``training_progress.json``).

nnU-Net logs an epoch when it starts and when it ends, nothing in between; an epoch of the demo's
attention-gated U-Net takes minutes on a CPU. Every schedule and sampling variant (``TrainerVariant``
in ``variants``: the demo's and the studies' trainers) writes the epoch, the iteration of the training or validation phase and the
totals about once a second, so :mod:`nnunet_robustness.training_progress` can say how far it is.
"""

from __future__ import annotations

import time
from pathlib import Path

from nnunet_robustness.io import atomic_write_json
from nnunet_robustness.training_progress import PROGRESS_FILE

WRITE_EVERY_SECONDS = 1.0  # a tiny JSON write per second costs nothing next to an iteration's compute


class TrainingProgressMixin:
    """Put before an nnUNetTrainer subclass in the bases; defines no ``__init__``."""

    def train_step(self, batch: dict) -> dict:
        result = super().train_step(batch)
        self._count_iteration("training", self.num_iterations_per_epoch)
        return result

    def validation_step(self, batch: dict) -> dict:
        result = super().validation_step(batch)
        self._count_iteration("validation", self.num_val_iterations_per_epoch)
        return result

    def _count_iteration(self, phase: str, iterations: int) -> None:
        key = (self.current_epoch, phase)
        if getattr(self, "_progress_key", None) != key:
            self._progress_key, self._progress_count, self._progress_written = key, 0, 0.0
        self._progress_count += 1
        now = time.monotonic()
        # the first and last iteration of a phase always, the others at most once a second
        if (self._progress_count in (1, iterations) or now - self._progress_written >= WRITE_EVERY_SECONDS) \
                and getattr(self, "local_rank", 0) == 0:
            self._progress_written = now
            try:
                atomic_write_json(Path(self.output_folder) / PROGRESS_FILE,
                                  {"epoch": self.current_epoch, "phase": phase, "iteration": self._progress_count,
                                   "iterations": iterations, "num_epochs": self.num_epochs})
            except OSError:  # a full disk or a read-only folder must not end a training over a progress line
                pass

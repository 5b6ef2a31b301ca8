"""How far an ``nnUNetv2_train`` run is, read from what it writes into its fold folder.

nnU-Net prints nothing inside an epoch (minutes on a CPU), so the demo and the studies watch the fold
folder while a training runs:

- nnU-Net's own log, ``training_log_<date>.txt`` (``nnUNetTrainer.__init__``; a resumed training
  starts a new one): ``Epoch N`` when epoch N starts, ``Epoch time: S s`` when it ends,
  ``Training done.`` at the end. That gives epochs done for any trainer, but not how many there are.
- ``training_progress.json``, written by our trainers (:mod:`nnunet_robustness.trainers.progress`)
  about once a second: the epoch, the iteration inside it (training or validation) and the totals.

Torch-free: the pipeline reads it in the process that waits for the training.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

PROGRESS_FILE = "training_progress.json"
LOG_PATTERN = "training_log_*.txt"

_EPOCH = re.compile(r": Epoch (\d+)\s*$")
_EPOCH_TIME = re.compile(r": Epoch time: ([0-9.]+) s\s*$")
_DONE = re.compile(r": Training done\.\s*$")


@dataclass(frozen=True)
class TrainingProgress:
    epochs_done: int  # epochs finished (counted from 0, including those before a resume)
    current_epoch: int | None = None  # the epoch running now (None: none started, or all done)
    total_epochs: int | None = None  # None: unknown (a trainer that does not write PROGRESS_FILE)
    phase: str | None = None  # "training" or "validation" of the current epoch, when known
    iteration: int | None = None  # iterations of that phase done
    iterations: int | None = None  # iterations of that phase per epoch
    last_epoch_seconds: float | None = None
    finished: bool = False

    def fraction(self) -> float | None:
        """Share of the training done (None without the number of epochs)."""
        if self.finished:
            return 1.0
        if not self.total_epochs:
            return None
        within = 0.0
        if self.current_epoch is not None and self.iteration is not None and self.iterations:
            # validation is counted as the last tenth of an epoch: nnU-Net's default is 50 validation
            # against 250 training iterations, each about as long as a training one without the backward pass
            within = min(self.iteration / self.iterations, 1.0)
            within = 0.9 + 0.1 * within if self.phase == "validation" else 0.9 * within
        return min((self.epochs_done + within) / self.total_epochs, 1.0)

    def describe(self) -> str:
        if self.finished:
            return "training done; nnU-Net validates the fold"
        total = f"/{self.total_epochs}" if self.total_epochs else ""
        if self.current_epoch is None:
            return "training starting (loading data, building the network)"
        text = f"epoch {self.current_epoch + 1}{total}"
        if self.iteration is not None and self.iterations:
            text += f", {self.phase or 'training'} iteration {self.iteration}/{self.iterations}"
        if self.last_epoch_seconds is not None:
            text += f" (last epoch {self.last_epoch_seconds:.0f} s)"
        return text


def newest_log(fold_folder: Path) -> Path | None:
    logs = sorted(Path(fold_folder).glob(LOG_PATTERN), key=lambda p: p.stat().st_mtime)
    return logs[-1] if logs else None


def read_training_progress(fold_folder: Path) -> TrainingProgress | None:
    """What nnU-Net's newest log and our progress file in ``fold_folder`` say (None: neither exists yet).

    Reads files a running training is writing: a half-written progress file is skipped (the log still
    counts), a line that is not complete yet is ignored until it is.
    """
    fold_folder = Path(fold_folder)
    log = newest_log(fold_folder)
    current, done, last_seconds, finished = None, 0, None, False
    if log is not None:
        for line in log.read_text(errors="replace").splitlines():
            if match := _EPOCH.search(line):
                current = int(match[1])
                done = current  # epochs before a resume count as done
            elif match := _EPOCH_TIME.search(line):
                last_seconds = float(match[1])
                if current is not None:
                    done = current + 1
            elif _DONE.search(line):
                finished = True
    detail = _read_progress_file(fold_folder)
    if log is None and detail is None:
        return None
    ended = current is not None and done == current + 1
    progress = TrainingProgress(done, None if ended or finished else current, last_epoch_seconds=last_seconds,
                                finished=finished)
    if detail is None:
        return progress
    total = detail.get("num_epochs")
    if detail.get("epoch") != progress.current_epoch:  # the file lags or leads the log: keep the epochs only
        return TrainingProgress(**{**progress.__dict__, "total_epochs": total})
    return TrainingProgress(**{**progress.__dict__, "total_epochs": total, "phase": detail.get("phase"),
                               "iteration": detail.get("iteration"), "iterations": detail.get("iterations")})


def _read_progress_file(fold_folder: Path) -> dict | None:
    path = fold_folder / PROGRESS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or caught between two writes
        return None
    return data if isinstance(data, dict) else None

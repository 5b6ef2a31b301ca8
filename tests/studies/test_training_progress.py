"""Training progress while nnUNetv2_train runs: the reader of the fold folder (nnU-Net's log and our
trainers' progress file), the trainers' writer, and the pipeline's progress lines. No real training."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nnunet_robustness.studies.workflow import Pipeline, Step, progress_line, training_step
from nnunet_robustness.training_progress import PROGRESS_FILE, TrainingProgress, read_training_progress

# what nnUNetTrainer.print_to_log_file writes: "<timestamp>: " then each argument followed by a space
LOG_START = "\n#######################################################################\nPlease cite ...\n"


def _log_line(text: str) -> str:
    return f"2026-01-02 10:00:00.000001: {text} \n"


def _epoch(number: int, seconds: float | None = None) -> str:
    text = _log_line("") + _log_line(f"Epoch {number}") + _log_line("Current learning rate: 0.01")
    if seconds is not None:
        text += (_log_line("train_loss -0.5") + _log_line("val_loss -0.6") + _log_line("Pseudo dice [0.8]")
                 + _log_line(f"Epoch time: {seconds} s"))
    return text


def test_the_reader_counts_epochs_from_nnunets_log(tmp_path):
    assert read_training_progress(tmp_path) is None
    log = tmp_path / "training_log_2026_1_2_10_00_00.txt"
    log.write_text(LOG_START)
    assert read_training_progress(tmp_path) == TrainingProgress(0)
    assert "starting" in TrainingProgress(0).describe()
    log.write_text(LOG_START + _epoch(0, 12.5) + _epoch(1))
    state = read_training_progress(tmp_path)
    assert (state.epochs_done, state.current_epoch, state.last_epoch_seconds) == (1, 1, 12.5)
    assert state.total_epochs is None and state.fraction() is None  # a stock trainer: the total is not logged
    assert state.describe() == "epoch 2 (last epoch 12 s)"
    log.write_text(LOG_START + _epoch(0, 12.5) + _epoch(1, 13.0) + _log_line("Training done."))
    state = read_training_progress(tmp_path)
    assert state.finished and state.epochs_done == 2 and state.fraction() == 1.0


def test_a_resumed_training_counts_the_epochs_before_its_new_log(tmp_path):
    import os

    old, new = tmp_path / "training_log_2026_1_2_10_00_00.txt", tmp_path / "training_log_2026_1_2_11_00_00.txt"
    old.write_text(LOG_START + _epoch(0, 10) + _epoch(1))
    new.write_text(LOG_START + _epoch(50))
    os.utime(old, (1, 1))  # the newest log by time is the resumed training's
    state = read_training_progress(tmp_path)
    assert (state.epochs_done, state.current_epoch) == (50, 50)


def test_the_progress_file_adds_iterations_and_the_total(tmp_path):
    (tmp_path / "training_log_2026_1_2_10_00_00.txt").write_text(LOG_START + _epoch(0, 20) + _epoch(1))
    (tmp_path / PROGRESS_FILE).write_text(json.dumps({"epoch": 1, "phase": "training", "iteration": 25,
                                                      "iterations": 50, "num_epochs": 2}))
    state = read_training_progress(tmp_path)
    assert state.describe() == "epoch 2/2, training iteration 25/50 (last epoch 20 s)"
    assert state.fraction() == pytest.approx((1 + 0.9 * 0.5) / 2)
    (tmp_path / PROGRESS_FILE).write_text(json.dumps({"epoch": 1, "phase": "validation", "iteration": 5,
                                                      "iterations": 5, "num_epochs": 2}))
    assert read_training_progress(tmp_path).fraction() == pytest.approx(1.0)
    # a progress file of the epoch before (the log has moved on) keeps only the total
    (tmp_path / PROGRESS_FILE).write_text(json.dumps({"epoch": 0, "phase": "validation", "iteration": 5,
                                                      "iterations": 5, "num_epochs": 2}))
    state = read_training_progress(tmp_path)
    assert state.iteration is None and state.total_epochs == 2 and state.fraction() == pytest.approx(0.5)
    (tmp_path / PROGRESS_FILE).write_text('{"epoch": 1, "pha')  # caught half-written: the log still counts
    assert read_training_progress(tmp_path).epochs_done == 1


def test_the_estimate_extrapolates_the_time_per_share_done_since_the_step_started():
    assert progress_line("epoch 1/4", 0.25, 0.0, 60, 100) == ("epoch 1/4; elapsed 1 min 00 s, about 3 min 00 s left "
                                                               "in this step (4 min 40 s in all)")
    # resumed at half-way: only what this run did sets the speed
    assert "about 1 min 00 s left" in progress_line("epoch 4/4", 0.75, 0.5, 60, 0)
    assert progress_line("starting", None, 0.0, 5, 0) == "starting; elapsed 5 s"
    assert "left" not in progress_line("epoch 1/4", 0.0, 0.0, 5, 0)


def test_our_trainers_write_their_iterations(tmp_path):
    from nnunet_robustness.trainers.progress import TrainingProgressMixin

    class FakeTrainer:
        output_folder, current_epoch, num_epochs = str(tmp_path), 0, 3
        num_iterations_per_epoch, num_val_iterations_per_epoch, local_rank = 4, 2, 0

        def train_step(self, batch):
            return {"loss": batch}

        def validation_step(self, batch):
            return {"loss": batch}

    class Trainer(TrainingProgressMixin, FakeTrainer):
        pass

    trainer = Trainer()
    assert trainer.train_step(1.0) == {"loss": 1.0}
    written = json.loads((tmp_path / PROGRESS_FILE).read_text())
    assert written == {"epoch": 0, "phase": "training", "iteration": 1, "iterations": 4, "num_epochs": 3}
    for _ in range(3):
        trainer.train_step(1.0)
    assert json.loads((tmp_path / PROGRESS_FILE).read_text())["iteration"] == 4  # the last always
    trainer.validation_step(1.0)
    assert json.loads((tmp_path / PROGRESS_FILE).read_text())["phase"] == "validation"
    trainer.current_epoch = 1
    trainer.train_step(1.0)
    assert json.loads((tmp_path / PROGRESS_FILE).read_text())[
        "iteration"] == 1 and trainer._progress_key == (1, "training")


def test_every_generated_trainer_writes_progress():
    from nnunet_robustness.trainers.progress import TrainingProgressMixin
    from nnunet_robustness.trainers.registry import GENERATED_TRAINERS

    assert all(issubclass(cls, TrainingProgressMixin) for cls in GENERATED_TRAINERS.values())


def test_the_pipeline_prints_training_progress_while_the_training_runs(tmp_path):
    fold = tmp_path / "model" / "fold_0"

    def fake_training(command, env, log=None):
        fold.mkdir(parents=True)
        log_file = fold / "training_log_2026_1_2_10_00_00.txt"
        log_file.write_text(LOG_START + _epoch(0))
        for iteration in (1, 2):
            (fold / PROGRESS_FILE).write_text(json.dumps({"epoch": 0, "phase": "training", "iteration": iteration,
                                                          "iterations": 2, "num_epochs": 2}))
            time.sleep(0.3)
        log_file.write_text(LOG_START + _epoch(0, 0.6) + _epoch(1))
        time.sleep(0.3)
        (fold / "checkpoint_final.pth").touch()

    lines: list[str] = []
    step = training_step("nnUNetv2_train fake", tmp_path / "model", ["nnUNetv2_train"], weight=1)
    later = Step("after", lambda: False, lambda: [], weight=100)
    Pipeline({}, None, fake_training, printer=lines.append, progress_seconds=0.05).run([step, later])
    progress = [line for line in lines if line.startswith("    ")]
    assert any("epoch 1/2, training iteration 1/2" in line for line in progress)
    assert any("epoch 1/2, training iteration 2/2" in line and "left in this step" in line for line in progress)
    assert any(line.strip().startswith("epoch 2/2 (last epoch 1 s)") for line in progress)
    assert len(progress) == len(set(progress))  # a line only when something changed
    # the progress lines come between the step's own line and the next step's
    assert lines.index(progress[0]) > 0 and lines[0].startswith("[1/2] nnUNetv2_train fake (running")
    assert Path(fold / "checkpoint_final.pth").is_file()


def test_the_demos_trainings_report_progress(tmp_path):
    from nnunet_robustness.demo import Demo, DemoSettings

    steps = Demo(DemoSettings(output=tmp_path)).steps()
    trainings = [s for s in steps if s.title.startswith("nnUNetv2_train")]
    assert len(trainings) == 3 and all(s.progress is not None for s in trainings)
    assert all(s.progress is None for s in steps if s not in trainings)

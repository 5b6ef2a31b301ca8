"""The Python entry point of ``run``: a :class:`RunJob` (typed arguments, as the command line resolved
them) and :func:`run_job`, which loads the model, lists the cases and predicts this job's shard.

``run`` calls it in its own process; ``run --devices`` starts one process per device with
``python -m nnunet_robustness.runner.worker`` and the job as JSON on its standard input
(:mod:`.devices`), so a worker runs exactly what ``run`` resolved, without parsing a command line again.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnunet_robustness.conditions import Condition
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.runner.runner import PredictionSettings, RobustnessRunner, RunStats
from nnunet_robustness.runner.ssim_scale import SSIM_SCALE_CASES


@dataclass(frozen=True)
class RunJob:
    """One ``run`` process's work: the model and how to predict, the folders, the conditions, its shard."""

    settings: PredictionSettings
    input: Path  # an imagesTs-style folder or a list file (runner.cases.list_cases)
    output: Path
    conditions: tuple[Condition, ...]
    seed: int = 0
    save_probabilities: bool = False
    overwrite: bool = False
    num_parts: int = 1
    part_id: int = 0
    reference: Path | None = None
    progress: bool = True
    severity_scale: str = "physical"
    calibration_cases: int = SSIM_SCALE_CASES
    modality_forced: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        settings = asdict(self.settings)
        settings["folds"] = None if self.settings.folds is None else list(self.settings.folds)
        return {**data, "settings": {**settings, "model_folder": str(self.settings.model_folder)},
                "input": str(self.input), "output": str(self.output),
                "reference": None if self.reference is None else str(self.reference),
                "conditions": [c.to_json() for c in self.conditions]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunJob":
        settings = dict(data["settings"])
        folds = settings["folds"]
        return cls(**{**data, "settings": PredictionSettings(**{
            **settings, "model_folder": Path(settings["model_folder"]),
            "folds": None if folds is None else tuple(folds)}),
            "input": Path(data["input"]), "output": Path(data["output"]),
            "reference": None if data["reference"] is None else Path(data["reference"]),
            "conditions": tuple(Condition.from_json(c) for c in data["conditions"])})


def run_job(job: RunJob) -> tuple[RunStats, int]:
    """Load the model, list the cases (with the model's file ending and channels) and run the job's shard.
    Returns the statistics and the number of cases."""
    from nnunet_robustness.runner.cases import list_cases

    runner = RobustnessRunner(job.settings)
    cases = list_cases(job.input, runner.file_ending, runner.num_channels)
    stats = runner.run(cases, job.conditions, job.output, seed=job.seed, save_probabilities=job.save_probabilities,
                       overwrite=job.overwrite, num_parts=job.num_parts, part_id=job.part_id,
                       reference_folder=job.reference, progress=job.progress, severity_scale=job.severity_scale,
                       calibration_cases=job.calibration_cases, modality_forced=job.modality_forced)
    return stats, len(cases)


def summary(stats: RunStats, cases: int, conditions: int) -> str:
    """The line ``run`` ends with (``run --devices`` shows each worker's)."""
    return (f"{stats.predicted} item(s) predicted, {stats.skipped} already done, of {stats.items} in this part "
            f"({cases} cases x {conditions} conditions in all); {stats.seconds_total:.2f} s, "
            f"{stats.seconds_predictor:.2f} s in nnU-Net's predictor, {stats.seconds_input_space:.2f} s measuring what "
            "the model saw")


def main() -> int:
    """A worker of ``run --devices``: the job as JSON on standard input; output and errors go to its log,
    whose last line the parent shows when the worker fails."""
    warnings.formatwarning = lambda message, *_, **__: f"nnunet-robust: warning: {message}\n"
    job = RunJob.from_json(json.load(sys.stdin))
    try:
        stats, cases = run_job(job)
    except UserInputError as e:
        print(f"nnunet-robust: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the parent passes on Ctrl-C; what is being written is finished
        print("nnunet-robust: interrupted", file=sys.stderr)
        return 130
    print(summary(stats, cases, len(job.conditions)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The demo: from nothing to a robustness report, with nnU-Net's real command-line tools.

1. a synthetic 2D texture dataset at two complexity levels (``make-dataset textures``);
2. ``nnUNetv2_plan_and_preprocess``;
3. ``nnUNetv2_train`` of nnU-Net's U-Net, the No-Skip U-Net and the attention-gated U-Net (a short
   CPU schedule);
4. ``nnunet-robust run`` of each model on the seed study's four conditions and three MRI artefacts;
5. ``nnunet-robust eval`` of the three models together, which writes the HTML report.

Everything lives under one output folder (nnU-Net's raw/preprocessed/results folders included, so
the user's own nnU-Net folders are never touched). A finished step is reused on a re-run: the
dataset generator and the runner skip finished files, preprocessing and training are skipped when
their outputs are complete, and an interrupted training continues from its latest checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_robustness.studies.workflow import (
    Pipeline,
    Runner,
    Step,
    eval_done,
    nnunet_environment,
    preprocessing_done,
    run_command,
    run_done,
    tool,
    training_step,
)

DATASET_ID = 901
DATASET_NAME = "Dataset901_DemoTextures"
CONFIGURATION = "2d"
# the demo's data is synthetic; the last line it prints says where a user's own model goes from here
NEXT_STEP = ("Next, your own data: README.md, section \"Your own data\" (a trained nnU-Net model folder -> "
             "nnunet-robust run -> nnunet-robust eval -> report.html)")

MODELS = {  # report name -> trainer
    "UNet": "nnUNetTrainer_short",
    "NoSkip": "nnUNetTrainerNoSkip_short",
    "AttentionGate": "nnUNetTrainerAttentionGate_short",
}
CONDITIONS = ["motion:1,3,5", "ghosting:1,3,5", "bias_field:1,3,5"]  # plus the seed study's four, and clean
CONDITION_SETS = ["seed-study"]


@dataclass
class DemoSettings:
    output: Path
    device: str = "cpu"
    image_size: int = 64
    alphas: tuple[float, ...] = (0.2, 0.6)  # two complexity levels: textures clearly / barely distinct
    train_cases_per_alpha: int = 12
    test_cases_per_alpha: int = 6
    seed: int = 0

    @property
    def raw(self) -> Path:
        return self.output / "nnUNet_raw" / DATASET_NAME

    @property
    def preprocessed(self) -> Path:
        return self.output / "nnUNet_preprocessed" / DATASET_NAME

    def model_folder(self, trainer: str) -> Path:
        return self.output / "nnUNet_results" / DATASET_NAME / f"{trainer}__nnUNetPlans__{CONFIGURATION}"

    def predictions(self, model: str) -> Path:
        return self.output / "robustness" / model

    @property
    def evaluation(self) -> Path:
        return self.output / "evaluation"


@dataclass
class Demo:
    settings: DemoSettings
    runner: Runner = run_command
    log: list[str] = field(default_factory=list)

    def steps(self) -> list[Step]:
        s = self.settings
        make = [tool("nnunet-robust"), "make-dataset", "textures", "-d", str(DATASET_ID), "--name", "DemoTextures",
                "--shape", str(s.image_size), str(s.image_size), "--alpha", *map(str, s.alphas),
                "--num-train", str(s.train_cases_per_alpha), "--num-test", str(s.test_cases_per_alpha),
                "--seed", str(s.seed)]
        plan = [tool("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIGURATION, "-np", "1",
                "-npfp", "1", "--verify_dataset_integrity"]
        # dataset.json is written last, so it marks a complete dataset (the generator refuses a folder
        # made with other arguments, and finishes an interrupted one).
        steps = [
            Step("synthetic texture dataset at alpha " + ", ".join(map(str, s.alphas)),
                 lambda: (s.raw / "dataset.json").is_file(), lambda: [make], weight=5),
            Step("nnUNetv2_plan_and_preprocess", lambda: preprocessing_done(s.raw, s.preprocessed, CONFIGURATION),
                 lambda: [plan], weight=20),
        ]
        for model, trainer in MODELS.items():
            steps.append(training_step(f"nnUNetv2_train {model} ({trainer})", s.model_folder(trainer),
                                       [tool("nnUNetv2_train"), str(DATASET_ID), CONFIGURATION, "0", "-tr", trainer,
                                        "-device", s.device], weight=60))
        steps.append(Step("nnunet-robust run (clean, seed-study, MRI artefacts) for each model",
                          lambda: all(self._run_done(model) for model in MODELS), self._run_commands, weight=60))
        steps.append(Step("nnunet-robust eval of the three models, HTML report",
                          lambda: eval_done(s.evaluation, [s.predictions(m) for m in MODELS]),
                          lambda: [[tool("nnunet-robust"), "eval",
                                    *[a for m in MODELS for a in ("--model", f"{m}={s.predictions(m)}")],
                                    "-ref", str(s.raw / "labelsTs"), "-djfile", str(s.raw / "dataset.json"),
                                    "-o", str(s.evaluation), "--seed", str(s.seed)]], weight=30))
        return steps

    def _run_commands(self) -> list[list[str]]:
        s = self.settings
        return [[tool("nnunet-robust"), "run", "-i", str(s.raw / "imagesTs"), "-o", str(s.predictions(model)),
                 "-m", str(s.model_folder(trainer)), "-f", "0", "-device", s.device, "--disable_tta",
                 "--reference", str(s.raw / "labelsTs"), "--seed", str(s.seed), "--conditions", *CONDITIONS,
                 "--preset", *CONDITION_SETS]
                for model, trainer in MODELS.items() if not self._run_done(model)]

    def _run_done(self, model: str) -> bool:
        return run_done(self.settings.predictions(model), CONDITIONS, CONDITION_SETS,
                        self.settings.model_folder(MODELS[model]))

    def run(self) -> Path:
        """Run (or continue) the demo; nnU-Net's and our tools print their progress to the terminal."""
        s = self.settings
        start = time.perf_counter()

        def printer(line: str) -> None:
            self.log.append(line)
            print(line, flush=True)

        Pipeline(nnunet_environment(s.output), None, self.runner, printer=printer).run(self.steps())
        report = s.evaluation / "report.html"
        print(f"\nDemo finished in {(time.perf_counter() - start) / 60:.1f} min. Report: {report}", flush=True)
        print(NEXT_STEP, flush=True)
        return report

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

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from nnunet_robustness.errors import UserInputError

DATASET_ID = 901
DATASET_NAME = "Dataset901_DemoTextures"
CONFIGURATION = "2d"
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


Runner = Callable[[Sequence[str], dict], None]


def run_command(command: Sequence[str], env: dict) -> None:
    """Run a step's command with its output streaming to the terminal (nnU-Net prints its progress)."""
    print(f"  $ {' '.join(command)}", flush=True)
    result = subprocess.run(list(command), env=env)
    if result.returncode != 0:
        raise UserInputError(f"demo step failed ({command[0]} exited {result.returncode}); fix the cause and run "
                             "the demo again: finished steps are reused")


@dataclass
class Demo:
    settings: DemoSettings
    runner: Runner = run_command
    log: list[str] = field(default_factory=list)

    def env(self) -> dict:
        cpus = str(min(os.cpu_count() or 1, 4))
        return {**os.environ,
                "nnUNet_raw": str(self.settings.output / "nnUNet_raw"),
                "nnUNet_preprocessed": str(self.settings.output / "nnUNet_preprocessed"),
                "nnUNet_results": str(self.settings.output / "nnUNet_results"),
                "nnUNet_n_proc_DA": cpus, "nnUNet_def_n_proc": cpus, "nnUNet_compile": "false"}

    def _tool(self, name: str) -> str:
        return str(Path(sys.executable).parent / name)

    def _step(self, number: int, total: int, title: str, done: bool) -> bool:
        status = "reused" if done else "running"
        line = f"[{number}/{total}] {title} ({status})"
        self.log.append(line)
        print(line, flush=True)
        return not done

    def run(self) -> Path:
        s, env = self.settings, self.env()
        for folder in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (s.output / folder).mkdir(parents=True, exist_ok=True)
        total, start = 4 + len(MODELS), time.perf_counter()

        # dataset.json is written last, so it marks a complete dataset (the generator refuses a folder
        # made with other arguments, and finishes an interrupted one).
        if self._step(1, total, "synthetic texture dataset at alpha " + ", ".join(map(str, s.alphas)),
                      (s.raw / "dataset.json").is_file()):
            self.runner([self._tool("nnunet-robust"), "make-dataset", "textures", "-d", str(DATASET_ID),
                         "--name", "DemoTextures", "--shape", str(s.image_size), str(s.image_size),
                         "--alpha", *map(str, s.alphas), "--num-train", str(s.train_cases_per_alpha),
                         "--num-test", str(s.test_cases_per_alpha), "--seed", str(s.seed)], env)

        if self._step(2, total, "nnUNetv2_plan_and_preprocess", self._preprocessing_done()):
            self.runner([self._tool("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIGURATION,
                         "-np", "1", "-npfp", "1", "--verify_dataset_integrity"], env)

        for number, (model, trainer) in enumerate(MODELS.items(), start=3):
            folder = s.model_folder(trainer) / "fold_0"
            if self._step(number, total, f"nnUNetv2_train {model} ({trainer})",
                          (folder / "checkpoint_final.pth").is_file()):
                resume = ["--c"] if (folder / "checkpoint_latest.pth").is_file() else []
                self.runner([self._tool("nnUNetv2_train"), str(DATASET_ID), CONFIGURATION, "0", "-tr", trainer,
                             "-device", s.device, *resume], env)

        number = 3 + len(MODELS)
        runs_done = all(self._run_done(model) for model in MODELS)
        if self._step(number, total, "nnunet-robust run (clean, seed-study, MRI artefacts) for each model",
                      runs_done):
            for model, trainer in MODELS.items():
                if self._run_done(model):
                    continue
                self.runner([self._tool("nnunet-robust"), "run", "-i", str(s.raw / "imagesTs"),
                             "-o", str(s.predictions(model)), "-m", str(s.model_folder(trainer)), "-f", "0",
                             "-device", s.device, "--disable_tta", "--reference", str(s.raw / "labelsTs"),
                             "--seed", str(s.seed), "--conditions", *CONDITIONS, "--preset", *CONDITION_SETS], env)

        if self._step(number + 1, total, "nnunet-robust eval of the three models, HTML report", self._eval_done()):
            self.runner([self._tool("nnunet-robust"), "eval",
                         *[arg for model in MODELS for arg in ("--model", f"{model}={s.predictions(model)}")],
                         "-ref", str(s.raw / "labelsTs"), "-djfile", str(s.raw / "dataset.json"),
                         "-o", str(s.evaluation), "--seed", str(s.seed)], env)
        report = s.evaluation / "report.html"
        minutes = (time.perf_counter() - start) / 60
        print(f"\nDemo finished in {minutes:.1f} min. Report: {report}", flush=True)
        return report

    def _preprocessing_done(self) -> bool:
        plans = self.settings.preprocessed / "nnUNetPlans.json"
        dataset_json = self.settings.raw / "dataset.json"
        if not plans.is_file() or not dataset_json.is_file():
            return False
        data = self.settings.preprocessed / json.loads(plans.read_text())["configurations"][CONFIGURATION][
            "data_identifier"]
        expected = json.loads(dataset_json.read_text())["numTraining"]
        return data.is_dir() and len(list(data.glob("*.pkl"))) == expected

    def _run_done(self, model: str) -> bool:
        """Every demo condition of every test case predicted (run.json lists what the folder holds)."""
        from nnunet_robustness.corruptions.specs import resolve_conditions
        from nnunet_robustness.runner.manifest import RunManifest

        folder = self.settings.predictions(model)
        manifest = RunManifest.read_if_present(folder)
        return manifest is not None and manifest.is_complete(folder, resolve_conditions(CONDITIONS, CONDITION_SETS))

    def _eval_done(self) -> bool:
        """A report newer than every run.json: the evaluation of exactly these predictions exists."""
        from nnunet_robustness.runner.manifest import RunManifest

        summary, report = self.settings.evaluation / "summary.json", self.settings.evaluation / "report.html"
        if not (summary.is_file() and report.is_file()):
            return False
        manifests = [RunManifest.path(self.settings.predictions(model)) for model in MODELS]
        return all(m.is_file() and m.stat().st_mtime <= summary.stat().st_mtime for m in manifests)

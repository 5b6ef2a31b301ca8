"""What the three seed studies share: where things live, the steps over nnU-Net's real CLIs, and what
is known about each arm (its training runs, their convergence, and whether it beat the trivial
baseline) before a finding is judged.

Each study (``skip_complexity``, ``noise``, ``context_fbr``) is one module with its steps, findings and
tables. All share the datasets and models they have in common: each dataset is "textures at training
level alpha, tested at every test level", each model nnU-Net's default foreground sampling with its
sampled-patch FBR logged (``<trainer>_fg033_<schedule>``, :meth:`Scale.schedule_for`), trained on nnU-Net's folds of the scale
(:attr:`Scale.folds`): the folds are the replicate training runs of an arm (different seeds and a
different 80 % of the training images), analysed with ``eval``'s two-level bootstrap (runs, then cases).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.studies import baseline as trivial
from nnunet_robustness.studies.convergence import Convergence, check_training
from nnunet_robustness.studies.findings import ArmState, Finding, runs_table
from nnunet_robustness.studies.scales import SEED, Scale
from nnunet_robustness.studies.workflow import (
    Step,
    eval_done,
    predicted_by_another_model,
    preprocessing_done,
    run_done,
    tool,
    training_step,
)

CONFIGURATION = "2d"
ARCHITECTURES = {"UNet": "nnUNetTrainer", "NoSkip": "nnUNetTrainerNoSkip", "AttentionGate": "nnUNetTrainerAttentionGate"}
CLEAN = "clean"


def trainer_name(architecture: str, schedule: str) -> str:
    return f"{ARCHITECTURES[architecture]}_fg033" + (f"_{schedule}" if schedule else "")


def alpha_tag(alpha: float) -> str:
    return f"A{round(alpha * 100):03d}"


def run_names(model: str, folds: Sequence[int]) -> list[str]:
    """How ``eval --model NAME=RUN1,RUN2,...`` names a model's runs in its per-case table."""
    return [model] if len(folds) == 1 else [f"{model}:{k}" for k in range(1, len(folds) + 1)]


@dataclass
class StudyContext:
    """Where everything of one scale lives: ``root`` holds nnU-Net's folders and one folder per study."""

    root: Path
    scale: Scale
    device: str = "cpu"

    def dataset_id(self, alpha: float) -> int:
        return 910 + round(alpha * 10)

    def dataset_name(self, alpha: float) -> str:
        return f"Dataset{self.dataset_id(alpha)}_StudyTextures{alpha_tag(alpha)}"

    def wide_id(self, alpha: float) -> int:
        return 920 + round(alpha * 10)

    def wide_name(self, alpha: float) -> str:
        return f"Dataset{self.wide_id(alpha)}_StudyTexturesWide{alpha_tag(alpha)}"

    def example_id(self, alpha: float) -> int:
        return 930 + round(alpha * 10)

    def example_name(self, alpha: float) -> str:
        return f"Dataset{self.example_id(alpha)}_ExampleTextures{alpha_tag(alpha)}"

    def raw(self, name: str) -> Path:
        return self.root / "nnUNet_raw" / name

    def preprocessed(self, name: str) -> Path:
        return self.root / "nnUNet_preprocessed" / name

    def model_folder(self, dataset: str, architecture: str, configuration: str = CONFIGURATION) -> Path:
        trainer = trainer_name(architecture, self.scale.schedule_for(architecture, configuration))
        return self.root / "nnUNet_results" / dataset / f"{trainer}__nnUNetPlans__{configuration}"

    def cases_at(self, dataset: str, alpha: float) -> list[str]:
        """The dataset's test cases at blend level ``alpha`` (make-dataset's generation record)."""
        from nnunet_robustness.datasets.textures_dataset import case_alphas

        return [case for case, level in case_alphas(self.raw(dataset), "test").items()
                if round(level, 2) == round(alpha, 2)]


class Study:
    """A study: its steps (resumable), its findings and the tables of its report."""

    name = ""
    title = ""
    question = ""

    def __init__(self, context: StudyContext) -> None:
        self.c = context
        self.folder = context.root / self.name
        self._baselines: dict[str, tuple[trivial.TrivialBaseline, dict[str, float]]] = {}
        # where a run's convergence is read from: its fold folder (a re-analysis of older results whose
        # checkpoints were not kept reads their recorded curves instead: scripts/rejudge_first_wave.py)
        self.convergence_of: Callable[[Path, str], Convergence] = check_training

    @property
    def folds(self) -> tuple[int, ...]:
        return self.c.scale.folds

    # --- shared steps --------------------------------------------------------------------------------------
    def make_dataset_command(self, dataset_id: int, name: str, size: int, train_alphas: Sequence[float],
                             test_alphas: Sequence[float], num_train: int, blob_scale: float = 1.0,
                             seed: int = SEED) -> list[str]:
        s = self.c.scale
        command = [tool("nnunet-robust"), "make-dataset", "textures", "-d", str(dataset_id), "--name",
                   name.split("_", 1)[1], "--shape", str(size), str(size), "--train-alpha", *map(str, train_alphas),
                   "--test-alpha", *map(str, test_alphas), "--num-train", str(num_train), "--num-test",
                   str(s.num_test), "--seed", str(seed)]
        if blob_scale != 1.0:  # the same blobs in pixels on a larger canvas (default diameters 0.3 - 0.6)
            command += ["--blob-diameter", f"{0.3 * blob_scale:g}", f"{0.6 * blob_scale:g}"]
        return command

    def dataset_steps(self, alpha: float) -> list[Step]:
        c, s = self.c, self.c.scale
        name = c.dataset_name(alpha)
        make = self.make_dataset_command(c.dataset_id(alpha), name, s.image_size, [alpha], s.test_alphas, s.num_train)
        plan = [tool("nnUNetv2_plan_and_preprocess"), "-d", str(c.dataset_id(alpha)), "-c", CONFIGURATION,
                "-np", "2", "-npfp", "2", "--verify_dataset_integrity"]
        return [
            Step(f"make-dataset textures alpha {alpha}", lambda: (c.raw(name) / "dataset.json").is_file(),
                 lambda: [make], weight=5 + 0.02 * s.num_train),
            Step(f"nnUNetv2_plan_and_preprocess {name}",
                 lambda: preprocessing_done(c.raw(name), c.preprocessed(name), CONFIGURATION),
                 lambda: [plan], weight=15 + 0.1 * s.num_train),
        ]

    def training_steps(self, alpha: float, configuration: str = CONFIGURATION) -> list[Step]:
        """One ``nnUNetv2_train`` per fold and architecture, fold by fold (a stopped study has whole folds)."""
        c, s = self.c, self.c.scale
        name = c.dataset_name(alpha)
        steps = []
        for fold in self.folds:
            for architecture in ARCHITECTURES:
                command = [tool("nnUNetv2_train"), str(c.dataset_id(alpha)), configuration, str(fold), "-tr",
                           trainer_name(architecture, s.schedule_for(architecture, configuration)), "-device", c.device]
                steps.append(training_step(f"nnUNetv2_train {architecture} {name} {configuration} fold {fold}",
                                           c.model_folder(name, architecture, configuration), command, str(fold),
                                           weight=25 + s.iterations_for(architecture, configuration)
                                           * s.seconds_per_iteration))
        return steps

    def run_steps(self, alpha: float, architecture: str, output: Path, specs: Sequence[str] = (),
                  sets: Sequence[str] = (), configuration: str = CONFIGURATION, test_dataset: str | None = None
                  ) -> list[Step]:
        """``run`` of every fold's model (``output/fold_K``) on the test images of ``test_dataset``
        (default: the training dataset's own)."""
        c, s = self.c, self.c.scale
        name = c.dataset_name(alpha)
        raw = c.raw(test_dataset or name)
        steps = []
        for fold in self.folds:
            folder, model = output / f"fold_{fold}", c.model_folder(name, architecture, configuration)
            command = [tool("nnunet-robust"), "run", "-i", str(raw / "imagesTs"), "-o", str(folder),
                       "-m", str(model), "-f", str(fold), "-device",
                       c.device, "--disable_tta", "--reference", str(raw / "labelsTs"), "--seed", str(SEED)]
            command += ["--conditions", *specs] if specs else []
            command += ["--preset", *sets] if sets else []
            cases = s.num_test * len(s.test_alphas)

            def commands(folder=folder, model=model, command=command) -> list[list[str]]:
                return [[*command, "--overwrite"] if predicted_by_another_model(folder, model) else command]

            steps.append(Step(f"nnunet-robust run {output.name} fold {fold} on {raw.name}",
                              lambda folder=folder, model=model: run_done(folder, specs, sets, model),
                              commands, weight=10 + 0.05 * cases * (1 + 4 * bool(sets))))
        return steps

    def prediction_runs(self, output: Path) -> list[Path]:
        return [output / f"fold_{fold}" for fold in self.folds]

    def eval_step(self, test_dataset: str, models: dict[str, list[Path]], output: Path) -> Step:
        raw = self.c.raw(test_dataset)
        command = [tool("nnunet-robust"), "eval",
                   *[arg for model, runs in models.items() for arg in ("--model", f"{model}={','.join(map(str, runs))}")],
                   "-ref", str(raw / "labelsTs"), "-djfile", str(raw / "dataset.json"), "-o", str(output),
                   "--seed", str(SEED), "--allow-weak-models"]  # weak models at hard levels are the point of
        # a study; the study judges them against the trivial baseline instead of leaving any out
        folders = [run for runs in models.values() for run in runs]
        return Step(f"nnunet-robust eval {output.name}", lambda: eval_done(output, folders), lambda: [command],
                    weight=15 + 2 * len(folders))

    # --- what is known about an arm ------------------------------------------------------------------------
    def baseline(self, dataset: str) -> tuple[trivial.TrivialBaseline, dict[str, float]] | None:
        """The trivial baseline fitted on ``dataset``'s training labels and its Dice per test case."""
        if dataset not in self._baselines:
            if not (self.c.raw(dataset) / "labelsTr").is_dir():
                return None
            self._baselines[dataset] = trivial.dataset_baseline(self.c.raw(dataset))
        return self._baselines[dataset]

    def baseline_record(self, dataset: str, cases: Sequence[str]) -> dict | None:
        fitted = self.baseline(dataset)
        return None if fitted is None else {"dataset": dataset, **trivial.summary(*fitted, cases)}

    def arm_state(self, model: str, model_folder: Path, scores: pd.DataFrame | None, dataset: str,
                  in_distribution: Sequence[str]) -> ArmState:
        """Convergence of each fold's training, and the arm's in-distribution clean Dice against the
        trivial baseline of ``dataset`` on the ``in_distribution`` cases."""
        runs = run_names(model, self.folds)
        state = ArmState(model, runs, [self.convergence_of(model_folder / f"fold_{fold}", run).to_json()
                                       for fold, run in zip(self.folds, runs)])
        state.learned = self.against_baseline(dataset, scores, CLEAN, in_distribution, runs)
        return state

    def against_baseline(self, dataset: str, scores: pd.DataFrame | None, condition: str, cases: Sequence[str],
                         runs: Sequence[str]) -> dict | None:
        """An arm's (run-averaged) Dice under ``condition`` on ``cases`` against the trivial baseline of
        ``dataset`` on the same cases, paired (:func:`beats_baseline`); None when either is missing."""
        fitted = self.baseline(dataset)
        table = None if fitted is None or scores is None else runs_table(scores, condition, cases, runs)
        if table is None or not len(table := table.dropna()):
            return None
        base = np.array([fitted[1].get(case, np.nan) for case in table.index])
        return beats_baseline(table.to_numpy(float).mean(axis=1), base)

    def under_condition(self, dataset: str, scores: pd.DataFrame | None, condition: str, cases: Sequence[str],
                        arms: dict[str, Sequence[str]]) -> dict[str, dict]:
        """:meth:`against_baseline` for each arm ({arm: runs}) under a condition that is not the training
        distribution (a finding's ``under_condition``); arms without data are left out."""
        found = {arm: self.against_baseline(dataset, scores, condition, cases, runs) for arm, runs in arms.items()}
        return {arm: record for arm, record in found.items() if record is not None}

    # --- what each study defines ---------------------------------------------------------------------------
    def steps(self) -> list[Step]:
        raise NotImplementedError

    def findings(self) -> list[Finding]:
        raise NotImplementedError

    def tables(self) -> dict[str, pd.DataFrame]:
        """Paper-style tables for study.html and study.json."""
        raise NotImplementedError

    def model_folders(self) -> dict[str, Path]:
        """Model name -> nnU-Net model folder (its fold_K subfolders), for training curves and convergence."""
        raise NotImplementedError

    def evaluations(self) -> list[Path]:
        """The study's eval output folders."""
        raise NotImplementedError

    def recommendations(self) -> list[dict]:
        """``recommend``'s answers for example datasets (the skip-complexity study asks it)."""
        return []


def beats_baseline(model: np.ndarray, base: np.ndarray, seed: int = 0) -> dict:
    """Paired per case: the model's (run-averaged) Dice minus the trivial baseline's. Learned = the 95 %
    interval of the mean difference lies above 0."""
    from nnunet_robustness.analysis.robustness import paired_difference

    keep = np.isfinite(model) & np.isfinite(base)
    if keep.sum() < 2:
        return {"learned": None, "reason": "fewer than 2 in-distribution cases", "n": int(keep.sum())}
    result = paired_difference(model[keep] - base[keep], seed, 2000)
    return {"learned": bool(result["ci_low"] > 0), "model_dice": float(model[keep].mean()),
            "baseline_dice": float(base[keep].mean()), "mean_difference": result["mean_difference"],
            "ci_low": result["ci_low"], "ci_high": result["ci_high"], "n": result["n"]}


def mean_table(scores: pd.DataFrame, condition: str, case_groups: dict[str, list[str]],
               arms: dict[str, list[str]]) -> pd.DataFrame:
    """Rows: case group (e.g. test alpha); columns: arm; values: mean Dice over the group's cases and the
    arm's runs."""
    if condition not in scores.index.get_level_values(0):
        return pd.DataFrame()
    table = scores.loc[condition]
    present = {arm: runs for arm, runs in arms.items() if set(runs) <= set(table.columns)}
    return pd.DataFrame({group: {arm: float(np.nanmean(table[table.index.isin(cases)][runs].to_numpy(float)))
                                 for arm, runs in present.items()} for group, cases in case_groups.items()}).T

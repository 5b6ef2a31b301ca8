"""The three seed studies as step lists over nnU-Net's real CLIs, and their findings.

- ``skip-complexity`` (F1): U-Net vs No-Skip vs attention-gated skips across texture blend levels.
- ``noise`` (F2): the same architectures under the seed study's speckle noise and background blur.
- ``context-fbr`` (F3): patch size (context) vs foreground ratio, per architecture.

All three share the datasets and models they have in common: each dataset is "textures at training
level alpha, tested at every test level", each model nnU-Net's default foreground sampling with its
sampled-patch FBR logged (``<trainer>_fg033_<schedule>``). The noise study and the context study train
on the lowest level, so run in the same output folder after ``skip-complexity`` they reuse its
datasets and models and only predict and evaluate (context 1.0 is nnU-Net's own 2d configuration).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from nnunet_robustness.studies import findings as fnd
from nnunet_robustness.studies.findings import Finding
from nnunet_robustness.studies.pipeline import (
    Step,
    eval_done,
    newer_than_all,
    preprocessing_done,
    run_done,
    tool,
    training_step,
)
from nnunet_robustness.studies.scales import SEED, Scale

CONFIGURATION = "2d"
ARCHITECTURES = {"UNet": "nnUNetTrainer", "NoSkip": "nnUNetTrainerNoSkip", "AttentionGate": "nnUNetTrainerAttentionGate"}
SHIFT_ALPHA = 0.6  # the published cross-level test: trained at alpha 0.1, tested at 0.6
NOISE_CONDITIONS = ("seed-study_harder", "seed-study_hardest")  # speckle variance 0.1 / 0.3
CLEAN = "clean"


def trainer_name(architecture: str, schedule: str) -> str:
    return f"{ARCHITECTURES[architecture]}_fg033" + (f"_{schedule}" if schedule else "")


def alpha_tag(alpha: float) -> str:
    return f"A{round(alpha * 100):03d}"


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

    def example_id(self, alpha: float) -> int:
        return 930 + round(alpha * 10)

    def example_name(self, alpha: float) -> str:
        return f"Dataset{self.example_id(alpha)}_ExampleTextures{alpha_tag(alpha)}"

    def raw(self, name: str) -> Path:
        return self.root / "nnUNet_raw" / name

    def preprocessed(self, name: str) -> Path:
        return self.root / "nnUNet_preprocessed" / name

    def model_folder(self, dataset: str, architecture: str, configuration: str = CONFIGURATION) -> Path:
        trainer = trainer_name(architecture, self.scale.schedule)
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

    # --- shared steps --------------------------------------------------------------------------------------
    def dataset_steps(self, alpha: float) -> list[Step]:
        c, s = self.c, self.c.scale
        name = c.dataset_name(alpha)
        make = [tool("nnunet-robust"), "make-dataset", "textures", "-d", str(c.dataset_id(alpha)),
                "--name", name.split("_", 1)[1], "--shape", str(s.image_size), str(s.image_size),
                "--train-alpha", str(alpha), "--test-alpha", *map(str, s.test_alphas),
                "--num-train", str(s.num_train), "--num-test", str(s.num_test), "--seed", str(SEED)]
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
        c, s = self.c, self.c.scale
        name = c.dataset_name(alpha)
        steps = []
        for architecture in ARCHITECTURES:
            trainer = trainer_name(architecture, s.schedule)
            command = [tool("nnUNetv2_train"), str(c.dataset_id(alpha)), configuration, "0", "-tr", trainer,
                       "-device", c.device]
            steps.append(training_step(f"nnUNetv2_train {architecture} {name} {configuration}",
                                       c.model_folder(name, architecture, configuration), command,
                                       weight=25 + s.iterations * s.seconds_per_iteration))
        return steps

    def run_step(self, alpha: float, architecture: str, output: Path, specs: Sequence[str] = (),
                 sets: Sequence[str] = (), configuration: str = CONFIGURATION) -> Step:
        c, s = self.c, self.c.scale
        name = c.dataset_name(alpha)
        command = [tool("nnunet-robust"), "run", "-i", str(c.raw(name) / "imagesTs"), "-o", str(output),
                   "-m", str(c.model_folder(name, architecture, configuration)), "-f", "0", "-device", c.device,
                   "--disable_tta", "--reference", str(c.raw(name) / "labelsTs"), "--seed", str(SEED)]
        if specs:
            command += ["--conditions", *specs]
        if sets:
            command += ["--preset", *sets]
        cases = s.num_test * len(s.test_alphas)
        return Step(f"nnunet-robust run {output.name} on {name}", lambda: run_done(output, specs, sets),
                    lambda: [command], weight=10 + 0.05 * cases * (1 + 4 * bool(sets)))

    def eval_step(self, alpha: float, models: dict[str, Path], output: Path) -> Step:
        c = self.c
        raw = c.raw(c.dataset_name(alpha))
        command = [tool("nnunet-robust"), "eval",
                   *[arg for model, folder in models.items() for arg in ("--model", f"{model}={folder}")],
                   "-ref", str(raw / "labelsTs"), "-djfile", str(raw / "dataset.json"), "-o", str(output),
                   "--seed", str(SEED), "--allow-weak-models"]  # weak models at hard levels are the point of
        # a study; study.html shows eval's sanity gate for each model instead of leaving any out
        return Step(f"nnunet-robust eval {output.name}", lambda: eval_done(output, list(models.values())),
                    lambda: [command], weight=15 + 2 * len(models))

    # --- what each study defines ---------------------------------------------------------------------------
    def steps(self) -> list[Step]:
        raise NotImplementedError

    def findings(self) -> list[Finding]:
        raise NotImplementedError

    def tables(self) -> dict[str, pd.DataFrame]:
        """Paper-style tables for study.html and study.json."""
        raise NotImplementedError

    def model_folders(self) -> dict[str, Path]:
        """Model name -> nnU-Net model folder, for the training curves."""
        raise NotImplementedError

    def evaluations(self) -> list[Path]:
        """The study's eval output folders."""
        raise NotImplementedError

    def recommendations(self) -> list[dict]:
        """``recommend``'s answers for example datasets (the skip-complexity study asks it)."""
        return []


def mean_table(scores: pd.DataFrame, condition: str, case_groups: dict[str, list[str]]) -> pd.DataFrame:
    """Rows: case group (e.g. test alpha); columns: model; values: mean Dice over the group's cases."""
    if condition not in scores.index.get_level_values(0):
        return pd.DataFrame()
    table = scores.loc[condition]
    return pd.DataFrame({group: table[table.index.isin(cases)].mean() for group, cases in case_groups.items()}).T


class SkipComplexity(Study):
    name = "skip-complexity"
    title = "F1: skip connections vs task complexity"
    question = ("Do skip connections help on easy tasks and hurt when foreground and background textures are "
                "alike? (U-Net vs No-Skip vs attention-gated U-Net, trained and tested across texture blend levels)")
    published = {
        "low": "U-Net +0.3 % relative Dice over No-Skip at alpha 0.1 (ahead by < 1 % for alpha <= 0.7)",
        "high": "U-Net -5.6 % relative Dice vs No-Skip at alpha 0.9 (-5.2 % at 0.8)",
        "shift": "trained at alpha 0.1, tested at 0.6: No-Skip 0.860, U-Net 0.663, attention-gated 0.299",
    }

    def evaluation(self, alpha: float) -> Path:
        return self.folder / "evaluation" / self.c.dataset_name(alpha)

    def predictions(self, alpha: float, architecture: str) -> Path:
        return self.folder / "robustness" / self.c.dataset_name(alpha) / architecture

    def complexity_csv(self, name: str) -> Path:
        return self.folder / "complexity" / f"{name}.csv"

    def recommendation(self, example_alpha: float) -> Path:
        return self.folder / f"recommendation_{self.c.example_name(example_alpha)}.json"

    def steps(self) -> list[Step]:
        c, s = self.c, self.c.scale
        steps: list[Step] = []
        for alpha in s.train_alphas:
            steps += self.dataset_steps(alpha) + self.training_steps(alpha)
        for alpha in s.train_alphas:
            for architecture in ARCHITECTURES:
                steps.append(self.run_step(alpha, architecture, self.predictions(alpha, architecture)))
            steps.append(self.eval_step(alpha, {a: self.predictions(alpha, a) for a in ARCHITECTURES},
                                        self.evaluation(alpha)))
            name = c.dataset_name(alpha)
            csv = self.complexity_csv(name)
            steps.append(Step(f"nnunet-robust complexity {name}", csv.is_file,
                              lambda name=name, csv=csv: [[tool("nnunet-robust"), "complexity", str(c.raw(name)),
                                                           "-o", str(csv)]], weight=5 + 0.01 * s.num_train))
        for example in s.example_alphas:
            steps += self.recommendation_steps(example)
        return steps

    def recommendation_steps(self, example: float) -> list[Step]:
        """A small labelled dataset at another level stands for "your data"; recommend answers for it."""
        c, s = self.c, self.c.scale
        name = c.example_name(example)
        make = [tool("nnunet-robust"), "make-dataset", "textures", "-d", str(c.example_id(example)),
                "--name", name.split("_", 1)[1], "--shape", str(s.image_size), str(s.image_size),
                "--train-alpha", str(example), "--test-alpha", "--num-train", str(max(5, s.num_test)),
                "--seed", str(SEED + 1)]
        csv = self.complexity_csv(name)
        evidence = [arg for alpha in s.train_alphas for arg in
                    ("--evidence", f"{self.evaluation(alpha)}={self.complexity_csv(c.dataset_name(alpha))}")]
        output = self.recommendation(example)
        recommend = [tool("nnunet-robust"), "recommend", *evidence, "--in-distribution", "--dataset", str(csv),
                     "--bins", str(max(2, len(s.train_alphas))), "--min-cases", str(min(10, s.num_test)),
                     "-o", str(output)]
        inputs = [csv, *[self.evaluation(a) / "summary.json" for a in s.train_alphas]]
        return [
            Step(f"example dataset at alpha {example} and its complexity", csv.is_file,
                 lambda: [[*make], [tool("nnunet-robust"), "complexity", str(c.raw(name)), "-o", str(csv)]],
                 weight=8),
            Step(f"nnunet-robust recommend for {name}", lambda: newer_than_all(output, inputs), lambda: [recommend],
                 weight=8),
        ]

    def recommendations(self) -> list[dict]:
        from nnunet_robustness.io import read_json

        answers = []
        for example in self.c.scale.example_alphas:
            path = self.recommendation(example)
            if path.is_file():
                query = read_json(path, "recommendation").get("query") or {}
                answers.append({"example dataset": self.c.example_name(example), "alpha": f"{example:g}",
                                "median TD (bits)": query.get("td_median"), "verdict": query.get("verdict"),
                                "model": query.get("model"), "reason": query.get("reason"),
                                "file": path.name})
        return answers

    def _scores(self, alpha: float) -> pd.DataFrame | None:
        evaluation = self.evaluation(alpha)
        return fnd.case_scores(fnd.read_per_case(evaluation)) if (evaluation / "summary.json").is_file() else None

    def findings(self) -> list[Finding]:
        s = self.c.scale
        low, high = min(s.train_alphas), max(s.train_alphas)
        found = [
            Finding("skip_helps_easy", f"At an easy level (trained and tested at alpha {low}), U-Net is ahead of "
                    "No-Skip", "Dice(U-Net) - Dice(No-Skip)", self.published["low"]),
            Finding("skip_hurts_hard", f"At a hard level (trained and tested at alpha {high}), No-Skip is ahead of "
                    "U-Net", "Dice(No-Skip) - Dice(U-Net)", self.published["high"]),
            Finding("shift_noskip", f"Trained at alpha {low} and tested at {SHIFT_ALPHA}, No-Skip is ahead of U-Net",
                    "Dice(No-Skip) - Dice(U-Net)", self.published["shift"]),
            Finding("shift_attention", f"Trained at alpha {low} and tested at {SHIFT_ALPHA}, U-Net is ahead of the "
                    "attention-gated U-Net", "Dice(U-Net) - Dice(AttentionGate)", self.published["shift"]),
        ]
        empty = pd.Series(dtype=float)
        differences = [empty] * len(found)
        low_scores, high_scores = self._scores(low), self._scores(high)
        name_low, name_high = self.c.dataset_name(low), self.c.dataset_name(high)
        if low_scores is not None:
            differences[0] = fnd.score_difference(low_scores, CLEAN, self.c.cases_at(name_low, low), "UNet", "NoSkip")
            shifted = self.c.cases_at(name_low, SHIFT_ALPHA)
            differences[2] = fnd.score_difference(low_scores, CLEAN, shifted, "NoSkip", "UNet")
            differences[3] = fnd.score_difference(low_scores, CLEAN, shifted, "UNet", "AttentionGate")
        if high_scores is not None and high != low:
            differences[1] = fnd.score_difference(high_scores, CLEAN, self.c.cases_at(name_high, high), "NoSkip",
                                                  "UNet")
        return fnd.judge(found, differences)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Mean clean Dice per (training level, test level) x architecture."""
        rows = []
        for alpha in self.c.scale.train_alphas:
            scores = self._scores(alpha)
            if scores is None:
                continue
            name = self.c.dataset_name(alpha)
            groups = {f"{test:g}": self.c.cases_at(name, test) for test in self.c.scale.test_alphas}
            table = mean_table(scores, CLEAN, groups)
            for test, row in table.iterrows():
                rows.append({"trained at alpha": f"{alpha:g}", "tested at alpha": test, **row.to_dict()})
        return {"Mean clean Dice by training and test level": pd.DataFrame(rows)}

    def evaluations(self) -> list[Path]:
        return [self.evaluation(alpha) for alpha in self.c.scale.train_alphas]

    def model_folders(self) -> dict[str, Path]:
        return {f"{a} alpha {alpha:g}": self.c.model_folder(self.c.dataset_name(alpha), a)
                for alpha in self.c.scale.train_alphas for a in ARCHITECTURES}


class Noise(Study):
    name = "noise"
    title = "F2: robustness to noise"
    question = ("Does No-Skip degrade less than U-Net and the attention-gated U-Net under speckle noise? "
                "(the seed study's test conditions: speckle variance 0.1 / 0.3, background blur sigma 3 / 7 px)")
    published = ("heart MRI, Dice harder (speckle 0.1) / unperturbed / easier: attention .142/.929/.890, "
                 "U-Net .492/.901/.805, No-Skip .814/.833/.823; breast ultrasound: attention .646/.795/.799, "
                 "U-Net .723/.763/.736, No-Skip .735/.761/.749")

    @property
    def alpha(self) -> float:
        return min(self.c.scale.train_alphas)

    def predictions(self, architecture: str) -> Path:
        return self.folder / "robustness" / self.c.dataset_name(self.alpha) / architecture

    @property
    def evaluation(self) -> Path:
        return self.folder / "evaluation" / self.c.dataset_name(self.alpha)

    def steps(self) -> list[Step]:
        steps = self.dataset_steps(self.alpha) + self.training_steps(self.alpha)
        steps += [self.run_step(self.alpha, a, self.predictions(a), sets=["seed-study"]) for a in ARCHITECTURES]
        steps.append(self.eval_step(self.alpha, {a: self.predictions(a) for a in ARCHITECTURES}, self.evaluation))
        return steps

    def _scores(self) -> pd.DataFrame | None:
        return (fnd.case_scores(fnd.read_per_case(self.evaluation))
                if (self.evaluation / "summary.json").is_file() else None)

    def findings(self) -> list[Finding]:
        found, differences = [], []
        scores = self._scores()
        cases = self.c.cases_at(self.c.dataset_name(self.alpha), self.alpha) if scores is not None else []
        for condition, variance in zip(NOISE_CONDITIONS, (0.1, 0.3)):
            for other in ("UNet", "AttentionGate"):
                found.append(Finding(f"noise_{other}_{condition.split('_')[1]}",
                                     f"Under speckle noise of variance {variance} ({condition}), No-Skip's Dice falls "
                                     f"less than {other}'s", f"Dice drop({other}) - Dice drop(No-Skip)",
                                     self.published))
                differences.append(pd.Series(dtype=float) if scores is None else
                                   fnd.degradation_difference(scores, condition, CLEAN, cases, other, "NoSkip"))
        return fnd.judge(found, differences)

    def tables(self) -> dict[str, pd.DataFrame]:
        scores = self._scores()
        if scores is None:
            return {}
        cases = self.c.cases_at(self.c.dataset_name(self.alpha), self.alpha)
        conditions = ["seed-study_hardest", "seed-study_harder", CLEAN, "seed-study_easier", "seed-study_easiest"]
        rows = {condition: mean_table(scores, condition, {condition: cases}).iloc[0]
                for condition in conditions if condition in scores.index.get_level_values(0)}
        return {f"Mean Dice per test condition (trained and tested at alpha {self.alpha:g})":
                pd.DataFrame(rows).T.rename_axis("condition").reset_index()}

    def evaluations(self) -> list[Path]:
        return [self.evaluation]

    def model_folders(self) -> dict[str, Path]:
        return {a: self.c.model_folder(self.c.dataset_name(self.alpha), a) for a in ARCHITECTURES}


class ContextFBR(Study):
    name = "context-fbr"
    title = "F3: context vs foreground ratio"
    question = ("Do all architectures prefer more context (larger patches), and does the attention-gated U-Net "
                "lose more than U-Net when the test foreground ratio leaves the training range?")
    published = ("spleen Dice, patch 32 -> 96: U-Net .72 -> .93, Attention U-Net .09 -> .64; test FBR outside "
                 "the training range: U-Net -0.014 to -0.023, Attention U-Net -0.26 to -0.84")

    @property
    def alpha(self) -> float:
        return min(self.c.scale.train_alphas)

    def configuration(self, context: float) -> str:
        return CONFIGURATION if context == 1.0 else f"{CONFIGURATION}_ctx{context:.2f}"

    def model(self, architecture: str, context: float) -> str:
        return f"{architecture}_ctx{context:.2f}"

    def predictions(self, architecture: str, context: float) -> Path:
        return self.folder / "robustness" / self.model(architecture, context)

    @property
    def evaluation(self) -> Path:
        return self.folder / "evaluation"

    def steps(self) -> list[Step]:
        c, s = self.c, self.c.scale
        name = c.dataset_name(self.alpha)
        steps = self.dataset_steps(self.alpha)
        scales = [ctx for ctx in s.contexts if ctx != 1.0]
        plans = c.preprocessed(name) / "nnUNetPlans.json"

        def planned() -> bool:
            import json
            return plans.is_file() and all(self.configuration(ctx) in json.loads(plans.read_text())["configurations"]
                                           for ctx in scales)

        steps.append(Step(f"nnunet-robust plan-context {name} (scales {', '.join(map(str, s.contexts))})", planned,
                          lambda: [[tool("nnunet-robust"), "plan-context", "-d", str(c.dataset_id(self.alpha)), "-c",
                                    CONFIGURATION, "--scales", *map(str, scales)]], weight=5))
        for context in s.contexts:
            steps += self.training_steps(self.alpha, self.configuration(context))
        models = {}
        for context in s.contexts:
            for architecture in ARCHITECTURES:
                output = self.predictions(architecture, context)
                models[self.model(architecture, context)] = output
                steps.append(self.run_step(self.alpha, architecture, output, sets=["context"],
                                           configuration=self.configuration(context)))
        steps.append(self.eval_step(self.alpha, models, self.evaluation))
        return steps

    def _per_case(self) -> pd.DataFrame | None:
        return fnd.read_per_case(self.evaluation) if (self.evaluation / "summary.json").is_file() else None

    def findings(self) -> list[Finding]:
        s = self.c.scale
        small, large = min(s.contexts), max(s.contexts)
        per_case = self._per_case()
        scores = None if per_case is None else fnd.case_scores(per_case)
        cases = [] if scores is None else self.c.cases_at(self.c.dataset_name(self.alpha), self.alpha)
        found, differences = [], []
        for architecture in ARCHITECTURES:
            found.append(Finding(f"context_{architecture}", f"{architecture} is better with more context (patch "
                                 f"scale {large:g} vs {small:g})", f"Dice({architecture}, x{large:g}) - "
                                 f"Dice({architecture}, x{small:g})", self.published))
            differences.append(pd.Series(dtype=float) if scores is None else fnd.score_difference(
                scores, CLEAN, cases, self.model(architecture, large), self.model(architecture, small)))
        condition = self.outside_condition(per_case)
        found.append(Finding("fbr_attention", "When the test FBR leaves the training range "
                             f"({condition or 'no context condition outside it'}), the attention-gated U-Net loses "
                             "more Dice than U-Net (largest context)",
                             "Dice drop(AttentionGate) - Dice drop(U-Net)", self.published))
        differences.append(pd.Series(dtype=float) if scores is None or condition is None else
                           fnd.degradation_difference(scores, condition, CLEAN, cases,
                                                      self.model("AttentionGate", large), self.model("UNet", large)))
        return fnd.judge(found, differences)

    def outside_condition(self, per_case: pd.DataFrame | None) -> str | None:
        """The context condition whose test FBR is outside the training range for the largest share of
        cases (both compared models, largest context); None if none is."""
        if per_case is None or "fbr_outside_training" not in per_case:
            return None
        large = max(self.c.scale.contexts)
        rows = per_case[per_case["model"].isin([self.model(a, large) for a in ("UNet", "AttentionGate")])
                        & per_case["condition"].str.startswith("context_")]
        if not len(rows):
            return None
        share = rows.groupby("condition")["fbr_outside_training"].mean()
        return str(share.idxmax()) if share.max() > 0.5 else None

    def tables(self) -> dict[str, pd.DataFrame]:
        per_case = self._per_case()
        scores = None if per_case is None else fnd.case_scores(per_case)
        if scores is None:
            return {}
        cases = self.c.cases_at(self.c.dataset_name(self.alpha), self.alpha)
        conditions = [c for c in dict.fromkeys(scores.index.get_level_values(0))]
        frame = pd.DataFrame({condition: mean_table(scores, condition, {condition: cases}).iloc[0]
                              for condition in conditions}).T
        return {"Mean Dice per model (architecture x patch scale) and test condition":
                frame.rename_axis("condition").reset_index()}

    def evaluations(self) -> list[Path]:
        return [self.evaluation]

    def model_folders(self) -> dict[str, Path]:
        return {self.model(a, ctx): self.c.model_folder(self.c.dataset_name(self.alpha), a, self.configuration(ctx))
                for ctx in self.c.scale.contexts for a in ARCHITECTURES}


STUDIES: dict[str, type[Study]] = {cls.name: cls for cls in (SkipComplexity, Noise, ContextFBR)}

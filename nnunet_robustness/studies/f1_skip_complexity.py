"""F1: skip connections vs task complexity (U-Net vs No-Skip vs attention-gated U-Net, trained and tested
across texture blend levels), and ``recommend`` asked for two example datasets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nnunet_robustness.studies import findings as fnd
from nnunet_robustness.studies.findings import Finding, Published
from nnunet_robustness.studies.protocols import ARCHITECTURES, CLEAN, Study, mean_table, run_names
from nnunet_robustness.studies.scales import SEED
from nnunet_robustness.studies.workflow import Step, newer_than_all, tool

SHIFT_ALPHA = 0.6  # the published cross-level test: trained at alpha 0.1, tested at 0.6
EASY_RELATIVE = 0.003  # U-Net over No-Skip at alpha 0.1, relative Dice (research.md)
HARD_RELATIVE = 0.056  # No-Skip over U-Net at alpha 0.9, relative Dice
SHIFT_DICE = {"NoSkip": 0.860, "UNet": 0.663, "AttentionGate": 0.299}  # trained 0.1, tested 0.6


class SkipComplexity(Study):
    name = "skip-complexity"
    title = "F1: skip connections vs task complexity"
    question = ("Do skip connections help on easy tasks and hurt when foreground and background textures are "
                "alike? (U-Net vs No-Skip vs attention-gated U-Net, trained and tested across texture blend levels)")

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
                steps += self.run_steps(alpha, architecture, self.predictions(alpha, architecture))
            name = c.dataset_name(alpha)
            steps.append(self.eval_step(name, {a: self.prediction_runs(self.predictions(alpha, a))
                                               for a in ARCHITECTURES}, self.evaluation(alpha)))
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
        make = self.make_dataset_command(c.example_id(example), name, s.image_size, [example], [], max(5, s.num_test),
                                         seed=SEED + 1)
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

    def _runs(self, architecture: str) -> list[str]:
        return run_names(architecture, self.folds)

    def findings(self) -> list[Finding]:
        s = self.c.scale
        low, high = min(s.train_alphas), 0.9
        scores = {alpha: self._scores(alpha) for alpha in s.train_alphas}
        states = {alpha: {a: self.arm_state(a, self.c.model_folder(self.c.dataset_name(alpha), a), scores[alpha],
                                            self.c.dataset_name(alpha),
                                            self.c.cases_at(self.c.dataset_name(alpha), alpha)
                                            if scores[alpha] is not None else [])
                          for a in ARCHITECTURES} for alpha in s.train_alphas}

        def mean_clean(alpha: float, architecture: str) -> float | None:
            table = None if scores.get(alpha) is None else mean_table(
                scores[alpha], CLEAN, {"in": self.c.cases_at(self.c.dataset_name(alpha), alpha)},
                {architecture: self._runs(architecture)})
            return None if table is None or table.empty else float(table.iloc[0, 0])

        def relative(value: float, alpha: float, reference: str, words: str) -> Published:
            base = mean_clean(alpha, reference)
            if base is None:
                return Published(None, None, words)
            return Published(value * base, value * base, words,
                             f"{value:.1%} relative x our {reference} mean Dice {base:.3f} at alpha {alpha:g}")

        specs = [
            ("skip_helps_easy", f"At an easy level (trained and tested at alpha {low}), U-Net is ahead of No-Skip",
             "UNet", "NoSkip", low, low,
             relative(EASY_RELATIVE, low, "NoSkip", "U-Net +0.3 % relative Dice over No-Skip at alpha 0.1")),
            ("skip_hurts_hard", f"At a hard level (trained and tested at alpha {high}), No-Skip is ahead of U-Net",
             "NoSkip", "UNet", high, high,
             relative(HARD_RELATIVE, high, "UNet", "U-Net -5.6 % relative Dice vs No-Skip at alpha 0.9")),
            ("shift_noskip", f"Trained at alpha {low} and tested at {SHIFT_ALPHA}, No-Skip is ahead of U-Net",
             "NoSkip", "UNet", low, SHIFT_ALPHA,
             Published(SHIFT_DICE["NoSkip"] - SHIFT_DICE["UNet"], SHIFT_DICE["NoSkip"] - SHIFT_DICE["UNet"],
                       "trained at alpha 0.1, tested at 0.6: No-Skip 0.860, U-Net 0.663")),
            ("shift_attention", f"Trained at alpha {low} and tested at {SHIFT_ALPHA}, U-Net is ahead of the "
             "attention-gated U-Net", "UNet", "AttentionGate", low, SHIFT_ALPHA,
             Published(SHIFT_DICE["UNet"] - SHIFT_DICE["AttentionGate"], SHIFT_DICE["UNet"] - SHIFT_DICE["AttentionGate"],
                       "trained at alpha 0.1, tested at 0.6: U-Net 0.663, attention-gated 0.299")),
        ]
        found, data = [], []
        for key, claim, a, b, trained, tested, published in specs:
            finding = Finding(key, claim, f"Dice({a}) - Dice({b})", published, (a, b))
            if trained in s.train_alphas and scores[trained] is not None:
                name = self.c.dataset_name(trained)
                finding.states = [states[trained][a], states[trained][b]]
                finding.baseline = self.baseline_record(name, self.c.cases_at(name, trained))
                data.append(fnd.score_pair(scores[trained], CLEAN, self.c.cases_at(name, tested), self._runs(a),
                                           self._runs(b)))
                if tested != trained:
                    finding.under_condition = self.under_condition(name, scores[trained], CLEAN,
                                                                   self.c.cases_at(name, tested),
                                                                   {arm: self._runs(arm) for arm in (a, b)})
            else:
                finding.reason = (f"the {s.name} scale does not train at alpha {trained:g}" if trained not in
                                  s.train_alphas else "no evaluation yet")
                data.append(None)
            found.append(finding)
        return fnd.judge(found, data)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Mean clean Dice per (training level, test level) x architecture (over its runs), with the trivial
        baseline beside it."""
        rows = []
        arms = {a: self._runs(a) for a in ARCHITECTURES}
        for alpha in self.c.scale.train_alphas:
            scores = self._scores(alpha)
            if scores is None:
                continue
            name = self.c.dataset_name(alpha)
            groups = {f"{test:g}": self.c.cases_at(name, test) for test in self.c.scale.test_alphas}
            table = mean_table(scores, CLEAN, groups, arms)
            for test, row in table.iterrows():
                base = self.baseline_record(name, groups[test])
                rows.append({"trained at alpha": f"{alpha:g}", "tested at alpha": test, **row.to_dict(),
                             "trivial baseline": None if base is None else base["test_dice"]})
        return {"Mean clean Dice by training and test level": pd.DataFrame(rows)}

    def evaluations(self) -> list[Path]:
        return [self.evaluation(alpha) for alpha in self.c.scale.train_alphas]

    def model_folders(self) -> dict[str, Path]:
        return {f"{a} alpha {alpha:g}": self.c.model_folder(self.c.dataset_name(alpha), a)
                for alpha in self.c.scale.train_alphas for a in ARCHITECTURES}

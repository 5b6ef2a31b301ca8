"""F3: context vs foreground ratio (FBR). The paper trains on patches and tests on whole volumes, whose
foreground fraction lies *below* the range of the training patches; the attention-gated U-Net then
collapses (Dice -0.26 to -0.84) while U-Net barely moves (-0.014 to -0.023).

Our protocol follows that mechanism: each architecture is trained on the study's 64 x 64 images at two
patch scales (``plan-context``: 0.5 and nnU-Net's own 1.0), and tested on **wide** images,
``wide_factor`` times larger per side with the same blobs in pixels (so their FBR is about
1 / wide_factor^2 of the training images'), through nnU-Net's sliding window. Each wide case is also cut
to a box around its foreground whose FBR is :data:`IN_RANGE_FBR`, inside the training range (``run``'s
context condition), which pairs every case with an in-range view of itself: the drop from the in-range
box to the whole image is the FBR effect, case by case. Every model is also run on the training dataset's
own test images, for the trivial-baseline check in distribution.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nnunet_robustness.studies import findings as fnd
from nnunet_robustness.studies.findings import Finding, Published
from nnunet_robustness.studies.protocols import ARCHITECTURES, CLEAN, CONFIGURATION, Study, mean_table, run_names
from nnunet_robustness.studies.workflow import Step, tool

# The training images' mean foreground fraction is about 0.11 at every scale (blob diameters are a fixed
# share of the side); a box around the foreground at 0.10 is inside the range the networks trained on.
IN_RANGE_FBR = 0.10
IN_RANGE = f"context_fbr{IN_RANGE_FBR:.2f}"
CONTEXT_GAIN = {"UNet": (0.72, 0.93), "AttentionGate": (0.09, 0.64)}  # spleen Dice, patch 32 -> 96
FBR_DROP = {"UNet": (0.014, 0.023), "AttentionGate": (0.26, 0.84)}  # Dice drop, test FBR outside the range


class ContextFBR(Study):
    name = "context-fbr"
    title = "F3: context vs foreground ratio"
    question = ("Do all architectures prefer more context (larger patches), and does the attention-gated U-Net "
                "lose more than U-Net when the test image's foreground ratio falls below the training range?")

    @property
    def alpha(self) -> float:
        return min(self.c.scale.train_alphas)

    def configuration(self, context: float) -> str:
        return CONFIGURATION if context == 1.0 else f"{CONFIGURATION}_ctx{context:.2f}"

    def model(self, architecture: str, context: float) -> str:
        return f"{architecture}_ctx{context:.2f}"

    def predictions(self, architecture: str, context: float, wide: bool) -> Path:
        if not wide and context == 1.0:
            # nnU-Net's own patch on the dataset's own test images is F1's run of the same models: shared, so a
            # study run after skip-complexity in the same folder predicts it once
            from nnunet_robustness.studies.f1_skip_complexity import SkipComplexity

            return SkipComplexity(self.c).predictions(self.alpha, architecture)
        return self.folder / ("robustness_wide" if wide else "robustness") / self.model(architecture, context)

    @property
    def evaluation(self) -> Path:
        """Wide images, whole and cut to the in-range box."""
        return self.folder / "evaluation_wide"

    @property
    def evaluation_in_distribution(self) -> Path:
        return self.folder / "evaluation"

    def wide_steps(self) -> list[Step]:
        c, s = self.c, self.c.scale
        name = c.wide_name(self.alpha)
        # make-dataset needs a training set: one image, never trained on
        make = self.make_dataset_command(c.wide_id(self.alpha), name, s.image_size * s.wide_factor, [self.alpha],
                                         [self.alpha], 1, blob_scale=1.0 / s.wide_factor)
        return [Step(f"make-dataset textures wide test images ({s.wide_factor}x the side)",
                     lambda: (c.raw(name) / "dataset.json").is_file(), lambda: [make], weight=5)]

    def steps(self) -> list[Step]:
        c, s = self.c, self.c.scale
        name = c.dataset_name(self.alpha)
        steps = self.dataset_steps(self.alpha) + self.wide_steps()
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
        wide, own = {}, {}
        for context in s.contexts:
            for architecture in ARCHITECTURES:
                model, configuration = self.model(architecture, context), self.configuration(context)
                for is_wide, models in ((True, wide), (False, own)):
                    output = self.predictions(architecture, context, is_wide)
                    models[model] = self.prediction_runs(output)
                    steps += self.run_steps(self.alpha, architecture, output,
                                            specs=[f"context:{IN_RANGE_FBR}"] if is_wide else [],
                                            configuration=configuration,
                                            test_dataset=c.wide_name(self.alpha) if is_wide else None)
        steps.append(self.eval_step(c.wide_name(self.alpha), wide, self.evaluation))
        steps.append(self.eval_step(name, own, self.evaluation_in_distribution))
        return steps

    def _read(self, evaluation: Path) -> pd.DataFrame | None:
        return fnd.read_per_case(evaluation) if (evaluation / "summary.json").is_file() else None

    def findings(self) -> list[Finding]:
        s, c = self.c.scale, self.c
        small, large = min(s.contexts), max(s.contexts)
        name = c.dataset_name(self.alpha)
        wide_cases = c.cases_at(c.wide_name(self.alpha), self.alpha) if (c.raw(c.wide_name(self.alpha)) /
                                                                         "dataset.json").is_file() else []
        own = self._read(self.evaluation_in_distribution)
        own_scores = None if own is None else fnd.case_scores(own)
        per_case = self._read(self.evaluation)
        scores = None if per_case is None else fnd.case_scores(per_case)
        in_distribution = c.cases_at(name, self.alpha) if own_scores is not None else []

        def state(architecture: str, context: float):
            return self.arm_state(self.model(architecture, context),
                                  c.model_folder(name, architecture, self.configuration(context)), own_scores, name,
                                  in_distribution)

        def runs(architecture: str, context: float) -> list[str]:
            return run_names(self.model(architecture, context), self.folds)

        found, data = [], []
        for architecture in ARCHITECTURES:
            gain = CONTEXT_GAIN.get(architecture)
            published = (Published(gain[1] - gain[0], gain[1] - gain[0], f"spleen Dice, patch 32 -> 96 (3x the "
                                   f"context; ours is {large / small:g}x): {gain[0]:.2f} -> {gain[1]:.2f}")
                         if gain else Published(None, None, "the paper did not test a network without skips"))
            found.append(Finding(f"context_{architecture}", f"{architecture} is better with more context (patch "
                                 f"scale {large:g} vs {small:g}) on test images larger than the patch",
                                 f"Dice({architecture}, x{large:g}) - Dice({architecture}, x{small:g})", published,
                                 (self.model(architecture, large), self.model(architecture, small)),
                                 states=[state(architecture, large), state(architecture, small)],
                                 baseline=self.baseline_record(name, in_distribution)))
            data.append(None if scores is None else fnd.score_pair(scores, CLEAN, wide_cases, runs(architecture, large),
                                                                   runs(architecture, small)))
        drops = {a: FBR_DROP[a] for a in ("AttentionGate", "UNet")}
        finding = Finding("fbr_attention", "When the test image's FBR falls below the training range (whole wide "
                          f"images vs the same images cut to FBR {IN_RANGE_FBR:g}), the attention-gated U-Net loses "
                          f"more Dice than U-Net (patch scale {large:g})",
                          "Dice drop(AttentionGate) - Dice drop(UNet)",
                          Published(drops["AttentionGate"][0] - drops["UNet"][1], drops["AttentionGate"][1]
                                    - drops["UNet"][0], "Dice drop outside the training FBR: Attention U-Net "
                                    "-0.26 to -0.84, U-Net -0.014 to -0.023"),
                          (self.model("AttentionGate", large), self.model("UNet", large)),
                          states=[state("AttentionGate", large), state("UNet", large)],
                          baseline=self.baseline_record(name, in_distribution))
        pair = None if scores is None else fnd.drop_pair(scores, CLEAN, IN_RANGE, wide_cases,
                                                         runs("AttentionGate", large), runs("UNet", large))
        if per_case is not None:
            finding.beside = self.fbr_shares(per_case, [self.model(a, large) for a in ("AttentionGate", "UNet")])
        found.append(finding)
        data.append(pair)
        return fnd.judge(found, data)

    @staticmethod
    def fbr_shares(per_case: pd.DataFrame, models: list[str]) -> dict:
        """How many whole wide images lie below their model's training FBR range, and how many in-range boxes
        lie inside it (eval's ``fbr_outside_training`` and ``test_fbr``)."""
        if "fbr_outside_training" not in per_case:
            return {"what": "no training FBR log"}
        rows = per_case[per_case["model"].str.split(":").str[0].isin(models)]
        whole, box = rows[rows["condition"] == CLEAN], rows[rows["condition"] == IN_RANGE]
        below = (whole["test_fbr"] < whole["training_fbr_low"]).mean() if len(whole) else float("nan")
        inside = (~box["fbr_outside_training"].astype(bool)).mean() if len(box) else float("nan")
        return {"what": "where the test FBRs lie", "whole_image_below_range": float(below),
                "in_range_box_inside_range": float(inside),
                "whole_image_fbr_median": float(whole["test_fbr"].median()) if len(whole) else None,
                "training_fbr_low": float(whole["training_fbr_low"].min()) if len(whole) else None}

    def tables(self) -> dict[str, pd.DataFrame]:
        per_case = self._read(self.evaluation)
        if per_case is None:
            return {}
        scores = fnd.case_scores(per_case)
        cases = self.c.cases_at(self.c.wide_name(self.alpha), self.alpha)
        arms = {self.model(a, ctx): run_names(self.model(a, ctx), self.folds)
                for ctx in self.c.scale.contexts for a in ARCHITECTURES}
        conditions = [CLEAN, IN_RANGE]
        frame = pd.DataFrame({condition: mean_table(scores, condition, {condition: cases}, arms).iloc[0]
                              for condition in conditions if condition in scores.index.get_level_values(0)}).T
        return {"Mean Dice per model (architecture x patch scale) on wide images, whole and cut to the in-range box":
                frame.rename(index={CLEAN: "whole wide image", IN_RANGE: f"box at FBR {IN_RANGE_FBR:g}"})
                .rename_axis("test images").reset_index()}

    def evaluations(self) -> list[Path]:
        return [self.evaluation_in_distribution, self.evaluation]

    def model_folders(self) -> dict[str, Path]:
        return {self.model(a, ctx): self.c.model_folder(self.c.dataset_name(self.alpha), a, self.configuration(ctx))
                for ctx in self.c.scale.contexts for a in ARCHITECTURES}

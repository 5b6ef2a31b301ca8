"""Re-judge the first wave's cpu-scale study results (committed under docs/studies/cpu/) with today's rule:
convergence from each model's recorded training curve, the trivial baseline, size as well as sign.

The first wave trained one run per architecture (fold 0, 2500 iterations). Its per-case results and
training curves are committed; the datasets are regenerated here from the same ``make-dataset`` arguments
(deterministic for the seed) for the baseline and the case levels. Writes
``docs/studies/first_wave_rejudged.json`` and ``.md``.

    python scripts/rejudge_first_wave.py            # from the repository root
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from nnunet_robustness.io import atomic_write_json, atomic_write_text, json_ready
from nnunet_robustness.studies import findings as fnd
from nnunet_robustness.studies.convergence import judge_curve, raw_pseudo_dice
from nnunet_robustness.studies.f1_skip_complexity import SkipComplexity
from nnunet_robustness.studies.f2_noise import Noise
from nnunet_robustness.studies.findings import Finding, Published
from nnunet_robustness.studies.protocols import CLEAN, StudyContext
from nnunet_robustness.studies.scales import SCALES

DOCS = Path(__file__).resolve().parents[1] / "docs" / "studies"
FIRST_WAVE = replace(SCALES["cpu"], train_alphas=(0.1, 0.9), folds=(0,), schedule="10epochs")


def curves(study: str) -> dict[str, dict]:
    return json.loads((DOCS / "cpu" / study / "study.json").read_text())["training_curves"]


def recorded_convergence(study: str, names: dict[str, str]):
    """A ``Study.convergence_of`` reading the committed curve of the model whose folder is asked for."""
    recorded = curves(study)

    def convergence(fold_folder: Path, run: str):
        key = names[fold_folder.parent.name + "/" + fold_folder.parent.parent.name]
        return judge_curve(raw_pseudo_dice(recorded[key]), run)

    return convergence


def make_datasets(root: Path) -> None:
    for alpha in FIRST_WAVE.train_alphas:
        study = SkipComplexity(StudyContext(root, FIRST_WAVE))
        command = study.make_dataset_command(study.c.dataset_id(alpha), study.c.dataset_name(alpha), 64, [alpha],
                                             FIRST_WAVE.test_alphas, FIRST_WAVE.num_train)
        subprocess.run([str(Path(sys.executable).parent / "nnunet-robust"), *command[1:], "-o",
                        str(root / "nnUNet_raw")], check=True, capture_output=True)


def copy_evaluations(root: Path) -> None:
    for study in ("skip-complexity", "noise"):
        for per_case in (DOCS / "cpu" / study / "evaluation").glob("*/per_case.parquet"):
            target = root / study / "evaluation" / per_case.parent.name
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(per_case, target)
            (target / "summary.json").write_text("{}")  # what the study reads as "evaluated"


def folder_names(study, architectures, alphas) -> dict[str, str]:
    return {f"{study.c.model_folder(study.c.dataset_name(alpha), a).name}/{study.c.dataset_name(alpha)}":
            f"{a} alpha {alpha:g}" for a in architectures for alpha in alphas}


def context_findings(root: Path) -> list[Finding]:
    """The first wave's F3 context finding (in-distribution 64 x 64 images, patch 32 vs 64), rule applied."""
    per_case = fnd.read_per_case(DOCS / "cpu" / "context-fbr" / "evaluation")
    scores = fnd.case_scores(per_case)
    study = SkipComplexity(StudyContext(root, FIRST_WAVE))
    name = study.c.dataset_name(0.1)
    cases = study.c.cases_at(name, 0.1)
    recorded = curves("context-fbr")
    found, data = [], []
    published = {"UNet": Published(0.21, 0.21, "spleen Dice, patch 32 -> 96: U-Net .72 -> .93"),
                 "AttentionGate": Published(0.55, 0.55, "spleen Dice, patch 32 -> 96: Attention U-Net .09 -> .64"),
                 "NoSkip": Published(None, None, "the paper did not test a network without skips")}
    for architecture, pub in published.items():
        states = []
        for model in (f"{architecture}_ctx1.00", f"{architecture}_ctx0.50"):
            state = fnd.ArmState(model, [model], [judge_curve(raw_pseudo_dice(recorded[model]), model).to_json()])
            values = scores.loc[CLEAN].loc[cases, model].to_numpy(float)
            base = np.array([study.baseline(name)[1][c] for c in cases])
            from nnunet_robustness.studies.protocols import beats_baseline

            state.learned = beats_baseline(values, base)
            states.append(state)
        found.append(Finding(f"context_{architecture}", f"{architecture} is better with more context (patch 64 vs 32, "
                             "tested on 64 x 64 images: the test image is the patch)",
                             f"Dice({architecture}, x1) - Dice({architecture}, x0.5)", pub,
                             (f"{architecture}_ctx1.00", f"{architecture}_ctx0.50"), states=states,
                             baseline=study.baseline_record(name, cases)))
        data.append(fnd.score_pair(scores, CLEAN, cases, [f"{architecture}_ctx1.00"], [f"{architecture}_ctx0.50"]))
    return fnd.judge(found, data)


def markdown(groups: dict[str, list[dict]]) -> str:
    lines = ["# The first wave's cpu-scale findings, re-judged", "",
             "Written by `scripts/rejudge_first_wave.py` from the committed per-case results and training curves "
             "of the first wave (one training run per architecture, fold 0, 2500 iterations). The rule: "
             "[README](README.md#how-a-finding-is-judged). \"The numbers alone\" is what the size-and-sign steps of "
             "the rule would say if every model had learned and converged: it describes these models, not the "
             "architectures.", ""]
    for title, found in groups.items():
        lines += [f"## {title}", "", "| finding | published | ours (95% CI, 1 run per arm) | verdict | converged | why "
                  "| the numbers alone |", "|---|---|---|---|---|---|---|"]
        for f in found:
            s = f["statistics"] or {}
            ours = (f"{s['mean_difference']:+.3f} [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}], n = {s['n']}" if s
                    else "n/a")
            p = f["published"]
            published = ("direction only" if p["low"] is None else f"{p['low']:+.3f}" if p["low"] == p["high"]
                         else f"{p['low']:+.3f} to {p['high']:+.3f}")
            converged = ", ".join(f"{m}: {'yes' if ok else 'no'}" for m, ok in f["converged"].items()) or "n/a"
            lines.append(f"| {f['claim']} | {published} | {ours} | **{f['verdict']}** | {converged} | {f['reason']} | "
                         f"{f['numbers_alone'] or 'n/a'} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_datasets(root)
        copy_evaluations(root)
        f1 = SkipComplexity(StudyContext(root, FIRST_WAVE))
        f1.convergence_of = recorded_convergence("skip-complexity", folder_names(f1, ("UNet", "NoSkip", "AttentionGate"),
                                                                                 (0.1, 0.9)))
        f2 = Noise(StudyContext(root, FIRST_WAVE))
        f2.convergence_of = f1.convergence_of
        groups = {"F1 skip connections vs task complexity": [f.to_json() for f in f1.findings()],
                  "F2 robustness to noise (score under the noise; the drop beside it)": [f.to_json() for f in
                                                                                         f2.findings()],
                  "F3 context (first-wave protocol)": [f.to_json() for f in context_findings(root)]}
    atomic_write_json(DOCS / "first_wave_rejudged.json", json_ready(groups))
    atomic_write_text(DOCS / "first_wave_rejudged.md", markdown(groups))
    for title, found in groups.items():
        print(title)
        for f in found:
            print(f"  {f['verdict']:>24}: {f['claim']}")


if __name__ == "__main__":
    main()

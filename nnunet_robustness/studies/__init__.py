"""The seed studies as one command each: ``nnunet-robust study NAME --scale smoke|cpu|gpu``.

``run_study`` runs a study's steps (resumable, see ``pipeline``), tests its findings on the study's
own ``eval`` results (``findings``) and writes ``study.json`` and ``study.html`` into
``OUTPUT/<scale>/<study>/``.
"""

from __future__ import annotations

import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from nnunet_robustness.studies.convergence import RULE as CONVERGENCE_RULE
from nnunet_robustness.studies.protocols import Study, StudyContext
from nnunet_robustness.studies.registry import STUDIES
from nnunet_robustness.studies.scales import SCALES
from nnunet_robustness.studies.workflow import Pipeline, Runner, nnunet_environment, run_command, write_records

STUDY_JSON = "study.json"
STUDY_HTML = "study.html"
STUDY_MD = "study.md"


def training_curves(model_folders: dict[str, Path], folds: tuple[int, ...]) -> dict[str, dict[str, list[float]]]:
    """Per model run (``NAME fold K``): nnU-Net's per-epoch log (train/validation loss, raw and EMA pseudo
    Dice) from its final checkpoint; runs without one are left out."""
    from nnunet_robustness.studies.convergence import read_training_log

    curves = {}
    for name, folder in model_folders.items():
        for fold in folds:
            logging = read_training_log(folder / f"fold_{fold}")
            if logging is not None:
                curves[name if len(folds) == 1 else f"{name} fold {fold}"] = logging
    return curves


def model_checks(evaluations: list[Path]) -> list[dict[str, Any]]:
    """eval's sanity gate of every model in every evaluation of the study (clean Dice, schedule, reasons)."""
    from nnunet_robustness.io import read_json

    rows = []
    for evaluation in evaluations:
        if (evaluation / "summary.json").is_file():
            for check in read_json(evaluation / "summary.json", "eval summary").get("model_checks", []):
                rows.append({"evaluation": evaluation.name, **check})
    return rows


def study_arms(found: list) -> list[dict[str, Any]]:
    """Every arm the findings compared, once: runs, convergence per run, and the trivial-baseline check."""
    arms: dict[str, dict] = {}
    for finding in found:
        for state in finding.states:
            arms.setdefault(state.model, state.to_json())
    return list(arms.values())


def study_summary(study: Study, records: list, seconds: float, command: str) -> dict[str, Any]:
    from nnunet_robustness.io import json_ready, package_versions

    found = study.findings()
    return json_ready({
        "study": study.name, "title": study.title, "question": study.question, "scale": study.c.scale.to_json(),
        "command": command, "device": study.c.device, "wall_seconds_this_invocation": round(seconds, 1),
        "wall_seconds_steps": round(sum(r.seconds for r in records), 1),  # all invocations (steps.json)
        "steps": [{"title": r.title, "status": r.status, "seconds": round(r.seconds, 1)} for r in records],
        "findings": [f.to_json() for f in found],
        "tables": {title: frame.to_dict(orient="records") for title, frame in study.tables().items()},
        "training_curves": training_curves(study.model_folders(), study.folds),
        "arms": study_arms(found), "convergence_rule": CONVERGENCE_RULE,
        "model_checks": model_checks(study.evaluations()),
        "recommendations": study.recommendations(),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "processor": platform.processor() or platform.machine()},
        "versions": package_versions(),
    })


def run_study(name: str, scale: str, output: Path, device: str = "cpu", runner: Runner = run_command,
              command: str | None = None) -> Path:
    """Run (or continue) one study; returns the path of its study.html."""
    from nnunet_robustness.io import atomic_write_json, atomic_write_text
    from nnunet_robustness.reports.study import study_html, study_markdown

    context = StudyContext(Path(output) / scale, SCALES[scale], device)
    study = STUDIES[name](context)
    study.folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pipeline = Pipeline(nnunet_environment(context.root), study.folder / "logs", runner)
    print(f"{study.title} ({scale} scale) in {study.folder}", flush=True)
    records = pipeline.run(study.steps())
    records = write_records(study.folder / "steps.json", records)
    summary = study_summary(study, records, time.perf_counter() - start,
                            command or shlex.join(["nnunet-robust", "study", name, "--scale", scale, "-o", str(output)]))
    atomic_write_json(study.folder / STUDY_JSON, summary)
    report = study.folder / STUDY_HTML
    atomic_write_text(report, study_html(summary))
    atomic_write_text(study.folder / STUDY_MD, study_markdown(summary))
    for finding in summary["findings"]:
        print(f"  {finding['verdict']:>15}: {finding['claim']}", flush=True)
    print(f"Report: {report}", flush=True)
    return report

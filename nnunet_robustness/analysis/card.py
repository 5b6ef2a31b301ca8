"""The robustness card: one model's evaluation on one page, with a JSON document of a published schema.

``nnunet-robust card EVAL_FOLDER`` reads an eval output folder (``summary.json`` through
``EvalSummary``, ``per_case.parquet`` through ``recommend.read_per_case_table``) and the model folders
recorded in the prediction folders' ``run.json`` (``plans.json``), and builds per model a document of
``schemas/robustness_card.schema.json``: model and plans, the training schedule and sanity gate, clean
scores with intervals, the operating envelope per family, the worst families, subgroups, the
ROOD-MRI-comparable summary, versions and commands. Every card has every key in the same order (missing
information is null or empty), so that two cards diff line by line. Field by field: docs/card.md.

The **operating envelope** of a family is the largest tested severity up to which (that severity and
every lower one) the upper 95 % bound of the Dice degradation stays below the tolerance (default 0.05
Dice): "up to ghosting 3 this model loses less than 0.05 Dice, with 95 % confidence over these cases".
Contiguous from the lowest severity on purpose: a family that exceeds at severity 2 and not at 3 (noise
in a small test set) does not tolerate 3.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from nnunet_robustness.analysis.eval_pipeline import EvalSummary
from nnunet_robustness.analysis.sanity import NNUNET_DEFAULT_ITERATIONS
from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN
from nnunet_robustness.analysis.strata import SMALL_GROUP
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import json_ready, package_versions, read_json
from nnunet_robustness.plans.context_plans import resolved_configuration
from nnunet_robustness.records.run_manifest import RunManifest

CARD_FORMAT = 1
DEFAULT_TOLERANCE = 0.05  # Dice: below the usual inter-rater spread of organ segmentation
SCHEMA_FILE = "robustness_card.schema.json"
CLEAN_METRICS = ("dice", "nsd", "hd95_mm", "assd_mm")
WORST_FAMILIES = 3
WORST_CASES = 3
ENVELOPE_RULE = ("largest tested severity s such that at s and every lower tested severity the upper 95% bound of "
                 "the Dice degradation (clean - condition, per-case foreground mean) is below the tolerance")
CONFORMAL_NOTE = ("Conformal coverage and ratings (nnunet-robust rate) are not part of this card: card does not read "
                  "rate's outputs yet; see rate's report.")


def schema() -> dict:
    """The card's JSON Schema, shipped in the package (``nnunet_robustness/schemas``)."""
    return json.loads(resources.files("nnunet_robustness").joinpath("schemas", SCHEMA_FILE).read_text())


def build_cards(eval_folder: str | Path, tolerance: float = DEFAULT_TOLERANCE, models: Sequence[str] | None = None,
                command: str | None = None) -> dict[str, dict[str, Any]]:
    """Model -> its card (a JSON-ready dict) for the models of an eval output folder (``models``: a subset)."""
    from nnunet_robustness.analysis.recommend import read_per_case_table

    if not (math.isfinite(tolerance) and tolerance > 0):
        raise UserInputError(f"--tolerance {tolerance}: must be a finite number of Dice > 0")
    eval_folder = Path(eval_folder)
    summary = EvalSummary.read(eval_folder)
    per_case, per_case_path = read_per_case_table(eval_folder)
    recorded = list(summary.settings.get("models") or {})
    chosen = list(models) if models else recorded
    unknown = [m for m in chosen if m not in recorded]
    if unknown:
        raise UserInputError(f"{summary.path}: no model {', '.join(unknown)} in this evaluation "
                             f"(models: {', '.join(recorded)})")
    lacking = [m for m in chosen if m not in set(per_case["model"])]
    if lacking:
        raise UserInputError(f"{per_case_path}: no rows of model {', '.join(lacking)}, which {summary.path} names; "
                             "the two files are of different evaluations")
    return {model: json_ready(_card(summary, per_case[per_case["model"] == model], model, tolerance, eval_folder,
                                    command)) for model in chosen}


def _card(summary: EvalSummary, per_case: pd.DataFrame, model: str, tolerance: float, folder: Path,
          command: str | None) -> dict[str, Any]:
    settings = summary.settings
    clean = summary.content.get("clean_condition")
    conditions = summary.table("conditions")
    conditions = conditions[conditions["model"] == model] if len(conditions) else conditions
    degradation = _dice_rows(summary.table("degradation"), model)
    envelope = _envelope(conditions, degradation, tolerance)
    notes = [CONFORMAL_NOTE]
    if clean is None:
        notes.append("No clean condition in this evaluation: no degradation, no envelope.")
    model_summary = _model_summary(settings.get("models", {}).get(model))
    if model_summary["model_folder"] and not model_summary["model_folder_found"]:
        notes.append(f"Model folder {model_summary['model_folder']} (from run.json) not found here: plans unknown.")
    elif model_summary["model_folder"] is None:
        notes.append("The prediction folder has no run.json (not made by nnunet-robust run): model and plans unknown.")
    return {
        "card_format": CARD_FORMAT,
        "model": model,
        "evaluation": {
            "folder": str(folder), "eval_command": settings.get("command"), "card_command": command,
            "cases": int(per_case["case"].nunique()), "labels": sorted(str(v) for v in per_case["label"].unique()),
            "clean_condition": clean, "dataset_json": settings.get("dataset_json"),
            "reference": settings.get("reference"), "seed": settings.get("seed"),
            "n_bootstrap": settings.get("n_bootstrap"), "nsd_tolerance_mm": settings.get("nsd_tolerance_mm"),
            "confidence": settings.get("confidence"),
        },
        "model_summary": model_summary,
        "training": _training(summary.content.get("model_checks", []), model),
        "clean_scores": _clean_scores(summary.table("statistics"), per_case, model, clean),
        "operating_envelope": {"tolerance_dice": tolerance, "rule": ENVELOPE_RULE, "families": envelope},
        "worst_families": _worst_families(envelope),
        "other_conditions": _other_conditions(conditions, degradation, {f["family"] for f in envelope}, tolerance),
        "cancelled_conditions": (sorted(conditions.loc[conditions["cancelled"].fillna(False).astype(bool),
                                                       "condition"]) if "cancelled" in conditions else []),
        "subgroups": _subgroups(summary, model, tolerance),
        "real_shift": _real_shift(summary, model),
        "conformal": None,
        "rood_mri": [{key: row[key] for key in ("family", "metric", "clean", "degradation", "overall", "severities")}
                     for row in summary.content.get("rood_mri", []) if row.get("model") == model],
        "verdict": list(summary.content.get("verdict", [])),
        "versions": {"eval": dict(settings.get("versions") or {}), "card": package_versions()},
        "notes": notes,
    }


def _dice_rows(table: pd.DataFrame, model: str) -> pd.DataFrame:
    if not len(table):
        return table
    return table[(table["model"] == model) & (table["label"] == FOREGROUND_MEAN) & (table["metric"] == "dice")]


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _model_summary(prediction_folder: str | None) -> dict[str, Any]:
    """What run.json and the model folder's plans.json say about the model (None where unknown)."""
    out: dict[str, Any] = {"prediction_folder": prediction_folder, "model_folder": None, "model_folder_found": False,
                           "dataset": None, "trainer": None, "plans": None, "configuration": None,
                           "network_class": None, "patch_size": None, "spacing": None, "batch_size": None,
                           "folds": None, "checkpoint": None, "tta": None}
    manifest = RunManifest.read_if_present(Path(prediction_folder)) if prediction_folder else None
    if manifest is None:
        return out
    recorded = manifest.model
    folder = manifest.model_folder
    # nnU-Net names a results folder TRAINER__PLANS__CONFIGURATION
    parts = str(recorded.get("results_subfolder") or folder.name).split("__")
    trainer, plans, configuration = parts if len(parts) == 3 else (None, None, None)
    out.update(model_folder=str(folder), dataset=recorded.get("dataset"), trainer=trainer, plans=plans,
               configuration=configuration, folds=recorded.get("folds_used") or recorded.get("folds"),
               checkpoint=recorded.get("checkpoint"), tta=recorded.get("tta"))
    plans_file = folder / "plans.json"
    if not plans_file.is_file():
        return out
    content = read_json(plans_file, "nnU-Net plans")
    out["model_folder_found"] = True
    out["plans"] = content.get("plans_name", plans)
    configured = resolved_configuration(content.get("configurations", {}), configuration)
    architecture = configured.get("architecture") or {}
    # nnU-Net 2.4+ plans name the class under architecture; older ones as UNet_class_name
    out["network_class"] = architecture.get("network_class_name") or configured.get("UNet_class_name")
    out["patch_size"] = [int(p) for p in configured["patch_size"]] if configured.get("patch_size") else None
    out["spacing"] = [float(s) for s in configured["spacing"]] if configured.get("spacing") else None
    out["batch_size"] = int(configured["batch_size"]) if configured.get("batch_size") is not None else None
    return out


def _training(checks: list[dict], model: str) -> dict[str, Any]:
    check = next((c for c in checks if c.get("model") == model), {})
    iterations = check.get("iterations")
    return {
        "iterations": iterations,
        "share_of_nnunet_default": None if iterations is None else iterations / NNUNET_DEFAULT_ITERATIONS,
        "short_schedule": bool(check.get("short_schedule", False)),
        "sanity_gate": {"passed": bool(check.get("passed", False)), "kept_in_verdict": bool(check.get("kept", False)),
                        "clean_dice": check.get("clean_dice"), "empty_share": check.get("empty_share"),
                        "reasons": list(check.get("reasons", []))},
    }


def _clean_scores(statistics: pd.DataFrame, per_case: pd.DataFrame, model: str, clean: str | None) -> dict:
    rows = statistics[(statistics["model"] == model) & (statistics["condition"] == clean)
                      & (statistics["label"] == FOREGROUND_MEAN)] if len(statistics) and clean else statistics[:0]
    by_metric = {r["metric"]: r for _, r in rows.iterrows()}
    metrics = {m: {"mean": _number(by_metric[m]["mean"]) if m in by_metric else None,
                   "ci_low": _number(by_metric[m]["mean_ci_low"]) if m in by_metric else None,
                   "ci_high": _number(by_metric[m]["mean_ci_high"]) if m in by_metric else None,
                   "median": _number(by_metric[m]["median"]) if m in by_metric else None} for m in CLEAN_METRICS}
    cases = per_case[per_case["condition"] == clean].groupby("case")["dice"].mean().sort_values(kind="stable")
    return {"n": int(by_metric["dice"]["n"]) if "dice" in by_metric else None, "metrics": metrics,
            "worst_cases": [{"case": str(case), "dice": _number(dice)} for case, dice in cases.head(WORST_CASES).items()]}


def _graded(conditions: pd.DataFrame) -> pd.DataFrame:
    """The model's conditions with a family and a severity above 0, not cancelled by its normalisation."""
    if not len(conditions):
        return conditions
    severity = pd.to_numeric(conditions["severity"], errors="coerce")
    cancelled = conditions["cancelled"].fillna(False).astype(bool) if "cancelled" in conditions else False
    return conditions[conditions["family"].notna() & (severity > 0) & ~cancelled].assign(severity=severity)


def _envelope(conditions: pd.DataFrame, degradation: pd.DataFrame, tolerance: float) -> list[dict]:
    graded = _graded(conditions)
    if not len(graded) or not len(degradation):
        return []
    drops = degradation.set_index("condition")
    families = []
    for family, rows in graded.groupby("family", sort=True):
        severities, tolerated, status = [], None, "within"
        for _, row in rows.sort_values("severity").iterrows():
            if row["condition"] not in drops.index:
                continue
            drop = drops.loc[row["condition"]]
            high = _number(drop["absolute_ci_high"])
            # an undefined bound (every case empty) cannot show the model within the tolerance
            within = high is not None and high < tolerance
            severities.append({"severity": float(row["severity"]), "condition": row["condition"],
                               "degradation": _number(drop["absolute"]), "ci_low": _number(drop["absolute_ci_low"]),
                               "ci_high": high, "within": within})
            if status == "within":
                if within:
                    tolerated = float(row["severity"])
                else:
                    status = "exceeds" if tolerated is not None else "none tolerated"
        if severities:
            families.append({"family": family, "largest_tolerated_severity": tolerated, "status": status,
                             "severities": severities})
    return families


def _worst_families(envelope: list[dict]) -> list[dict]:
    """The families with the largest mean Dice degradation over their tested severities, worst first."""
    ranked = []
    for family in envelope:
        values = [s["degradation"] for s in family["severities"] if s["degradation"] is not None]
        last = family["severities"][-1]
        ranked.append({"family": family["family"], "mean_degradation": sum(values) / len(values) if values else None,
                       "largest_severity": last["severity"], "degradation_at_largest": last["degradation"],
                       "ci_high_at_largest": last["ci_high"]})
    ranked.sort(key=lambda r: -math.inf if r["mean_degradation"] is None else r["mean_degradation"], reverse=True)
    return ranked[:WORST_FAMILIES]


def _other_conditions(conditions: pd.DataFrame, degradation: pd.DataFrame, families: set[str],
                      tolerance: float) -> list[dict]:
    """Every non-clean condition outside the envelope's families: presets, attacks, context crops, single levels."""
    if not len(degradation):
        return []
    graded = _graded(conditions)
    in_envelope = set(graded.loc[graded["family"].isin(families), "condition"]) if len(graded) else set()
    out = []
    for _, drop in degradation.iterrows():
        if drop["condition"] in in_envelope:
            continue
        row = conditions[conditions["condition"] == drop["condition"]]
        family = row["family"].iloc[0] if len(row) else None
        high = _number(drop["absolute_ci_high"])
        out.append({"condition": drop["condition"], "family": family if isinstance(family, str) else None,
                    "severity": _number(row["severity"].iloc[0]) if len(row) else None,
                    "degradation": _number(drop["absolute"]), "ci_low": _number(drop["absolute_ci_low"]),
                    "ci_high": high, "within": high is not None and high < tolerance})
    return out


def _real_shift(summary: EvalSummary, model: str) -> list[dict] | None:
    """eval --shift: the model's drop on each shifted set and the condition that best predicts the shift."""
    rows = [r for r in summary.content.get("real_shift") or [] if r.get("model") == model]
    if not rows:
        return None
    agreement = [r for r in summary.content.get("shift_agreement") or [] if r.get("kendall_tau") is not None]
    out = []
    for row in rows:
        best = next((r for r in agreement if r["shift"] == row["shift"]), None)  # sorted best first
        out.append({"shift": row["shift"], "cases": int(row["n_shift"]), "clean_dice": _number(row["clean_mean"]),
                    "shift_dice": _number(row["shift_mean"]), "degradation": _number(row["degradation"]),
                    "degradation_ci_low": _number(row["degradation_ci_low"]),
                    "degradation_ci_high": _number(row["degradation_ci_high"]),
                    "best_predictor": None if best is None else {
                        "condition": best["name"], "kendall_tau": _number(best["kendall_tau"]),
                        "tau_ci_low": _number(best["tau_ci_low"]), "tau_ci_high": _number(best["tau_ci_high"]),
                        "models": int(best["n_models"])}})
    return out


def _subgroups(summary: EvalSummary, model: str, tolerance: float) -> list[dict] | None:
    """Per group of cases (eval --strata / --metadata --by): size, clean Dice and the degradation; None without."""
    record = summary.settings.get("strata") or {}
    counts = record.get("cases") or {}
    if not counts:
        return None
    groupings = record.get("groupings") or {"stratum": list(counts)}
    small = record.get("small_group", SMALL_GROUP)
    statistics = summary.strata_table("statistics")
    drops = summary.strata_table("degradation")
    clean = summary.content.get("clean_condition")
    out = []
    for grouping, names in groupings.items():
        for name in names:
            scores = (statistics[(statistics["stratum"] == name) & (statistics["model"] == model)
                                 & (statistics["condition"] == clean) & (statistics["metric"] == "dice")]
                      if len(statistics) else statistics)
            rows = (drops[(drops["stratum"] == name) & (drops["model"] == model) & (drops["metric"] == "dice")]
                    if len(drops) else drops)
            worst = rows.sort_values("absolute", ascending=False, kind="stable").head(1) if len(rows) else rows
            out.append({
                "grouping": grouping, "group": name, "cases": int(counts.get(name, 0)),
                "small": int(counts.get(name, 0)) < small,
                "clean_dice": {"mean": _number(scores["mean"].iloc[0]) if len(scores) else None,
                               "ci_low": _number(scores["mean_ci_low"].iloc[0]) if len(scores) else None,
                               "ci_high": _number(scores["mean_ci_high"].iloc[0]) if len(scores) else None},
                "mean_degradation": _number(rows["absolute"].mean()) if len(rows) else None,
                "worst_condition": str(worst["condition"].iloc[0]) if len(worst) else None,
                "worst_degradation": _number(worst["absolute"].iloc[0]) if len(worst) else None,
                "worst_ci_high": _number(worst["absolute_ci_high"].iloc[0]) if len(worst) else None,
                "conditions_beyond_tolerance": int((~(pd.to_numeric(rows["absolute_ci_high"]) < tolerance)).sum())
                if len(rows) else 0,
            })
    return out


def card_files(folder: Path, model: str) -> dict[str, Path]:
    """``<model>.card.json``, ``.card.md`` and ``.card.html`` in ``folder``. A training run's ``NAME:1``
    becomes ``NAME_1`` (':' is not allowed in Windows file names); other names that would leave the folder
    are refused."""
    from nnunet_robustness.io import safe_path

    stem = model.replace(":", "_")
    return {"json": safe_path(folder, f"{stem}.card.json"), "md": safe_path(folder, f"{stem}.card.md"),
            "html": safe_path(folder, f"{stem}.card.html")}

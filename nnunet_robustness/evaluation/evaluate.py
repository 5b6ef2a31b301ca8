"""``evaluate``: metrics of prediction folders against a reference folder, robustness summaries, and
the output tables (``per_case.csv``, ``per_case.parquet``, ``summary.json``)."""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.evaluation import statistics as stats
from nnunet_robustness.evaluation.fbr import (
    annotate_training_range, foreground_fraction, read_context_fbr, training_fbr_range_of_predictions,
)
from nnunet_robustness.evaluation.inputs import (
    CLEAN, DatasetInfo, Target, check_same_geometry, collect_predictions, load_dataset_json, read_segmentation,
    reader_writer_for,
)
from nnunet_robustness.evaluation.metrics import EMPTY_MASK_VALUES, METRICS, compare_masks
from nnunet_robustness.io import atomic_path, atomic_write_json

PER_CASE_CSV = "per_case.csv"
PER_CASE_PARQUET = "per_case.parquet"
SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"
OUTPUT_FILES = (PER_CASE_CSV, PER_CASE_PARQUET, SUMMARY_JSON, REPORT_HTML)

IDENTITY_COLUMNS = ["model", "condition", "family", "severity", "preset", "case", "label", "label_value"]
COUNT_COLUMNS = ["tp", "fp", "fn", "ref_voxels", "pred_voxels", "ref_volume", "pred_volume"]
# test FBR: foreground fraction of the evaluated image (the crop's for context conditions); training
# range and flag from the model's fbr_train.json logs (evaluation/fbr.py), NA without them
FBR_COLUMNS = ["test_fbr", "training_fbr_low", "training_fbr_high", "fbr_outside_training"]
PER_CASE_COLUMNS = [*IDENTITY_COLUMNS, *METRICS, *COUNT_COLUMNS, "empty_mask", *FBR_COLUMNS, "prediction_file",
                    "reference_file"]


@dataclass
class EvaluationResult:
    """Everything ``evaluate`` computed; every table is tidy (one observation per row).

    ``per_case``: one row per model x condition x case x label/region (``PER_CASE_COLUMNS``);
    ``statistics``: per model x condition x label x metric, mean/median with bootstrap CIs;
    ``degradation``: change from clean per model x condition x label x metric;
    ``severity_curves``: per model x family x label x metric, means by severity, ``auc`` and ``cv``;
    ``best_model_shares`` and ``pairwise_tests``: model comparisons (empty for one model).
    Labels include ``statistics.FOREGROUND_MEAN`` (per-case mean over labels) in every summary.
    """

    per_case: pd.DataFrame
    statistics: pd.DataFrame
    degradation: pd.DataFrame
    severity_curves: pd.DataFrame
    best_model_shares: pd.DataFrame
    pairwise_tests: pd.DataFrame
    conditions: pd.DataFrame  # model, condition, family, severity, preset, is_clean, folder
    clean_condition: str | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.conditions["model"]))

    def summary(self) -> dict[str, Any]:
        """The content of ``summary.json`` (NaN written as null)."""
        per_model: dict[str, Any] = {}
        keys = dict(zip(self.per_case["label"], self.per_case["label_value"]))
        for (model, condition), group in self.statistics.groupby(["model", "condition"], sort=False):
            means = group.pivot(index="label", columns="metric", values="mean")
            per_model.setdefault(model, {})[condition] = {
                "mean": {keys[label]: {m: means.at[label, m] for m in METRICS} for label in keys},
                "foreground_mean": {m: means.at[stats.FOREGROUND_MEAN, m] for m in METRICS},
            }
        empty = (self.per_case.groupby(["model", "condition", "empty_mask"]).size()
                 .unstack(fill_value=0).reindex(columns=list(EMPTY_MASK_VALUES), fill_value=0))
        return _json_ready({
            "settings": self.settings,
            "metrics": {name: {"description": m.description, "unit": m.unit, "higher_is_better": m.higher_is_better}
                        for name, m in METRICS.items()},
            "labels": {label: value for label, value in keys.items()},
            "cases": sorted(self.per_case["case"].unique().tolist()),
            "clean_condition": self.clean_condition,
            "conditions": self.conditions.to_dict(orient="records"),
            "per_model": per_model,
            "empty_masks": [{"model": model, "condition": condition, **row}
                            for (model, condition), row in empty.to_dict(orient="index").items()],
            "statistics": self.statistics.to_dict(orient="records"),
            "degradation": self.degradation.to_dict(orient="records"),
            "severity_curves": self.severity_curves.to_dict(orient="records"),
            "best_model_shares": self.best_model_shares.to_dict(orient="records"),
            "pairwise_tests": self.pairwise_tests.to_dict(orient="records"),
        })


def evaluate(models: Mapping[str, str | os.PathLike], reference: str | os.PathLike, dataset_json: str | os.PathLike,
             output: str | os.PathLike | None = None, nsd_tolerance_mm: float = 1.0, seed: int = 0,
             n_bootstrap: int = 1000, num_processes: int = 1, progress: bool = True) -> EvaluationResult:
    """Evaluate the prediction folders of one or more models against ``reference`` (``labelsTs``).

    ``models`` maps a model name to its prediction folder (any of the layouts in
    ``inputs``). With ``output``, writes ``per_case.csv``, ``per_case.parquet`` and, last, as the
    mark of a complete evaluation, ``summary.json`` (each atomically); earlier outputs of this
    command in that folder are removed first, so a failed run never leaves tables that look current.
    Bad input raises ``UserInputError`` before anything is written.
    """
    if nsd_tolerance_mm < 0 or not math.isfinite(nsd_tolerance_mm):
        raise UserInputError(f"NSD tolerance must be a finite number of mm >= 0, got {nsd_tolerance_mm}")
    if n_bootstrap < 1:
        raise UserInputError(f"number of bootstrap samples must be >= 1, got {n_bootstrap}")
    output = None if output is None else Path(output)
    if output is not None:  # outputs of an earlier run must not outlive a failure of this one
        for name in OUTPUT_FILES:
            (output / name).unlink(missing_ok=True)
    dataset = load_dataset_json(Path(dataset_json))
    predictions, cases, references = collect_predictions({k: Path(v) for k, v in models.items()}, Path(reference),
                                                         dataset.file_ending)
    reader_writer = reader_writer_for(dataset, references[cases[0]])
    jobs = [_CaseJob(case, references[case],
                     [(model.name, condition.name, model.files[condition.name][case])
                      for model in predictions for condition in model.conditions],
                     reader_writer, dataset, nsd_tolerance_mm)
            for case in cases]
    rows = [row for case_rows in _run_jobs(jobs, num_processes, progress) for row in case_rows]

    condition_rows = [{"model": model.name, "condition": c.name, "family": c.family, "severity": c.severity,
                       "preset": c.preset, "is_clean": c.is_clean, "folder": str(c.folder)}
                      for model in predictions for c in model.conditions]
    conditions = pd.DataFrame(condition_rows)
    fbr_ranges = {model.name: training_fbr_range_of_predictions(model.folder) for model in predictions}
    per_case = _per_case_table(rows, conditions, dataset.targets, fbr_ranges)
    clean = _clean_condition(conditions)
    model_names = [model.name for model in predictions]
    with_mean = stats.add_foreground_mean(per_case)
    statistics = stats.summary_statistics(with_mean, seed, n_bootstrap)
    first_condition = conditions.drop_duplicates("condition")[["condition", "family", "severity"]]
    result = EvaluationResult(
        per_case=per_case,
        statistics=statistics,
        degradation=stats.degradation(with_mean, clean, seed, n_bootstrap),
        severity_curves=stats.severity_curves(statistics, first_condition, clean),
        best_model_shares=stats.best_model_shares(with_mean, model_names),
        pairwise_tests=stats.pairwise_tests(with_mean, model_names),
        conditions=conditions,
        clean_condition=clean,
        settings={
            "models": {model.name: str(model.folder) for model in predictions},
            "reference": str(reference), "dataset_json": str(dataset_json), "file_ending": dataset.file_ending,
            "nsd_tolerance_mm": nsd_tolerance_mm, "seed": seed, "n_bootstrap": n_bootstrap,
            "confidence": stats.CONFIDENCE, "ignore_label": dataset.ignore_label,
            "unpredicted_reference_cases": sorted(set(_all_reference_cases(Path(reference), dataset)) - set(cases)),
            "empty_mask_policy": EMPTY_MASK_POLICY,
            "training_fbr_ranges": fbr_ranges,
        },
    )
    if output is not None:
        write_tables(result, output)
    return result


EMPTY_MASK_POLICY = {
    "both": "Dice = IoU = NSD = 1, HD95 = ASSD = 0, volume differences 0",
    "reference": "Dice = IoU = NSD = 0, HD95 = ASSD = image diagonal (mm), relative volume difference undefined",
    "prediction": "Dice = IoU = NSD = 0, HD95 = ASSD = image diagonal (mm), relative volume difference -1",
}


def write_tables(result: EvaluationResult, output: str | os.PathLike) -> None:
    """Write ``per_case.parquet``, ``per_case.csv`` and then ``summary.json`` into ``output``."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / PER_CASE_PARQUET) as tmp:
        result.per_case.to_parquet(tmp, index=False)
    with atomic_path(output / PER_CASE_CSV) as tmp:
        result.per_case.to_csv(tmp, index=False)
    atomic_write_json(output / SUMMARY_JSON, result.summary())


# --- per-case metrics ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _CaseJob:
    case: str
    reference: Path
    predictions: list[tuple[str, str, Path]]  # model, condition, file
    reader_writer: type
    dataset: DatasetInfo
    nsd_tolerance_mm: float


def _evaluate_case(job: _CaseJob) -> list[dict[str, Any]]:
    """All rows of one case: the reference is read once for every model and condition."""
    reader = job.reader_writer()
    reference = read_segmentation(reader, job.reference, job.dataset.allowed_values, job.dataset.path)
    ignore = None if job.dataset.ignore_label is None else reference.array == job.dataset.ignore_label
    reference_masks = [target.mask(reference.array) for target in job.dataset.targets]
    image_fbr = foreground_fraction(reference.array, job.dataset.ignore_label)
    rows = []
    for model, condition, path in job.predictions:
        prediction = read_segmentation(reader, path, job.dataset.allowed_values, job.dataset.path)
        check_same_geometry(reference, prediction)
        context_fbr = read_context_fbr(path.parent, job.case)  # context conditions: the crop's fraction
        test_fbr = image_fbr if context_fbr is None else context_fbr
        for target, reference_mask in zip(job.dataset.targets, reference_masks):
            metrics = compare_masks(reference_mask, target.mask(prediction.array), reference.spacing,
                                    job.nsd_tolerance_mm, ignore)
            rows.append({"model": model, "condition": condition, "case": job.case, "label": target.name,
                         "label_value": target.key, **metrics, "test_fbr": test_fbr, "prediction_file": str(path),
                         "reference_file": str(job.reference)})
    return rows


def _run_jobs(jobs: list[_CaseJob], num_processes: int, progress: bool) -> Iterator[list[dict[str, Any]]]:
    from tqdm import tqdm

    total = sum(len(job.predictions) for job in jobs)
    with tqdm(total=total, desc="eval", unit="prediction", disable=not progress) as bar:
        if num_processes <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield _evaluate_case(job)
                bar.update(len(job.predictions))
            return
        with ProcessPoolExecutor(max_workers=min(num_processes, len(jobs))) as pool:
            try:
                for job, rows in zip(jobs, pool.map(_evaluate_case, jobs)):
                    yield rows
                    bar.update(len(job.predictions))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def _per_case_table(rows: list[dict[str, Any]], conditions: pd.DataFrame, targets: tuple[Target, ...],
                    fbr_ranges: Mapping[str, dict | None]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table = table.merge(conditions[["model", "condition", "family", "severity", "preset"]], on=["model", "condition"],
                        how="left")
    # Deterministic order whatever the worker scheduling: models and conditions as given, then case
    # and the dataset.json order of labels.
    order = {name: i for i, name in enumerate(dict.fromkeys(zip(conditions["model"], conditions["condition"])))}
    label_order = {target.name: i for i, target in enumerate(targets)}
    table["_pair"] = [order[pair] for pair in zip(table["model"], table["condition"])]
    table["_label"] = table["label"].map(label_order)
    table = table.sort_values(["_pair", "case", "_label"], kind="stable").drop(columns=["_pair", "_label"])
    table["severity"] = table["severity"].astype(float)
    table = annotate_training_range(table, dict(fbr_ranges))
    return table[PER_CASE_COLUMNS].reset_index(drop=True)


def _clean_condition(conditions: pd.DataFrame) -> str | None:
    clean = list(dict.fromkeys(conditions.loc[conditions["is_clean"], "condition"]))
    if CLEAN in clean:
        return CLEAN
    return clean[0] if clean else None


def _all_reference_cases(reference: Path, dataset: DatasetInfo) -> list[str]:
    ending = dataset.file_ending
    return [p.name[:-len(ending)] for p in reference.iterdir() if p.is_file() and p.name.endswith(ending)]


def _json_ready(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> null, numpy scalars -> Python, tuples -> lists, paths -> str."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value

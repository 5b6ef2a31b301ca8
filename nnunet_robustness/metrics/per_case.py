"""The per-case table: every prediction of every model and condition scored against its reference, one
row per model x condition x case x label/region (``per_case_columns()``; ``docs/evaluation.md``).

Each case's reference is read once for all its predictions; cases are spread over worker processes.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from nnunet_robustness.foreground_ratio import foreground_fraction
from nnunet_robustness.metrics.inputs import (
    DatasetInfo,
    ModelPredictions,
    Target,
    check_same_geometry,
    read_segmentation,
    reader_writer_for,
)
from nnunet_robustness.metrics.masks import METRICS, compare_masks
from nnunet_robustness.records.context_fbr import read_context_fbr
from nnunet_robustness.records.input_change import InputChange

IDENTITY_COLUMNS = ["model", "condition", "family", "severity", "preset", "case", "label", "label_value"]
COUNT_COLUMNS = ["tp", "fp", "fn", "ref_voxels", "pred_voxels", "ref_volume", "pred_volume"]
# test FBR: foreground fraction of the evaluated image (the crop's for context conditions); training
# range and flag from the model's fbr_train.json logs (nnunet_robustness.analysis.fbr), NA without them
FBR_COLUMNS = ["test_fbr", "training_fbr_low", "training_fbr_high", "fbr_outside_training"]
# what the model saw: the change of its input after its own normalisation (run's .input.json records;
# NA for clean and for folders not made by run), nnunet_robustness.runner.input_space
INPUT_COLUMNS = ["input_ssim", "input_rel_l2"]
def per_case_columns() -> list[str]:
    """The per-case table's columns: every registered metric (``masks.METRICS``, read at call time, so a
    metric registered later is a column too), the counts, the empty-mask case, FBR and input change."""
    return [*IDENTITY_COLUMNS, *METRICS, *COUNT_COLUMNS, "empty_mask", *FBR_COLUMNS, *INPUT_COLUMNS,
            "stratum",  # the case's group when eval has strata (analysis/strata.py), else empty
            "prediction_file",
            "reference_file"]


def __getattr__(name: str) -> Any:
    if name == "PER_CASE_COLUMNS":  # the columns under the metric registry as it is now
        return per_case_columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def conditions_table(predictions: list[ModelPredictions]) -> pd.DataFrame:
    """One row per model x condition: family, severity, preset, whether it is clean, its folder."""
    return pd.DataFrame([{"model": model.name, "condition": c.name, "family": c.family, "severity": c.severity,
                          "preset": c.preset, "is_clean": c.is_clean, "folder": str(c.folder),
                          "calibrated_severity": c.condition.calibrated_severity,
                          "parameters": None if c.parameters is None else json.dumps(c.parameters, sort_keys=True)}
                         for model in predictions for c in model.conditions])


def per_case_table(predictions: list[ModelPredictions], cases: list[str], references: dict[str, Path],
                   dataset: DatasetInfo, nsd_tolerance_mm: float = 1.0, num_processes: int = 1,
                   progress: bool = True, device: str | None = None) -> pd.DataFrame:
    """Metrics of every prediction (``collect_predictions``' output) against its reference; the
    training-FBR columns are left to :func:`nnunet_robustness.analysis.fbr.annotate_training_range`.
    ``device="cuda"``: surface distances on the GPU (``compare_masks``), the CPU code without CUDA."""
    if device is not None and str(device).startswith("cuda"):
        from nnunet_robustness.metrics.surface_torch import cuda_device

        device = cuda_device(device)  # None (with one warning) when torch sees no GPU
    else:
        device = None
    reader_writer = reader_writer_for(dataset, references[cases[0]])
    jobs = [_CaseJob(case, references[case],
                     [(model.name, condition.name, model.files[condition.name][case])
                      for model in predictions for condition in model.conditions],
                     reader_writer, dataset, nsd_tolerance_mm, device)
            for case in cases]
    rows = [row for case_rows in _run_jobs(jobs, num_processes, progress) for row in case_rows]
    return _per_case_table(rows, conditions_table(predictions), dataset.targets)


@dataclass(frozen=True)
class _CaseJob:
    case: str
    reference: Path
    predictions: list[tuple[str, str, Path]]  # model, condition, file
    reader_writer: type
    dataset: DatasetInfo
    nsd_tolerance_mm: float
    device: str | None = None  # a CUDA device for the surface distances, None for the CPU code


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
        change = InputChange.read_if_present(path.parent, job.case)
        seen = {"input_ssim": math.nan, "input_rel_l2": math.nan} if change is None else change.to_json()
        for target, reference_mask in zip(job.dataset.targets, reference_masks):
            metrics = compare_masks(reference_mask, target.mask(prediction.array), reference.spacing,
                                    job.nsd_tolerance_mm, ignore, job.device)
            rows.append({"model": model, "condition": condition, "case": job.case, "label": target.name,
                         "label_value": target.key, **metrics, "test_fbr": test_fbr, **seen, "prediction_file": str(path),
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
        # CUDA cannot be used in a forked child of a process that touched it: GPU workers are spawned
        context = multiprocessing.get_context("spawn") if jobs[0].device is not None else None
        with ProcessPoolExecutor(max_workers=min(num_processes, len(jobs)), mp_context=context) as pool:
            try:
                for job, rows in zip(jobs, pool.map(_evaluate_case, jobs)):
                    yield rows
                    bar.update(len(job.predictions))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def _per_case_table(rows: list[dict[str, Any]], conditions: pd.DataFrame, targets: tuple[Target, ...]
                    ) -> pd.DataFrame:
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
    return table[[c for c in per_case_columns() if c in table]].reset_index(drop=True)

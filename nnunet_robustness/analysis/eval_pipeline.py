"""``evaluate``: metrics of prediction folders against a reference folder, robustness summaries, and
the output tables (``per_case.csv``, ``per_case.parquet``, ``summary.json``)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from nnunet_robustness.analysis import eval_analyses
from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.eval_analyses.base import Measured, Options
from nnunet_robustness.analysis.fbr import annotate_training_range, training_fbr_range_of_predictions
from nnunet_robustness.analysis.raters import write_consensus_folder
from nnunet_robustness.analysis.strata import (
    SMALL_GROUP,
    STRATUM,
    case_groups,
    groupings_of,
    parse_by,
    resolve_strata,
    resolve_subgroups,
)
from nnunet_robustness.conditions import CLEAN_NAME
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import (
    atomic_path,
    atomic_write_json,
    csv_safe,
    files_with_ending,
    json_ready,
    package_versions,
    read_json,
    refuse_output_inside,
)
from nnunet_robustness.metrics.inputs import DatasetInfo, collect_predictions, load_dataset_json
from nnunet_robustness.metrics.masks import EMPTY_MASK_POLICY, EMPTY_MASK_VALUES, METRICS
from nnunet_robustness.metrics.per_case import conditions_table, per_case_columns, per_case_table
from nnunet_robustness.records.input_change import CANCELLED_BELOW

PER_CASE_CSV = "per_case.csv"
PER_CASE_PARQUET = "per_case.parquet"
SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"
CONSENSUS_FOLDER = "consensus_reference"
OUTPUT_FILES = (PER_CASE_CSV, PER_CASE_PARQUET, SUMMARY_JSON, REPORT_HTML)


def analysis_tables() -> tuple[str, ...]:
    """The tables the analyses write when they have rows (raters.csv, robust_training.csv, real_shift.csv, ...)."""
    return tuple(name for analysis in eval_analyses.ANALYSES for name in analysis.tables)


def __getattr__(name: str) -> Any:
    if name == "PER_CASE_COLUMNS":  # the per-case columns under the metric registry as it is now
        return per_case_columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class EvaluationResult:
    """Everything ``evaluate`` computed; every table is tidy (one observation per row).

    ``per_case``: one row per model x condition x case x label/region (``per_case_columns()``);
    ``conditions``: model, condition, family, severity, preset, is_clean, folder; input_ssim, input_rel_l2
    (medians of what the model saw) and cancelled (by the model's normalisation: left out of every
    robustness summary); ``runs``: model -> the names of its training runs in the per-case table.
    ``values``: the outputs of the analyses (``eval_analyses``), by name, read as attributes
    (``result.statistics``, ``result.raters``): each analysis's module says what its outputs hold.
    Labels include ``statistics.FOREGROUND_MEAN`` (per-case mean over labels) in every summary.
    """

    per_case: pd.DataFrame
    conditions: pd.DataFrame
    clean_condition: str | None
    runs: dict[str, list[str]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: the analyses' outputs, by name
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute or analysis output {name!r}")

    def replace(self, **changes: Any) -> "EvaluationResult":
        """A copy with fields or analysis outputs replaced (``dataclasses.replace`` knows only the fields)."""
        fields = {f.name for f in dataclasses.fields(self)}
        outputs = {name: value for name, value in changes.items() if name not in fields}
        unknown = sorted(set(outputs) - set(self.values))
        if unknown:
            raise TypeError(f"no field or analysis output {', '.join(unknown)}")
        return dataclasses.replace(self, **{name: value for name, value in changes.items() if name in fields},
                                   values={**self.values, **outputs})

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.conditions["model"]))

    def summary(self) -> dict[str, Any]:
        """The content of ``summary.json`` (NaN written as null): what was measured, then each analysis's part."""
        keys = dict(zip(self.per_case["label"], self.per_case["label_value"]))
        empty = (self.per_case.groupby(["model", "condition", "empty_mask"]).size()
                 .unstack(fill_value=0).reindex(columns=list(EMPTY_MASK_VALUES), fill_value=0))
        content: dict[str, Any] = {
            "settings": self.settings,
            "metrics": {name: {"description": m.description, "unit": m.unit, "higher_is_better": m.higher_is_better}
                        for name, m in METRICS.items()},
            "labels": {label: value for label, value in keys.items()},
            "cases": sorted(self.per_case["case"].unique().tolist()),
            "clean_condition": self.clean_condition,
            "conditions": self.conditions.to_dict(orient="records"),
            "empty_masks": [{"model": model, "condition": condition, **row}
                            for (model, condition), row in empty.to_dict(orient="index").items()],
            "runs": self.runs,
        }
        for analysis in eval_analyses.ANALYSES:
            content.update(analysis.summary(self))
        return json_ready(content)


def is_eval_summary(content: Any) -> bool:
    """Whether parsed JSON is eval's summary.json (nnU-Net writes a summary.json of its own)."""
    return isinstance(content, dict) and "per_model" in content and "metrics" in content


@dataclass(frozen=True)
class EvalSummary:
    """``summary.json`` of an eval output folder, as ``EvaluationResult.summary`` writes it: the one reader
    (``nnunet-robust card``). The tables come back as data frames, the rest as parsed JSON."""

    path: Path
    content: dict[str, Any]

    # keys every summary of this version has; an older summary lacking one is refused with its name
    REQUIRED = ("settings", "conditions", "statistics", "degradation", "model_checks", "rood_mri", "verdict")

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "EvalSummary":
        path = Path(folder)
        path = path / SUMMARY_JSON if path.is_dir() else path
        content = read_json(path, "eval summary.json")
        if not is_eval_summary(content):
            raise UserInputError(f"{path}: not written by nnunet-robust eval (it has no per_model and metrics)")
        missing = [key for key in cls.REQUIRED if key not in content]
        if missing:
            raise UserInputError(f"{path}: lacks {', '.join(missing)}; written by an older eval: run eval again")
        return cls(path, content)

    @property
    def settings(self) -> dict[str, Any]:
        return self.content["settings"]

    def table(self, key: str) -> pd.DataFrame:
        """A list-of-records entry (``statistics``, ``degradation``, ``conditions``, ``rood_mri``) as a frame."""
        return pd.DataFrame(self.content.get(key) or [])

    def strata_table(self, key: str) -> pd.DataFrame:
        """``strata.statistics`` or ``strata.degradation`` (empty without strata or subgroups)."""
        return pd.DataFrame((self.content.get("strata") or {}).get(key) or [])


def evaluate(models: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]],
             reference: str | os.PathLike | Sequence[str | os.PathLike],
             dataset_json: str | os.PathLike, output: str | os.PathLike | None = None, nsd_tolerance_mm: float = 1.0,
             seed: int = 0, n_bootstrap: int = 1000, num_processes: int = 1, progress: bool = True,
             consensus_method: str = "staple", allow_weak_models: bool = False,
             strata_file: str | os.PathLike | None = None, equivalence: float | None = None,
             shift_file: str | os.PathLike | None = None, metadata_file: str | os.PathLike | None = None,
             by: str | Sequence[str] | None = None, command: str | None = None,
             device: str | None = None) -> EvaluationResult:
    """Evaluate the prediction folders of one or more models against ``reference`` (``labelsTs``).

    ``models`` maps a model name to its prediction folder (any of the layouts in
    ``inputs``), or to several: one per training run (seeds, or nnU-Net's folds predicted separately), named
    ``NAME:1``, ``NAME:2``, ... in the per-case table; the verdict then compares models with the two-level
    bootstrap over runs and cases. ``equivalence``: a margin (metric units) for "equivalent within +/-margin"
    (two one-sided tests) in the verdict. With ``output``, writes ``per_case.csv``, ``per_case.parquet`` and, last, as the
    mark of a complete evaluation, ``summary.json`` (each atomically; ``nnunet-robust eval`` writes
    them with the report through a staging folder, so a failed re-run leaves the earlier outputs whole).
    Bad input raises ``UserInputError`` before anything is written.

    Several ``reference`` folders (raters, same case names): every statistic and the verdict use their
    consensus (STAPLE by default, ``consensus_method="majority"``), written to
    ``output/consensus_reference``; ``raters`` then holds each prediction against each rater and the
    consensus, the inter-rater range and the case's disagreement (``raters.csv``).

    Groups of cases judged on their own as well as pooled (``analysis/strata.py``): ``strata_file`` (a
    ``case,stratum`` CSV), and ``metadata_file`` with ``by`` (a CSV of case metadata and the columns to group
    by, e.g. ``"scanner,sex"``: each column a grouping, its groups named ``scanner=B``). ``command``: the
    command line that asked for this evaluation, recorded in ``settings`` (cards quote it). ``device="cuda"``:
    the surface distances on the GPU when torch sees one (the same values; ``metrics/surface_torch.py``).
    """
    _check_numbers(nsd_tolerance_mm, n_bootstrap, equivalence)
    options = Options(nsd_tolerance_mm, seed, n_bootstrap, num_processes, progress, consensus_method, allow_weak_models,
                       equivalence, shift_file, strata_file, metadata_file, parse_by(by), command, dataset_json,
                       device)
    output = None if output is None else Path(output)
    result = _analyse(_measure(models, reference, output, options), options)
    if output is not None:
        write_tables(result, output)
    return result


def _check_numbers(nsd_tolerance_mm: float, n_bootstrap: int, equivalence: float | None) -> None:
    if nsd_tolerance_mm < 0 or not math.isfinite(nsd_tolerance_mm):
        raise UserInputError(f"NSD tolerance must be a finite number of mm >= 0, got {nsd_tolerance_mm}")
    if n_bootstrap < 1:
        raise UserInputError(f"number of bootstrap samples must be >= 1, got {n_bootstrap}")
    if equivalence is not None and not (math.isfinite(equivalence) and equivalence > 0):
        raise UserInputError(f"equivalence margin must be a finite number > 0, got {equivalence}")


def _measure(models: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]],
             reference: str | os.PathLike | Sequence[str | os.PathLike], output: Path | None,
             options: Options) -> Measured:
    """Read the prediction folders, the reference (or the raters' consensus) and the groups of cases, and
    compute the per-case table."""
    runs, folders = expand_runs(models)
    dataset = load_dataset_json(Path(options.dataset_json))
    raters, reference = _reference_or_consensus(reference, output, options.consensus_method, dataset.file_ending)
    predictions, cases, references = collect_predictions(folders, Path(reference), dataset.file_ending)
    conditions = conditions_table(predictions)
    fbr_ranges = {model.name: training_fbr_range_of_predictions(model.folder) for model in predictions}
    # the groups before the metrics: a bad strata or metadata file is refused in seconds, not after hours
    strata = resolve_strata(None if options.strata_file is None else Path(options.strata_file),
                            Path(options.dataset_json), sorted(cases))
    groupings = groupings_of(strata, resolve_subgroups(
        None if options.metadata_file is None else Path(options.metadata_file), options.by, sorted(cases)))
    per_case = per_case_table(predictions, cases, references, dataset, options.nsd_tolerance_mm,
                              options.num_processes, options.progress, options.device)
    # a case belongs to one group per grouping: the per-case column lists them all ("scanner=B; sex=F")
    per_case = annotate_training_range(per_case, fbr_ranges).assign(
        **{STRATUM: per_case["case"].map(case_groups(groupings)) if groupings else None})[per_case_columns()]
    clean = _clean_condition(conditions)
    return Measured(runs, dataset, raters, Path(reference), predictions, cases, strata, groupings, fbr_ranges,
                     per_case, _what_the_model_saw(conditions, per_case), clean)


def _analyse(m: Measured, options: Options) -> EvaluationResult:
    """Statistics, model comparisons and the verdict of the measured per-case table: every analysis of the
    registry (``eval_analyses``)."""
    values, settings, fdr_tests = eval_analyses.run_analyses(m, options)
    return EvaluationResult(per_case=m.per_case, conditions=m.conditions, clean_condition=m.clean, runs=m.runs,
                            settings={**_settings(m, options, fdr_tests), **settings}, values=values)


def _settings(m: Measured, options: Options, fdr_tests: Any) -> dict[str, Any]:
    """``summary.json``'s ``settings``: what was evaluated, how, and with which versions (the analyses add
    their own after these)."""
    several = len(m.raters) > 1
    return {
        "models": {model.name: str(model.folder) for model in m.predictions},
        "reference": str(m.reference), "raters": [str(r) for r in m.raters] if several else [],
        "consensus_method": options.consensus_method if several else None,
        "dataset_json": str(options.dataset_json), "file_ending": m.dataset.file_ending,
        "nsd_tolerance_mm": options.nsd_tolerance_mm, "seed": options.seed, "n_bootstrap": options.n_bootstrap,
        "runs": m.runs, "equivalence_margin": options.equivalence,
        "shift_file": None if options.shift_file is None else str(options.shift_file),
        "strata": _strata_settings(m, options),
        "command": options.command,
        "confidence": stats.CONFIDENCE, "ignore_label": m.dataset.ignore_label, "fdr_tests": fdr_tests,
        "unpredicted_reference_cases": sorted(set(_all_reference_cases(m.reference, m.dataset)) - set(m.cases)),
        "empty_mask_policy": EMPTY_MASK_POLICY,
        "versions": package_versions(),
        "training_fbr_ranges": m.fbr_ranges,
    }


def _strata_settings(m: Measured, options: Options) -> dict | None:
    """Where the groups came from and their sizes; None without groups."""
    groups = m.groups
    if not groups:
        return None
    return {"source": (str(options.strata_file) if options.strata_file else "make-dataset generation record")
            if m.strata else None,
            "metadata": None if options.metadata_file is None else str(options.metadata_file), "by": options.by,
            "cases": {name: len(members) for name, members in groups.items()},
            "groupings": {grouping: list(members) for grouping, members in m.groupings.items()},
            "small_group": SMALL_GROUP}


def _reference_or_consensus(reference: str | os.PathLike | Sequence[str | os.PathLike], output: Path | None,
                            consensus_method: str, file_ending: str) -> tuple[list[Path], Path]:
    """The raters' folders and the reference every statistic uses: the one folder given, or the raters'
    consensus written to ``output/consensus_reference``."""
    raters = [Path(reference)] if isinstance(reference, (str, os.PathLike)) else [Path(r) for r in reference]
    if len(raters) <= 1:
        return raters, raters[0]
    if output is None:
        raise UserInputError("several reference folders (raters) need an output folder for their consensus")
    return raters, write_consensus_folder(raters, output / CONSENSUS_FOLDER, consensus_method, file_ending)


def expand_runs(models: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]]
                ) -> tuple[dict[str, list[str]], dict[str, Path]]:
    """Model -> its runs' names, and run name -> prediction folder: one folder keeps the model's name,
    several become ``NAME:1``, ``NAME:2``, ... (training runs of one model)."""
    runs: dict[str, list[str]] = {}
    folders: dict[str, Path] = {}
    for name, given in models.items():
        listed = [given] if isinstance(given, (str, os.PathLike)) else list(given)
        if not listed:
            raise UserInputError(f"model {name!r}: no prediction folder given")
        if len(set(map(str, listed))) < len(listed):
            raise UserInputError(f"model {name!r}: the same prediction folder is given twice as a training run")
        names = [name] if len(listed) == 1 else [f"{name}:{index}" for index in range(1, len(listed) + 1)]
        runs[name] = names
        folders.update({run: Path(folder) for run, folder in zip(names, listed)})
    return runs, folders


def check_output_folder(output: Path, models: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]],
                        references: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse an output folder whose files eval did not write (nnU-Net's summary.json in a prediction
    folder) or that lies inside a prediction or reference folder: eval never overwrites what it did not
    make, and its files never become references or predictions of the next eval."""
    output = Path(output).resolve()
    for name, folder in expand_runs(models)[1].items():
        folder = Path(folder).resolve()
        if output == folder or folder in output.parents:
            raise UserInputError(f"{output}: the output folder is inside model {name}'s prediction folder {folder}; "
                                 "choose a folder of its own (e.g. next to it)")
    refuse_output_inside(output, {f"reference folder ({i + 1})" if len(references) > 1 else "reference folder": r
                                  for i, r in enumerate(references)})
    summary = output / SUMMARY_JSON
    if summary.is_file():
        content = read_json(summary, "summary.json")
        if not is_eval_summary(content):
            raise UserInputError(f"{summary}: not written by nnunet-robust eval (e.g. nnUNetv2_evaluate_folder's); "
                                 "eval will not overwrite it: choose another output folder")


def write_tables(result: EvaluationResult, output: str | os.PathLike) -> None:
    """Write ``per_case.parquet``, ``per_case.csv`` and then ``summary.json`` into ``output``."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / PER_CASE_PARQUET) as tmp:
        result.per_case.to_parquet(tmp, index=False)
    with atomic_path(output / PER_CASE_CSV) as tmp:
        csv_safe(result.per_case).to_csv(tmp, index=False)
    for analysis in eval_analyses.ANALYSES:
        for name, value in analysis.tables.items():
            frame = getattr(result, value)
            if len(frame):
                with atomic_path(output / name) as tmp:
                    csv_safe(frame).to_csv(tmp, index=False)
    atomic_write_json(output / SUMMARY_JSON, result.summary())


def _what_the_model_saw(conditions: pd.DataFrame, per_case: pd.DataFrame) -> pd.DataFrame:
    """Per model and condition: the median change of the model's input (SSIM, relative L2; NA without
    ``run``'s records) and whether the model's normalisation cancelled the condition (every case's
    relative L2 change below ``CANCELLED_BELOW``)."""
    per_item = per_case.drop_duplicates(["model", "condition", "case"])
    seen = (per_item.groupby(["model", "condition"], sort=False)
            .agg(input_ssim=("input_ssim", "median"), input_rel_l2=("input_rel_l2", "median"),
                 input_rel_l2_max=("input_rel_l2", "max"), measured=("input_rel_l2", "count"),
                 items=("case", "size"))
            .reset_index())
    table = conditions.merge(seen, on=["model", "condition"], how="left")
    table["cancelled"] = ((table["measured"] == table["items"]) & (table["measured"] > 0)
                          & (table["input_rel_l2_max"] < CANCELLED_BELOW) & ~table["is_clean"])
    return table.drop(columns=["measured", "items", "input_rel_l2_max"])


def _clean_condition(conditions: pd.DataFrame) -> str | None:
    clean = list(dict.fromkeys(conditions.loc[conditions["is_clean"], "condition"]))
    if CLEAN_NAME in clean:
        return CLEAN_NAME
    return clean[0] if clean else None


def _all_reference_cases(reference: Path, dataset: DatasetInfo) -> list[str]:
    ending = dataset.file_ending
    return [p.name[:-len(ending)] for p in files_with_ending(reference, ending)]

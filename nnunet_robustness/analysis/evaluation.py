"""``evaluate``: metrics of prediction folders against a reference folder, robustness summaries, and
the output tables (``per_case.csv``, ``per_case.parquet``, ``summary.json``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from nnunet_robustness.analysis import real_shift as shift_module
from nnunet_robustness.analysis import robustness
from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.attack_check import weak_attacks
from nnunet_robustness.analysis.fbr import annotate_training_range, training_fbr_range_of_predictions
from nnunet_robustness.analysis.ranking import rank_stability
from nnunet_robustness.analysis.raters import rater_table, summarize_raters, write_consensus_folder
from nnunet_robustness.analysis.robust_training import robust_training_table, training_records
from nnunet_robustness.analysis.rood_mri import rood_mri_summary
from nnunet_robustness.analysis.sanity import NNUNET_DEFAULT_ITERATIONS, check_models
from nnunet_robustness.analysis.strata import (
    ALL_CASES,
    SMALL_GROUP,
    STRATUM,
    case_groups,
    compare_within_groups,
    group_verdicts,
    groupings_of,
    parse_by,
    resolve_strata,
    resolve_subgroups,
)
from nnunet_robustness.analysis.verdict import verdict
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
RATERS_CSV = "raters.csv"
ROBUST_TRAINING_CSV = "robust_training.csv"
REAL_SHIFT_CSV = "real_shift.csv"
SHIFT_AGREEMENT_CSV = "shift_agreement.csv"
CONSENSUS_FOLDER = "consensus_reference"
OUTPUT_FILES = (PER_CASE_CSV, PER_CASE_PARQUET, SUMMARY_JSON, REPORT_HTML)


def __getattr__(name: str) -> Any:
    if name == "PER_CASE_COLUMNS":  # the per-case columns under the metric registry as it is now
        return per_case_columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class EvaluationResult:
    """Everything ``evaluate`` computed; every table is tidy (one observation per row).

    ``per_case``: one row per model x condition x case x label/region (``per_case_columns()``);
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
    # model, condition, family, severity, preset, is_clean, folder; input_ssim, input_rel_l2 (medians of what
    # the model saw) and cancelled (by the model's normalisation: left out of every robustness summary)
    conditions: pd.DataFrame
    clean_condition: str | None
    # which model is more robust: paired differences on two axes (drop from clean, score under the condition)
    # per family/condition and on clean (intervals, Wilcoxon or two-level bootstrap, BH-FDR;
    # nnunet_robustness.analysis.robustness) and the sentences of the verdict (analysis.verdict)
    robustness_comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    # three or more models: rank, P(rank 1) and 95 % rank interval per model and criterion (analysis.ranking)
    ranking: pd.DataFrame = field(default_factory=pd.DataFrame)
    # model -> the names of its training runs in the per-case table (one run: the model's own name)
    runs: dict[str, list[str]] = field(default_factory=dict)
    # ROOD-MRI's severity-weighted degradation and overall score (Dice, HD95) per model x family, to set
    # next to published ROOD-MRI numbers (nnunet_robustness.analysis.rood_mri)
    rood_mri: pd.DataFrame = field(default_factory=pd.DataFrame)
    # with several reference folders: each prediction against each rater and their consensus, by case
    # disagreement (nnunet_robustness.analysis.raters.rater_table); empty with one reference
    raters: pd.DataFrame = field(default_factory=pd.DataFrame)
    # with --shift: per shifted set and model, the real-shift degradation (unpaired vs clean), and how well each
    # synthetic condition/family predicts it across models (analysis/real_shift.py); its paired model
    # comparisons are rows of robustness_comparisons with scope "shift"
    real_shift: pd.DataFrame = field(default_factory=pd.DataFrame)
    shift_agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    # the sanity gate per model: clean quality, training schedule, why it is left out of the verdict
    model_checks: list[dict] = field(default_factory=list)
    verdict: list[str] = field(default_factory=list)
    # with strata or subgroups (eval --strata, eval --metadata --by, or a make-dataset dataset's levels): the
    # verdict per group (a warning first for a small group) and the foreground-mean statistics and degradation
    # per model x condition x group (analysis/strata.py); the comparisons of each group are rows of
    # robustness_comparisons with the group named in their ``stratum`` column
    strata_verdicts: dict[str, list[str]] = field(default_factory=dict)
    strata_statistics: pd.DataFrame = field(default_factory=pd.DataFrame)
    strata_degradation: pd.DataFrame = field(default_factory=pd.DataFrame)
    # robust-trained models against their baselines: per family (seen / unseen in training), pooled per
    # group, and the clean cost (nnunet_robustness.analysis.robust_training); empty without a robust model
    robust_training: pd.DataFrame = field(default_factory=pd.DataFrame)
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
        return json_ready({
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
            "verdict": self.verdict,
            "model_checks": self.model_checks,
            "rood_mri": self.rood_mri.to_dict(orient="records"),
            "raters": ({f"{m} / {c}": summarize_raters(g) for (m, c), g in self.raters.groupby(
                ["model", "condition"], sort=False)} if len(self.raters) else {}),
            "robustness_comparisons": self.robustness_comparisons.to_dict(orient="records"),
            "ranking": self.ranking.to_dict(orient="records"),
            "real_shift": self.real_shift.to_dict(orient="records"),
            "shift_agreement": self.shift_agreement.to_dict(orient="records"),
            "runs": self.runs,
            "robust_training": self.robust_training.to_dict(orient="records"),
            "strata": {"verdicts": self.strata_verdicts,
                       "statistics": self.strata_statistics.to_dict(orient="records"),
                       "degradation": self.strata_degradation.to_dict(orient="records")}
            if self.strata_verdicts else {},
        })


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
    options = _Options(nsd_tolerance_mm, seed, n_bootstrap, num_processes, progress, consensus_method, allow_weak_models,
                       equivalence, shift_file, strata_file, metadata_file, parse_by(by), command, dataset_json,
                       device)
    output = None if output is None else Path(output)
    result = _analyse(_measure(models, reference, output, options), options)
    if output is not None:
        write_tables(result, output)
    return result


@dataclass(frozen=True)
class _Options:
    """``evaluate``'s settings, as given (``by`` parsed), for the stages it runs."""

    nsd_tolerance_mm: float
    seed: int
    n_bootstrap: int
    num_processes: int
    progress: bool
    consensus_method: str
    allow_weak_models: bool
    equivalence: float | None
    shift_file: str | os.PathLike | None
    strata_file: str | os.PathLike | None
    metadata_file: str | os.PathLike | None
    by: Any
    command: str | None
    dataset_json: str | os.PathLike
    device: str | None = None  # "cuda": surface distances on the GPU (metrics/surface_torch.py)


@dataclass(frozen=True)
class _Measured:
    """What ``evaluate`` read and measured before any statistics: the per-case table and what it needs."""

    runs: dict[str, list[str]]
    dataset: DatasetInfo
    raters: list[Path]
    reference: Path
    predictions: list[Any]
    cases: Any
    strata: Any
    groupings: dict[str, Any]
    fbr_ranges: dict[str, dict | None]
    per_case: pd.DataFrame
    conditions: pd.DataFrame
    clean: str | None

    @property
    def groups(self) -> dict[str, Any]:
        return {name: members for grouping in self.groupings.values() for name, members in grouping.items()}


def _check_numbers(nsd_tolerance_mm: float, n_bootstrap: int, equivalence: float | None) -> None:
    if nsd_tolerance_mm < 0 or not math.isfinite(nsd_tolerance_mm):
        raise UserInputError(f"NSD tolerance must be a finite number of mm >= 0, got {nsd_tolerance_mm}")
    if n_bootstrap < 1:
        raise UserInputError(f"number of bootstrap samples must be >= 1, got {n_bootstrap}")
    if equivalence is not None and not (math.isfinite(equivalence) and equivalence > 0):
        raise UserInputError(f"equivalence margin must be a finite number > 0, got {equivalence}")


def _measure(models: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]],
             reference: str | os.PathLike | Sequence[str | os.PathLike], output: Path | None,
             options: _Options) -> _Measured:
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
    return _Measured(runs, dataset, raters, Path(reference), predictions, cases, strata, groupings, fbr_ranges,
                     per_case, _what_the_model_saw(conditions, per_case), clean)


def _analyse(m: _Measured, options: _Options) -> EvaluationResult:
    """Statistics, model comparisons and the verdict of the measured per-case table."""
    seed, n_bootstrap, runs, clean, conditions = options.seed, options.n_bootstrap, m.runs, m.clean, m.conditions
    model_names = [model.name for model in m.predictions]
    with_mean = stats.add_foreground_mean(m.per_case)
    statistics = stats.summary_statistics(with_mean, seed, n_bootstrap)
    # Robustness summaries leave out conditions the model's normalisation cancelled: their scores equal
    # clean by construction and would read as robustness.
    cancelled = set(conditions.loc[conditions["cancelled"], "condition"])
    robust = with_mean[~with_mean["condition"].isin(cancelled)]
    first_condition = conditions[~conditions["cancelled"]].drop_duplicates("condition")[
        ["condition", "family", "severity"]]
    # the sanity gate: a model that fails on clean images is left out of the verdict (analysis/sanity.py)
    checks = check_models(m.per_case, clean, {model.name: model.folder for model in m.predictions})
    judged = [c.model for c in checks if c.passed or options.allow_weak_models]
    judged_runs = {arm: [run for run in members if run in judged] for arm, members in runs.items()}
    judged_runs = {arm: members for arm, members in judged_runs.items() if members}
    degradation_rows = robustness.per_case_degradation(robust[robust["label"] == stats.FOREGROUND_MEAN], conditions,
                                                       clean)
    comparisons, strata_statistics, strata_degradation = compare_within_groups(
        robustness.compare_models(degradation_rows, judged_runs, seed, n_bootstrap).assign(**{STRATUM: ALL_CASES}),
        m.groups, with_mean, robust, degradation_rows, judged_runs, clean, seed, n_bootstrap)
    # with several runs per model, the model comparisons of the scores use each model's run-averaged cases
    by_model = _average_runs(robust, runs)
    pairwise = stats.pairwise_tests(by_model, list(runs) if by_model is not robust else model_names)
    real_shift, shift_agreement = pd.DataFrame(), pd.DataFrame()
    if options.shift_file is not None:
        real_shift, shift_agreement, shift_rows = shift_module.real_shift_tables(
            Path(options.shift_file), runs, judged_runs, m.dataset, with_mean, clean, degradation_rows,
            options.nsd_tolerance_mm, options.num_processes, options.progress, seed, n_bootstrap, options.device)
        comparisons = pd.concat([comparisons, shift_rows.assign(**{STRATUM: ALL_CASES})], ignore_index=True)
    # one Benjamini-Hochberg family: every test the report shows (the verdict uses the adjusted p)
    fdr_tests = robustness.report_fdr(comparisons, pairwise, stats.FOREGROUND_MEAN)
    records = training_records({model.name: model.folder for model in m.predictions})
    return EvaluationResult(
        per_case=m.per_case,
        statistics=statistics,
        degradation=stats.degradation(robust, clean, seed, n_bootstrap),
        severity_curves=stats.severity_curves(statistics[~statistics["condition"].isin(cancelled)], first_condition,
                                              clean),
        best_model_shares=stats.best_model_shares(by_model, list(runs) if by_model is not robust else model_names),
        pairwise_tests=pairwise,
        robustness_comparisons=comparisons,
        ranking=rank_stability(degradation_rows, judged_runs, stats.FOREGROUND_MEAN, seed=seed,
                               n_bootstrap=n_bootstrap),
        real_shift=real_shift,
        shift_agreement=shift_agreement,
        runs=runs,
        rood_mri=_rood_mri(robust, conditions),
        raters=(rater_table(m.per_case, m.raters, m.reference,
                            {target.name: target.value for target in m.dataset.targets}, m.dataset.file_ending,
                            options.nsd_tolerance_mm, options.consensus_method)
                if len(m.raters) > 1 else pd.DataFrame()),
        verdict=_gate_sentences(checks, options.allow_weak_models) + weak_attacks(
            with_mean[with_mean["label"] == stats.FOREGROUND_MEAN], conditions) + verdict(
            comparisons[comparisons[STRATUM] == ALL_CASES], judged_runs, stats.FOREGROUND_MEAN,
            equivalence=options.equivalence, given=len(runs)),
        strata_verdicts=group_verdicts(m.groups, comparisons, judged_runs, options.equivalence),
        strata_statistics=strata_statistics,
        strata_degradation=strata_degradation,
        robust_training=robust_training_table(records, judged, runs, comparisons, degradation_rows, with_mean, clean,
                                              seed, n_bootstrap),
        model_checks=[{**c.to_json(), "kept": c.passed or options.allow_weak_models} for c in checks],
        conditions=conditions,
        clean_condition=clean,
        settings=_settings(m, options, fdr_tests, records),
    )


def _settings(m: _Measured, options: _Options, fdr_tests: Any, records: Mapping[str, Any]) -> dict[str, Any]:
    """``summary.json``'s ``settings``: what was evaluated, how, and with which versions."""
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
        "robust_training_records": {model: {"trainer": r.trainer, **r.options} for model, r in records.items()},
    }


def _strata_settings(m: _Measured, options: _Options) -> dict | None:
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


def _average_runs(table: pd.DataFrame, runs: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Per model, condition, case and label: the metrics averaged over the model's runs (``table`` itself
    when every model has one run)."""
    if all(len(members) == 1 for members in runs.values()):
        return table
    arm_of = {run: arm for arm, members in runs.items() for run in members}
    metrics = list(METRICS)
    return (table.assign(model=table["model"].map(arm_of))
            .groupby(["model", "condition", "case", "label"], sort=False)[metrics].mean().reset_index())


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
    if len(result.raters):
        with atomic_path(output / RATERS_CSV) as tmp:
            csv_safe(result.raters).to_csv(tmp, index=False)
    if len(result.robust_training):
        with atomic_path(output / ROBUST_TRAINING_CSV) as tmp:
            csv_safe(result.robust_training).to_csv(tmp, index=False)
    for name, frame in ((REAL_SHIFT_CSV, result.real_shift), (SHIFT_AGREEMENT_CSV, result.shift_agreement)):
        if len(frame):
            with atomic_path(output / name) as tmp:
                csv_safe(frame).to_csv(tmp, index=False)
    atomic_write_json(output / SUMMARY_JSON, result.summary())


def _gate_sentences(checks: list, allow_weak_models: bool) -> list[str]:
    sentences = []
    for check in checks:
        if not check.passed:
            action = "kept in the verdict, marked (--allow-weak-models)" if allow_weak_models else (
                "left out of the verdict (--allow-weak-models keeps it)")
            sentences.append(f"{check.model} fails the sanity gate: {'; '.join(check.reasons)}; {action}.")
        if check.short_schedule:
            share = 100 * check.iterations / NNUNET_DEFAULT_ITERATIONS
            sentences.append(f"{check.model} was trained for {check.iterations} iterations ({share:.2g}% of nnU-Net's "
                             "default 1000 x 250): a short schedule; its robustness is that of an undertrained "
                             "network.")
    return sentences


def _rood_mri(table: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """ROOD-MRI's summary of the foreground mean, over the graded conditions (presets, context crops and
    cancelled conditions have no place in it)."""
    graded = conditions[conditions["is_clean"] | conditions["severity"].notna()][["model", "condition", "family",
                                                                                  "severity"]]
    rows = table[table["label"] == stats.FOREGROUND_MEAN].merge(graded, on=["model", "condition"])
    rows = rows[rows["family"].notna() | (rows["severity"] == 0)]
    rows.loc[rows["severity"] == 0, "family"] = None
    if rows["family"].notna().sum() == 0 or not (rows["severity"] == 0).any():
        return pd.DataFrame()
    return rood_mri_summary(rows, metrics=("dice", "hd95_mm"), by_label=False)


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

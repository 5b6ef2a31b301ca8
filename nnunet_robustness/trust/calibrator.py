"""``calibrate`` (fit a calibrator on labelled cases) and ``rate`` (bound, rate and flag new cases).

The calibrator is a JSON file (no pickle): method, alpha, per-label quantile models and conformal
quantile, feature names, rating bands, the false-negative-rate threshold lambda, temperature,
calibration-set diagnostics. Statistics: ``conformal``; features: ``uncertainty``; the exact
definitions and guarantees: ``docs/trust.md``.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.conditions import CLEAN_NAME as CLEAN
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_path, atomic_write_json, csv_safe, json_ready, package_versions, safe_path
from nnunet_robustness.metrics.masks import dice as dice_score
from nnunet_robustness.trust import uncertainty as unc
from nnunet_robustness.trust.conformal import (
    DiceLowerBound,
    RiskControl,
    clopper_pearson,
    conformal_risk_control,
)
from nnunet_robustness.trust.rating_inputs import (
    CaseArrays,
    DatasetContext,
    PredictionSet,
    first_prediction_file,
    load_case,
    load_dataset,
    open_predictions,
    write_mask,
)

CALIBRATOR_FORMAT = 1
CALIBRATOR_KIND = "nnunet-robust trust calibrator"
METHOD = {
    "dice_bound": "one-sided split-conformal CQR (Romano et al. 2019): linear alpha-quantile regression of Dice "
                  "on the features (fit part; weights of uncertainty features <= 0, of expected_dice >= 0), "
                  "score s = q_alpha(x) - Dice, Q = ceil((n+1)(1-alpha))-th smallest "
                  "score on the conformal part, bound = clip(q_alpha(x) - Q, 0, 1)",
    "risk_control": "conformal risk control of the false-negative rate (Angelopoulos et al., ICLR 2024), B = 1, "
                    "safe mask = prediction OR (structure probability >= lambda)",
    "guarantee": "marginal over calibration set and new case, for exchangeable data only",
}
DEFAULT_BANDS = (("A", 0.8), ("B", 0.6), ("C", 0.0))
TEMPERATURE_SAMPLE_PER_CASE = 20000  # voxels per fit case for the temperature NLL (deterministic sample)

RATINGS_CSV = "ratings.csv"
COVERAGE_CSV = "coverage.csv"
SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"
SAFE_MASKS_FOLDER = "safe_masks"
ENSEMBLE_FOLDER = "ensemble"
# the columns every ratings.csv of rate starts with: how rate recognises its own earlier file
_RATINGS_HEADER = "condition,family,severity,case,label,label_value,"


def is_our_ratings(head: str) -> bool:
    """Whether the start of a CSV file is a ``ratings.csv`` that ``rate`` wrote."""
    return head.startswith(_RATINGS_HEADER)


def parse_bands(spec: str | Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """``"A=0.8,B=0.6,C=0"`` -> bands ordered by decreasing minimum bound; the last must start at 0 so
    every case gets a rating. The lowest band is the one flagged for human review."""
    if isinstance(spec, str):
        bands = []
        for part in spec.split(","):
            name, sep, value = part.strip().partition("=")
            try:
                bands.append((name.strip(), float(value)))
            except ValueError:
                raise UserInputError(f"--bands {spec!r}: expected NAME=MIN_BOUND,..., e.g. A=0.8,B=0.6,C=0") from None
            if not sep or not name.strip():
                raise UserInputError(f"--bands {spec!r}: expected NAME=MIN_BOUND,..., e.g. A=0.8,B=0.6,C=0")
    else:
        bands = [(str(n), float(v)) for n, v in spec]
    bad = [b for b in bands if not math.isfinite(b[1])]
    if bad:  # float() takes "nan"; NaN sorts anywhere and no bound is ever >= it
        raise UserInputError(f"--bands {spec!r}: minimum bound {bad[0][1]} of band {bad[0][0]!r} is not a finite "
                             "number in [0, 1]")
    bands.sort(key=lambda b: -b[1])
    names = [b[0] for b in bands]
    if len(bands) < 2 or len(set(names)) != len(names) or len({b[1] for b in bands}) != len(bands):
        raise UserInputError(f"bands {spec!r}: need two or more bands with distinct names and minimum bounds")
    if bands[-1][1] != 0 or bands[0][1] > 1:
        raise UserInputError(f"bands {spec!r}: minimum bounds must lie in [0, 1] and the lowest band must start at 0")
    return tuple(bands)


def rate_bound(bound: float, bands: Sequence[tuple[str, float]]) -> str:
    return next(name for name, minimum in bands if bound >= minimum)


@dataclass
class LabelCalibration:
    label: str
    label_value: str
    dice_bound: DiceLowerBound
    risk_control: RiskControl
    calibration_coverage: float  # in-sample, on the conformal part
    reliability: unc.Reliability  # calibration cases not used for fitting, after temperature scaling
    reliability_uncalibrated: unc.Reliability

    def to_json(self) -> dict[str, Any]:
        return {"label_value": self.label_value, "dice_bound": self.dice_bound.to_json(),
                "risk_control": self.risk_control.to_json(), "calibration_coverage": self.calibration_coverage,
                "ece": self.reliability.ece, "ece_uncalibrated": self.reliability_uncalibrated.ece,
                "reliability": self.reliability.to_json(),
                "reliability_uncalibrated": self.reliability_uncalibrated.to_json()}


@dataclass
class Calibrator:
    alpha: float
    fnr_target: float
    temperature: float | None
    n_members: int
    band_width: int
    bands: tuple[tuple[str, float], ...]
    labels: dict[str, LabelCalibration]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return unc.feature_names(self.n_members)

    def to_json(self) -> dict[str, Any]:
        return json_ready({
            "kind": CALIBRATOR_KIND, "format": CALIBRATOR_FORMAT, "method": METHOD, "alpha": self.alpha,
            "fnr_target": self.fnr_target, "temperature": self.temperature, "n_members": self.n_members,
            "band_width_voxels": self.band_width, "feature_names": list(self.feature_names),
            "bands": [{"name": n, "min_bound": v} for n, v in self.bands],
            "labels": {name: label.to_json() for name, label in self.labels.items()},
            "settings": self.settings,
        })

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Calibrator":
        labels = {}
        for name, entry in data["labels"].items():
            rc = entry["risk_control"]
            labels[name] = LabelCalibration(
                name, entry["label_value"], DiceLowerBound.from_json(entry["dice_bound"]),
                RiskControl(float(rc["lambda"]), float(rc["target_fnr"]), int(rc["n"]), bool(rc["feasible"]),
                            float(rc["calibration_mean_fnr"])),
                _nan(entry["calibration_coverage"]), unc.Reliability.from_json(entry["reliability"]),
                unc.Reliability.from_json(entry["reliability_uncalibrated"]))
        temperature = data.get("temperature")
        calibrator = cls(float(data["alpha"]), float(data["fnr_target"]),
                         None if temperature is None else float(temperature), int(data["n_members"]),
                         int(data["band_width_voxels"]), parse_bands([(b["name"], b["min_bound"]) for b in data["bands"]]),
                         labels, data.get("settings", {}))
        if list(calibrator.feature_names) != list(data["feature_names"]):
            raise ValueError("feature names do not match this version of nnunet-robustness")
        return calibrator


def load_calibrator(path: str | Path) -> Calibrator:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserInputError(f"{path}: calibrator file not found (make one with `nnunet-robust calibrate`)") from None
    except (OSError, ValueError) as e:
        raise UserInputError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(data, dict) or data.get("kind") != CALIBRATOR_KIND:
        raise UserInputError(f"{path}: not an nnunet-robust calibrator (made by `nnunet-robust calibrate`)")
    if data.get("format") != CALIBRATOR_FORMAT:
        raise UserInputError(f"{path}: calibrator format {data.get('format')} is not {CALIBRATOR_FORMAT}; re-run calibrate")
    try:
        return Calibrator.from_json(data)
    except (KeyError, TypeError, ValueError) as e:
        raise UserInputError(f"{path}: invalid calibrator ({type(e).__name__}: {e})") from None


# --- per-case analysis ---------------------------------------------------------------------------------

@dataclass
class StructureResult:
    """One label of one case under one condition."""

    features: dict[str, float]
    dice: float | None
    fnr: np.ndarray | None          # FNR of the safe mask at every threshold of ``unc.THRESHOLDS``
    safe_voxels: np.ndarray         # size of the safe mask at every threshold
    predicted_voxels: int


def _valid(context: DatasetContext, arrays: CaseArrays) -> np.ndarray | None:
    ignore = context.info.ignore_label
    if ignore is None or arrays.reference is None:
        return None
    return arrays.reference != ignore


def analyse_case(context: DatasetContext, arrays: CaseArrays, temperature: float | None, band_width: int,
                 reliability: dict[str, tuple[unc.Reliability, unc.Reliability]] | None = None
                 ) -> dict[str, StructureResult]:
    """Features (and, with a reference, Dice and FNR curves) of every label; adds reliability counts
    (calibrated, uncalibrated) into ``reliability`` when given and a reference exists."""
    raw = arrays.probabilities
    probabilities = raw if temperature is None else unc.apply_temperature(raw, temperature, context.regions)
    valid = _valid(context, arrays)
    reference = arrays.reference
    foreground_area = None
    if reference is not None and reliability is not None:
        # ECE over the structures' neighbourhood: far from every structure almost all voxels are
        # confidently and correctly background, which would drive any model's ECE to ~0.
        foreground = (arrays.segmentation > 0) | (reference > 0)
        if context.info.ignore_label is not None:
            foreground &= reference != context.info.ignore_label
        foreground_area = unc.neighbourhood(foreground, band_width)
        if valid is not None:
            foreground_area &= valid
    results = {}
    for index, target in enumerate(context.info.targets):
        channel = context.channel(index)
        q = probabilities[channel]
        predicted = target.mask(arrays.segmentation)
        features = unc.structure_features(
            q, predicted, arrays.voxel_volume, band_width,
            member_q=[m[channel] for m in arrays.member_probabilities],
            member_masks=[target.mask(s) for s in arrays.member_segmentations], valid=valid)
        dice = fnr = None
        if reference is not None:
            truth = target.mask(reference)
            if valid is not None:
                truth, predicted_valid = truth & valid, predicted & valid
            else:
                predicted_valid = predicted
            dice = dice_score(truth, predicted_valid)
            fnr, safe_voxels = unc.fnr_curve(q, predicted, truth, valid=valid)
            if foreground_area is not None:
                calibrated, uncalibrated = reliability.setdefault(target.name, (unc.Reliability(), unc.Reliability()))
                calibrated.add(q[foreground_area], truth[foreground_area])
                uncalibrated.add(raw[channel][foreground_area], truth[foreground_area])
        else:
            _, safe_voxels = unc.fnr_curve(q, predicted, np.zeros_like(predicted), valid=valid)
        results[target.name] = StructureResult(features, dice, fnr, safe_voxels, int(np.count_nonzero(predicted)))
    return results


def _temperature_sample(context: DatasetContext, arrays: CaseArrays, band_width: int, seed: int, case: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic voxel sample (probabilities, targets) from the structures' neighbourhood."""
    reference = arrays.reference
    assert reference is not None
    area = unc.neighbourhood((arrays.segmentation > 0) | (reference > 0), band_width)
    valid = _valid(context, arrays)
    if valid is not None:
        area &= valid
    index = np.flatnonzero(area)
    rng = np.random.default_rng([seed, zlib.crc32(case.encode())])
    if index.size > TEMPERATURE_SAMPLE_PER_CASE:
        index = np.sort(rng.choice(index, TEMPERATURE_SAMPLE_PER_CASE, replace=False))
    flat = arrays.probabilities.reshape(arrays.probabilities.shape[0], -1)[:, index]
    labels = reference.reshape(-1)[index]
    if context.regions:
        targets = np.stack([np.isin(labels, t.value) if isinstance(t.value, tuple) else labels == t.value
                            for t in context.info.targets])
        return flat, targets
    return flat, labels.astype(np.int64)


# --- calibrate -----------------------------------------------------------------------------------------

def split_cases(cases: Sequence[str], fit_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Random split into the part that fits the quantile models (and temperature) and the conformal part."""
    if not 0 < fit_fraction < 1:
        raise UserInputError(f"--fit-fraction must be in (0, 1), got {fit_fraction}")
    order = np.random.default_rng(seed).permutation(len(cases))
    n_fit = int(round(fit_fraction * len(cases)))
    if n_fit < 3 or len(cases) - n_fit < 1:
        raise UserInputError(f"{len(cases)} calibration case(s) are too few: the fit part needs >= 3 cases and the "
                             f"conformal part >= 1 (more for a useful bound: >= (1 - alpha) / alpha)")
    fit = sorted(cases[i] for i in order[:n_fit])
    return fit, sorted(cases[i] for i in order[n_fit:])


def default_condition(prediction_set: PredictionSet) -> str:
    names = [c.name for c in prediction_set.conditions]
    if CLEAN in names:
        return CLEAN
    clean = [c.name for c in prediction_set.conditions if c.is_clean]
    if clean:
        return clean[0]
    if len(names) == 1:
        return names[0]
    raise UserInputError(f"{prediction_set.members[0]}: several conditions and none is clean; choose the "
                         f"calibration condition with --condition ({', '.join(names)})")


def calibrate(predictions: Sequence[str | Path], reference: str | Path, dataset_json: str | Path,
              alpha: float = 0.1, fnr_target: float = 0.1, condition: str | None = None, fit_fraction: float = 0.5,
              temperature_scaling: bool = False, bands: str | Sequence[tuple[str, float]] = DEFAULT_BANDS,
              band_width: int = 2, seed: int = 0, progress: bool = True) -> Calibrator:
    """Fit a calibrator on labelled cases predicted with ``run --save-probabilities``.

    ``predictions``: one folder, or one per fold (fold-spread features). Cases of ``condition``
    (default: the clean condition) are split into a fit part (quantile regressions, temperature) and
    a conformal part (conformal quantile; also the risk-control part, joined by the fit part when no
    temperature is fitted, since then nothing the FNR depends on was fitted on data).
    """
    from tqdm import tqdm

    if not 0 < alpha < 1:
        raise UserInputError(f"--alpha must be in (0, 1), got {alpha}")
    if not 0 < fnr_target < 1:
        raise UserInputError(f"--fnr-target must be in (0, 1), got {fnr_target}")
    if band_width < 1:
        raise UserInputError(f"--band-width must be >= 1 voxel, got {band_width}")
    bands = parse_bands(bands)
    folders = [Path(p) for p in predictions]
    from nnunet_robustness.metrics.inputs import load_dataset_json

    file_ending = load_dataset_json(Path(dataset_json)).file_ending
    context = load_dataset(Path(dataset_json), first_prediction_file(folders[0], file_ending))
    prediction_set = open_predictions(folders, file_ending)
    condition = condition or default_condition(prediction_set)
    prediction_set = open_predictions(folders, file_ending, [condition])
    cases = list(prediction_set.cases[condition])
    fit_cases, conformal_cases = split_cases(cases, fit_fraction, seed)

    temperature = None
    if temperature_scaling:
        samples, targets = [], []
        for case in tqdm(fit_cases, desc="calibrate: temperature", unit="case", disable=not progress):
            arrays = load_case(prediction_set, context, condition, case, Path(reference))
            sample, target = _temperature_sample(context, arrays, band_width, seed, case)
            samples.append(sample)
            targets.append(target)
        temperature = unc.fit_temperature(np.concatenate(samples, axis=1), np.concatenate(targets, axis=-1),
                                          context.regions)

    results: dict[str, dict[str, StructureResult]] = {}
    held_out_reliability: dict[str, tuple[unc.Reliability, unc.Reliability]] = {}
    for case in tqdm(cases, desc="calibrate: features", unit="case", disable=not progress):
        arrays = load_case(prediction_set, context, condition, case, Path(reference))
        # Reliability only of cases that fitted nothing: not the temperature's fit part.
        collect = temperature is None or case in conformal_cases
        results[case] = analyse_case(context, arrays, temperature, band_width,
                                     held_out_reliability if collect else None)

    n_members = len(folders)
    names = unc.feature_names(n_members)
    crc_cases = conformal_cases if temperature is not None else cases
    labels = {}
    for index, target in enumerate(context.info.targets):
        def table(part: list[str]) -> tuple[np.ndarray, np.ndarray]:
            rows = [results[c][target.name] for c in part]
            return (np.array([[r.features[n] for n in names] for r in rows]), np.array([r.dice for r in rows]))

        fit_x, fit_y = table(fit_cases)
        conf_x, conf_y = table(conformal_cases)
        bound = DiceLowerBound.fit(fit_x, fit_y, conf_x, conf_y, alpha, unc.feature_signs(names))
        covered = float(np.mean(conf_y >= bound.lower_bound(conf_x)))
        losses = np.stack([results[c][target.name].fnr for c in crc_cases])
        risk = conformal_risk_control(losses, unc.THRESHOLDS, fnr_target)
        calibrated, uncalibrated = held_out_reliability.get(target.name, (unc.Reliability(), unc.Reliability()))
        labels[target.name] = LabelCalibration(target.name, target.key, bound, risk, covered, calibrated,
                                               uncalibrated)
    return Calibrator(alpha, fnr_target, temperature, n_members, band_width, bands, labels, settings={
        "predictions": [str(f) for f in folders], "reference": str(reference), "dataset_json": str(dataset_json),
        "condition": condition, "fit_fraction": fit_fraction, "seed": seed,
        "cases": {"fit": fit_cases, "conformal": conformal_cases, "risk_control": list(crc_cases)},
        "regions": context.regions, "versions": package_versions(("nnunet-robustness", "nnunetv2", "numpy", "scikit-learn")),
    })


def write_calibrator(calibrator: Calibrator, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_json(path, calibrator.to_json())
    return path


# --- rate ----------------------------------------------------------------------------------------------

@dataclass
class RatingResult:
    ratings: pd.DataFrame     # one row per condition x case x label
    coverage: pd.DataFrame    # per condition x label (empty without references)
    reliability: dict[str, dict[str, unc.Reliability]]  # condition -> label -> counts (with references)
    calibrator: Calibrator
    settings: dict[str, Any]


def rate(calibrator: Calibrator, predictions: Sequence[str | Path], dataset_json: str | Path,
         reference: str | Path | None = None, output: str | Path | None = None, conditions: Sequence[str] | None = None,
         bands: str | Sequence[tuple[str, float]] | None = None, save_masks: bool = False,
         progress: bool = True, recorded_output: str | Path | None = None) -> RatingResult:
    """Bound, rate and flag every case of every condition; with ``reference``, also the actual Dice,
    whether the bound held, and the achieved FNR of the safe mask. With ``output`` and
    ``save_masks``, writes the safe masks (and, for several folds, the rated ensemble segmentation).
    ``recorded_output``: the folder the outputs end up in when ``output`` is a staging folder (the
    mask paths in ratings.csv name the final place)."""
    from tqdm import tqdm

    bands_used = parse_bands(bands) if bands is not None else calibrator.bands
    folders = [Path(p) for p in predictions]
    if len(folders) != calibrator.n_members:
        raise UserInputError(f"the calibrator was fitted on {calibrator.n_members} prediction folder(s) (folds); "
                             f"got {len(folders)}: give the same folds as for calibrate")
    from nnunet_robustness.metrics.inputs import load_dataset_json

    file_ending = load_dataset_json(Path(dataset_json)).file_ending
    context = load_dataset(Path(dataset_json), first_prediction_file(folders[0], file_ending))
    if context.target_names != list(calibrator.labels):
        raise UserInputError(f"{dataset_json}: labels {context.target_names} differ from the calibrator's "
                             f"{list(calibrator.labels)}")
    if save_masks and output is None:
        raise UserInputError("saving masks needs an output folder")
    prediction_set = open_predictions(folders, file_ending, conditions)
    rows = []
    reliability: dict[str, dict[str, tuple[unc.Reliability, unc.Reliability]]] = {}
    masks_to = Path(output) if save_masks else None
    recorded = (masks_to, Path(recorded_output)) if masks_to is not None and recorded_output is not None else None
    total = sum(len(c) for c in prediction_set.cases.values())
    with tqdm(total=total, desc="rate", unit="case", disable=not progress) as bar:
        for condition in prediction_set.conditions:
            for case in prediction_set.cases[condition.name]:
                arrays = load_case(prediction_set, context, condition.name, case,
                                   None if reference is None else Path(reference))
                results = analyse_case(context, arrays, calibrator.temperature, calibrator.band_width,
                                       reliability.setdefault(condition.name, {}))
                rows.extend(_rate_case(calibrator, context, arrays, results, condition, case, bands_used, masks_to,
                                       recorded))
                bar.update(1)
    ratings = pd.DataFrame(rows)
    lowest = bands_used[-1][0]
    ratings["flagged"] = ratings["rating"] == lowest
    # A case is as trustworthy as its least trustworthy structure.
    band_order = {name: i for i, (name, _) in enumerate(bands_used)}
    worst = ratings.groupby(["condition", "case"])["rating"].transform(lambda r: max(r, key=band_order.get))
    ratings["case_rating"] = worst
    ratings["case_flagged"] = ratings["case_rating"] == lowest
    coverage = coverage_table(ratings, calibrator.alpha) if reference is not None else pd.DataFrame()
    result = RatingResult(ratings, coverage, {c: {label: pair[0] for label, pair in per.items()}
                                              for c, per in reliability.items()}, calibrator, {
        "predictions": [str(f) for f in folders], "reference": None if reference is None else str(reference),
        "dataset_json": str(dataset_json), "bands": [list(b) for b in bands_used],
        "calibration_condition": calibrator.settings.get("condition"),
    })
    if output is not None:
        write_outputs(result, Path(output))
    return result


def _rate_case(calibrator: Calibrator, context: DatasetContext, arrays: CaseArrays, results: dict[str, StructureResult],
               condition: Any, case: str, bands: Sequence[tuple[str, float]], masks_to: Path | None,
               recorded: tuple[Path, Path] | None = None) -> list[dict]:
    """The rating rows of one case (one per structure); with ``masks_to``, its safe masks (and, for
    several folds, the rated ensemble segmentation) are written there."""
    names = calibrator.feature_names
    ending = context.info.file_ending
    if masks_to is not None:  # the masks threshold the same (scaled) probabilities the calibrator used
        probabilities = (arrays.probabilities if calibrator.temperature is None else
                         unc.apply_temperature(arrays.probabilities, calibrator.temperature, context.regions))
    rows = []
    for index, target in enumerate(context.info.targets):
        label, result = calibrator.labels[target.name], results[target.name]
        x = np.array([[result.features[n] for n in names]])
        bound = float(label.dice_bound.lower_bound(x)[0])
        lam = label.risk_control.threshold
        lam_index = int(np.searchsorted(unc.THRESHOLDS, lam))
        row = {
            "condition": condition.name, "family": condition.family, "severity": condition.severity,
            "case": case, "label": target.name, "label_value": target.key,
            **{n: result.features[n] for n in names},
            "uncertain_volume": result.features["uncertain_volume"],
            "predicted_volume": result.features["predicted_volume"],
            "predicted_dice": float(label.dice_bound.predicted_dice(x)[0]),
            "lower_bound": bound, "rating": rate_bound(bound, bands),
            "safe_mask_lambda": lam, "predicted_voxels": result.predicted_voxels,
            "safe_mask_voxels": int(result.safe_voxels[lam_index]),
            "size_cost": result.safe_voxels[lam_index] / max(result.predicted_voxels, 1),
        }
        if result.dice is not None:
            row.update(dice=result.dice, bound_held=bool(result.dice >= bound),
                       safe_mask_fnr=float(result.fnr[lam_index]))
        if masks_to is not None:
            mask = unc.safe_mask(probabilities[context.channel(index)], target.mask(arrays.segmentation), lam)
            path = safe_path(masks_to, SAFE_MASKS_FOLDER, condition.name, target.name, f"{case}{ending}")
            write_mask(context, arrays, mask, path)
            row["safe_mask_file"] = str(path if recorded is None else recorded[1] / path.relative_to(recorded[0]))
        rows.append(row)
    if masks_to is not None and len(arrays.member_segmentations) > 1:
        write_mask(context, arrays, arrays.segmentation, safe_path(masks_to, ENSEMBLE_FOLDER, condition.name,
                                                                   f"{case}{ending}"))
    return rows


def coverage_table(ratings: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Empirical coverage of the bound per condition x label, with an exact 95 % binomial interval,
    and the achieved FNR and size cost of the safe masks."""
    rows = []
    for (condition, label), group in ratings.groupby(["condition", "label"], sort=False):
        held = int(group["bound_held"].sum())
        low, high = clopper_pearson(held, len(group))
        rows.append({"condition": condition, "label": label, "n": len(group), "coverage": held / len(group),
                     "coverage_ci_low": low, "coverage_ci_high": high, "nominal": 1 - alpha,
                     "mean_lower_bound": group["lower_bound"].mean(), "mean_dice": group["dice"].mean(),
                     "mean_safe_mask_fnr": group["safe_mask_fnr"].mean(), "mean_size_cost": group["size_cost"].mean(),
                     "flagged": int(group["flagged"].sum())})
    return pd.DataFrame(rows)


def write_outputs(result: RatingResult, output: Path) -> None:
    """``ratings.csv``, ``coverage.csv`` (with references) and ``summary.json``; the HTML report is
    :func:`nnunet_robustness.reports.trust.write_report`'s (``rate`` writes it next to these)."""
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / RATINGS_CSV) as tmp:
        csv_safe(result.ratings).to_csv(tmp, index=False)
    if len(result.coverage):
        with atomic_path(output / COVERAGE_CSV) as tmp:
            csv_safe(result.coverage).to_csv(tmp, index=False)
    atomic_write_json(output / SUMMARY_JSON, json_ready({
        "settings": result.settings, "alpha": result.calibrator.alpha, "fnr_target": result.calibrator.fnr_target,
        "guarantee": METHOD["guarantee"], "coverage": result.coverage.to_dict(orient="records"),
        "flagged_cases": sorted({f"{c}/{k}" for c, k in result.ratings.loc[result.ratings["case_flagged"],
                                                                               ["condition", "case"]].itertuples(index=False)}),
    }))


# --- helpers -------------------------------------------------------------------------------------------

def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)

"""Real shift: test sets from elsewhere (another hospital, scanner or protocol) next to the synthetic
conditions, and whether the synthetic benchmark predicts them.

A shifted set has its own cases and references, so (issue #34):

- each model's score on it is compared **unpaired** with its score on the clean test set: the real-shift
  degradation is ``mean(clean) - mean(shifted)`` with Welch's t interval and test (two independent samples
  of cases);
- models are compared **paired within** the shifted set (same cases): rows of the comparisons table with
  scope ``shift`` (``robustness.compare_models``' statistics), in the report's one FDR family;
- **does the benchmark predict the shift?** For every synthetic condition and graded family, the agreement
  between the models' degradations under it and under the real shift: Kendall's tau of their order and,
  with many models, Pearson's correlation of the degradations, each with a percentile bootstrap interval
  that resamples the clean cases (shared by every model and condition, keeping their pairing) and the
  shifted cases independently. The condition that agrees best is the one to watch for that kind of data.

The shifted sets come from a JSON/YAML file (``eval --shift FILE``, ``read_shift_sets``)::

    {"siteB": {"reference": "labelsTs_B", "predictions": {"UNet": "out/UNet_B", "NoSkip": "out/NoSkip_B"}}}

``predictions`` are the folders ``nnunet-robust run`` (or ``nnUNetv2_predict``) wrote for the set's images;
only their clean condition is read. Relative paths are relative to the file.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.analysis import intervals, robustness
from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.robustness import family_area
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import read_json

SHIFT_SCOPE = "shift"
SUMMARY_COLUMNS = ["shift", "model", "n_clean", "n_shift", "clean_mean", "shift_mean", "shift_ci_low", "shift_ci_high",
                   "degradation", "degradation_ci_low", "degradation_ci_high", "p_value"]
AGREEMENT_COLUMNS = ["shift", "scope", "name", "n_models", "kendall_tau", "tau_ci_low", "tau_ci_high", "pearson",
                     "pearson_ci_low", "pearson_ci_high"]


@dataclass(frozen=True)
class ShiftSet:
    """One shifted test set: its references and each model's prediction folder for it."""

    name: str
    reference: Path
    predictions: dict[str, Path]


def read_shift_sets(path: Path, models: Sequence[str]) -> list[ShiftSet]:
    """The shifted sets of ``path`` (module docstring) for the evaluated ``models``; one-line errors naming it."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise UserInputError(f"{path}: cannot read the shift file ({type(e).__name__})") from None
    else:
        data = read_json(path, "shift file")
    if not isinstance(data, dict) or not data:
        raise UserInputError(f"{path}: expected {{NAME: {{\"reference\": FOLDER, \"predictions\": {{MODEL: FOLDER}}}}}}")
    sets = []
    for name, entry in data.items():
        if not isinstance(name, str) or not name or "/" in name or ":" in name:
            raise UserInputError(f"{path}: shift name {name!r} must be a plain name (no '/' or ':')")
        if not isinstance(entry, dict) or not isinstance(entry.get("reference"), str) \
                or not isinstance(entry.get("predictions"), dict):
            raise UserInputError(f"{path}: shift {name!r} needs \"reference\" (a folder) and \"predictions\" "
                                 "({MODEL: FOLDER})")
        predictions = entry["predictions"]
        missing = [m for m in models if m not in predictions]
        unknown = [m for m in predictions if m not in models]
        if missing or unknown:
            raise UserInputError(f"{path}: shift {name!r} must give a prediction folder for each evaluated model "
                                 f"({', '.join(models)}); " + (f"missing: {', '.join(missing)}" if missing else
                                                              f"not evaluated: {', '.join(map(str, unknown))}"))
        if not all(isinstance(folder, str) and folder for folder in predictions.values()):
            raise UserInputError(f"{path}: shift {name!r}: each prediction folder must be a path")
        reference = (path.parent / entry["reference"]).resolve()
        if not reference.is_dir():
            raise UserInputError(f"{path}: shift {name!r}: reference folder {reference} does not exist")
        sets.append(ShiftSet(name, reference, {m: (path.parent / f).resolve() for m, f in predictions.items()}))
    return sets


def shift_per_case(shift: ShiftSet, dataset, nsd_tolerance_mm: float, num_processes: int,
                   progress: bool, device: str | None = None) -> pd.DataFrame:
    """Per-case metrics of each model's clean predictions on the shifted set (condition ``shift:NAME``)."""
    from nnunet_robustness.metrics.inputs import collect_predictions
    from nnunet_robustness.metrics.per_case import per_case_table

    predictions, cases, references = collect_predictions(shift.predictions, shift.reference, dataset.file_ending)
    table = per_case_table(predictions, cases, references, dataset, nsd_tolerance_mm, num_processes, progress,
                           device)
    clean = table[table["condition"] == "clean"] if (table["condition"] == "clean").any() else table[
        table["condition"] == table["condition"].iloc[0]]
    return clean.assign(condition=f"{SHIFT_SCOPE}:{shift.name}")


def shift_summary(shift_scores: pd.DataFrame, clean_scores: pd.DataFrame, seed: int, n_bootstrap: int,
                  metric: str = "dice") -> pd.DataFrame:
    """Per shift x model: clean and shifted means, the shifted mean's interval, and the real-shift degradation
    ``clean - shifted`` with Welch's interval and p (unpaired: different cases). ``shift_scores``: shift, model,
    case, metric; ``clean_scores``: model, case, metric (foreground means)."""
    from scipy.stats import ttest_ind

    rows = []
    for (name, model), group in shift_scores.groupby(["shift", "model"], sort=False):
        shifted = group[metric].dropna().to_numpy(dtype=float)
        clean = clean_scores.loc[clean_scores["model"] == model, metric].dropna().to_numpy(dtype=float)
        low, high = intervals.mean_interval(shifted, np.random.default_rng(seed), n_bootstrap)
        degradation = float(clean.mean() - shifted.mean()) if len(clean) and len(shifted) else math.nan
        if len(clean) > 1 and len(shifted) > 1 and (clean.std() > 0 or shifted.std() > 0):
            with warnings.catch_warnings():  # scipy warns on nearly equal values; the interval is still right
                warnings.simplefilter("ignore", RuntimeWarning)
                test = ttest_ind(clean, shifted, equal_var=False)
            ci = test.confidence_interval(0.95)
            d_low, d_high, p_value = float(ci.low), float(ci.high), float(test.pvalue)
        else:
            d_low = d_high = degradation
            p_value = math.nan
        rows.append({"shift": name, "model": model, "n_clean": len(clean), "n_shift": len(shifted),
                     "clean_mean": float(clean.mean()) if len(clean) else math.nan, "shift_mean": float(shifted.mean()),
                     "shift_ci_low": low, "shift_ci_high": high, "degradation": degradation,
                     "degradation_ci_low": d_low, "degradation_ci_high": d_high, "p_value": p_value})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _synthetic_drops(degradation: pd.DataFrame, metric: str) -> dict[tuple[str, str], pd.DataFrame]:
    """(scope, name) -> case x model per-case drop: every condition, and every graded family's area."""
    rows = degradation[degradation["metric"] == metric]
    out = {}
    for condition, group in rows.groupby("condition", sort=False):
        out[("condition", condition)] = group.pivot_table(index="case", columns="model", values="degradation",
                                                           aggfunc="first")
    areas = family_area(rows)
    for family, group in areas.groupby("family", sort=False):
        out[("family", family)] = group.pivot_table(index="case", columns="model", values="area", aggfunc="first")
    return out


def _kendall(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between the rows of ``a`` and ``b`` (replicates x models), vectorised."""
    i, j = np.triu_indices(a.shape[1], 1)
    da, db = np.sign(a[:, i] - a[:, j]), np.sign(b[:, i] - b[:, j])
    concordance = (da * db).sum(axis=1)
    ties = np.sqrt(np.abs(da).sum(axis=1) * np.abs(db).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ties > 0, concordance / ties, np.nan)


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def benchmark_agreement(shift_scores: pd.DataFrame, clean_scores: pd.DataFrame, degradation: pd.DataFrame,
                        models: Sequence[str], seed: int, n_bootstrap: int, metric: str = "dice") -> pd.DataFrame:
    """Per shift x synthetic condition/family: how well the models' degradations under the synthetic one
    agree with theirs under the real shift (module docstring). Needs two or more models."""
    models = list(models)
    if len(models) < 2 or not len(degradation):
        return pd.DataFrame(columns=AGREEMENT_COLUMNS)
    clean = clean_scores.pivot_table(index="case", columns="model", values=metric, aggfunc="first")[models].dropna()
    synthetic = {key: table.reindex(index=clean.index, columns=models) for key, table in
                 _synthetic_drops(degradation[degradation["model"].isin(models)], metric).items()}
    synthetic = {key: table for key, table in synthetic.items() if not table.isna().any().any()}
    rows = []
    for name, group in shift_scores.groupby("shift", sort=False):
        shifted = group.pivot_table(index="case", columns="model", values=metric, aggfunc="first")[models].dropna()
        rng = np.random.default_rng([seed, len(name)])
        clean_idx = rng.integers(0, len(clean), size=(n_bootstrap, len(clean)))
        shift_idx = rng.integers(0, len(shifted), size=(n_bootstrap, len(shifted)))
        c, s = clean.to_numpy(dtype=float), shifted.to_numpy(dtype=float)
        real = (c.mean(axis=0) - s.mean(axis=0))[None]
        real_boot = c[clean_idx].mean(axis=1) - s[shift_idx].mean(axis=1)  # replicate x model
        for (scope, synthetic_name), table in synthetic.items():
            values = table.to_numpy(dtype=float)
            observed = values.mean(axis=0)[None]
            boot = values[clean_idx].mean(axis=1)
            tau, tau_boot = _kendall(observed, real)[0], _kendall(boot, real_boot)
            r, r_boot = _pearson(observed, real)[0], _pearson(boot, real_boot)
            rows.append({"shift": name, "scope": scope, "name": synthetic_name, "n_models": len(models),
                         "kendall_tau": float(tau), "tau_ci_low": float(np.nanquantile(tau_boot, 0.025)),
                         "tau_ci_high": float(np.nanquantile(tau_boot, 0.975)),
                         "pearson": float(r) if len(models) > 2 else math.nan,
                         "pearson_ci_low": float(np.nanquantile(r_boot, 0.025)) if len(models) > 2 else math.nan,
                         "pearson_ci_high": float(np.nanquantile(r_boot, 0.975)) if len(models) > 2 else math.nan})
    frame = pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
    return frame.sort_values(["shift", "kendall_tau", "pearson"], ascending=[True, False, False], kind="stable",
                             na_position="last").reset_index(drop=True)


def real_shift_tables(shift_file: Path, runs: Mapping[str, Sequence[str]], judged_runs: Mapping[str, Sequence[str]],
                      dataset, with_mean: pd.DataFrame, clean: str | None, degradation_rows: pd.DataFrame,
                      nsd_tolerance_mm: float, num_processes: int, progress: bool, seed: int, n_bootstrap: int,
                      device: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``eval --shift``: the real-shift summary, the benchmark agreement and the paired model comparisons
    within each shifted set (rows of the comparisons table)."""
    if clean is None:
        raise UserInputError(f"{shift_file}: a real shift is compared with the clean test set; these predictions "
                             "have no clean condition")
    sets = read_shift_sets(shift_file, as_mapping(runs))
    shifted = pd.concat([shift_per_case(s, dataset, nsd_tolerance_mm, num_processes, progress, device)
                         for s in sets], ignore_index=True)
    shifted = split_shift(stats.add_foreground_mean(shifted)[lambda t: t["label"] == stats.FOREGROUND_MEAN])
    clean_scores = with_mean[(with_mean["label"] == stats.FOREGROUND_MEAN) & (with_mean["condition"] == clean)]
    judged = list(judged_runs)
    summary = shift_summary(shifted, clean_scores, seed, n_bootstrap)
    agreement = benchmark_agreement(shifted[shifted["model"].isin(judged)], clean_scores, degradation_rows, judged,
                                    seed, n_bootstrap)
    rows = [{"scope": SHIFT_SCOPE, "name": name, "family": None, "axis": robustness.SCORE,
             "label": stats.FOREGROUND_MEAN, "metric": "dice", **row}
            for name, group in shifted.groupby("shift", sort=False)
            for row in robustness.compare_pairs(group, "dice", dict(judged_runs), seed, n_bootstrap)]
    return summary, agreement, pd.DataFrame(rows, columns=robustness.COMPARISON_COLUMNS)


def shift_sentences(summary: pd.DataFrame, agreement: pd.DataFrame) -> list[str]:
    """Per shift: each model's real-shift degradation, and the synthetic condition that predicts it best."""
    sentences = []
    for name, group in summary.groupby("shift", sort=False):
        listed = "; ".join(f"{r['model']} {r['clean_mean']:.3f} -> {r['shift_mean']:.3f} (drop {r['degradation']:+.3f}, "
                           f"95% Welch CI [{r['degradation_ci_low']:+.3f}, {r['degradation_ci_high']:+.3f}])"
                           for _, r in group.iterrows())
        sentences.append(f"Real shift {name}: Dice on the clean test set -> on {name}: {listed}.")
        found = agreement[(agreement["shift"] == name) & agreement["kendall_tau"].notna()]
        if len(found):
            best = found.iloc[0]
            correlation = (f", Pearson r of the drops {best['pearson']:.2f} [{best['pearson_ci_low']:.2f}, "
                           f"{best['pearson_ci_high']:.2f}]" if math.isfinite(best["pearson"]) else "")
            sentences.append(f"{best['name']} ranks the models like {name} does (Kendall tau {best['kendall_tau']:.2f}, "
                             f"95% bootstrap interval [{best['tau_ci_low']:.2f}, {best['tau_ci_high']:.2f}]"
                             f"{correlation}; {int(best['n_models'])} models"
                             + ("; with two models tau is only +/-1: the order of two" if best["n_models"] == 2 else "")
                             + ").")
    return sentences


def foreground(table: pd.DataFrame, label: str, metric: str = "dice") -> pd.DataFrame:
    """model, case, metric of one label (the per-case foreground mean) from a per-case table."""
    return table[table["label"] == label][["model", "case", metric]]


def split_shift(frame: pd.DataFrame) -> pd.DataFrame:
    """A shift per-case frame with its ``shift`` column (condition ``shift:NAME`` -> NAME)."""
    return frame.assign(shift=frame["condition"].str.slice(len(SHIFT_SCOPE) + 1))


def as_mapping(models: Mapping[str, Sequence[str]]) -> list[str]:
    """The models a shift can be read for: one run each (several runs per model are not supported here yet)."""
    several = [name for name, runs in models.items() if len(runs) > 1]
    if several:
        raise UserInputError(f"--shift reads one prediction folder per model; {', '.join(several)} has several runs")
    return list(models)

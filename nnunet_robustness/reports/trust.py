"""Self-contained HTML report of ``rate``: calibrator summary, coverage per condition (with the
exchangeability caveat), per-case bound vs actual Dice, reliability diagrams, safe-mask FNR and size
cost, flagged cases. Table and plot helpers are the evaluator's, so both reports look alike."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnunet_robustness.io import atomic_write_text
from nnunet_robustness.reports.html import esc, html_page, note, png, section, table
from nnunet_robustness.trust.conformal import NO_STATEMENT
from nnunet_robustness.trust.uncertainty import RELIABILITY_BINS

if TYPE_CHECKING:
    from nnunet_robustness.trust.calibrator import RatingResult

EXCHANGEABILITY_NOTE = (
    "The bound 'Dice >= b with probability >= 1 - alpha' is guaranteed only marginally (on average over "
    "calibration sets and new cases) and only for cases exchangeable with the calibration cases: same "
    "population, scanner and protocol as the calibration condition. Under corruptions or any other "
    "distribution shift there is no guarantee; the coverage shown for those conditions is a measurement "
    "on these cases (with an exact 95 % binomial interval), not a promise.")


def write_report(result: "RatingResult", path: str | os.PathLike) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    calibrator = result.calibrator
    sections = [
        section("Calibrator", _calibrator_table(result)),
        section("Coverage of the Dice lower bound per condition", _coverage(result)),
        section("Lower bound vs actual Dice", _scatter(result)),
        section("Reliability diagrams", _reliability(result)),
        section("Safe masks (false-negative-rate control)", _risk(result)),
        section("Flagged cases (lowest rating band: human review)", _flagged(result)),
    ]
    title = f"nnunet-robust trust ratings (alpha = {calibrator.alpha:g})"
    document = html_page(title, f'<p class="warning">{esc(EXCHANGEABILITY_NOTE)}</p>' + "".join(sections))
    path = Path(path)
    atomic_write_text(path, document)
    return path


def _calibrator_table(result: "RatingResult") -> str:
    calibrator = result.calibrator
    settings = calibrator.settings
    rows = [
        ("calibration condition", settings.get("condition")),
        ("calibration cases (fit / conformal)",
         f"{len(settings.get('cases', {}).get('fit', []))} / {len(settings.get('cases', {}).get('conformal', []))}"),
        ("fold prediction folders", calibrator.n_members),
        ("temperature", "not fitted" if calibrator.temperature is None else f"{calibrator.temperature:.3g}"),
        ("features", ", ".join(calibrator.feature_names)),
        ("rating bands (minimum lower bound)", ", ".join(f"{n} >= {v:g}" for n, v in result.settings["bands"])),
    ]
    label_rows = [[name, label.dice_bound.n_conformal,
                   label.dice_bound.correction if label.dice_bound.informative else None,
                   label.calibration_coverage, label.risk_control.threshold, label.risk_control.n,
                   "yes" if label.risk_control.feasible else "no (too few cases)", label.reliability.ece,
                   label.reliability_uncalibrated.ece]
                  for name, label in calibrator.labels.items()]
    return (table(["", ""], rows, text_columns=(0, 1))
            + table(["label", "conformal cases", "conformal quantile Q", "calibration coverage (in-sample)",
                      "FNR lambda", "CRC cases", "FNR target reachable", "ECE", "ECE before temperature"],
                     label_rows, text_columns=(0, 6))
            + note("A conformal quantile of n/a means the conformal part is smaller than (1 - alpha) / alpha "
                    f"cases: the bound is 0 for every case ({NO_STATEMENT})."))


def _coverage(result: "RatingResult") -> str:
    coverage = result.coverage
    if not len(coverage):
        return note("No reference labels given to rate: coverage cannot be measured.")
    calibration_condition = result.settings.get("calibration_condition")
    rows = [[r["condition"] + (" (calibration condition)" if r["condition"] == calibration_condition else ""),
             r["label"], r["n"], r["coverage"], f"[{r['coverage_ci_low']:.3f}, {r['coverage_ci_high']:.3f}]",
             r["nominal"], "below nominal" if r["coverage_ci_high"] < r["nominal"] else "",
             r["mean_lower_bound"], r["mean_dice"], r["flagged"]]
            for _, r in coverage.iterrows()]
    return (note("Coverage = share of cases with actual Dice >= lower bound. Only on the calibration "
                  "condition, with new cases from the calibration population, is coverage >= 1 - alpha "
                  "guaranteed (on average); other conditions show how it breaks under shift.")
            + table(["condition", "label", "cases", "empirical coverage", "95% CI", "nominal 1 - alpha",
                      "", "mean lower bound", "mean Dice", "flagged"], rows, text_columns=(0, 1, 6)))


def _scatter(result: "RatingResult") -> str:
    ratings = result.ratings
    if "dice" not in ratings:
        return note("No reference labels given to rate: actual Dice unknown.")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(ratings["label"]))
    figure, axes = plt.subplots(1, len(labels), figsize=(4.6 * len(labels), 4.4), squeeze=False)
    for axis, label in zip(axes[0], labels):
        for condition, group in ratings[ratings["label"] == label].groupby("condition", sort=False):
            axis.scatter(group["lower_bound"], group["dice"], s=16, alpha=0.7, label=condition)
        axis.set_xlim(-0.02, 1.02)
        axis.set_ylim(-0.02, 1.02)
        _diagonal_panel(axis, "lower bound b", "actual Dice", label, linestyle="-")
    figure.tight_layout()
    image = png(figure)
    plt.close(figure)
    return note("One point per case and condition; points below the diagonal are cases where the bound "
                 "failed.") + image


def _reliability(result: "RatingResult") -> str:
    import matplotlib.pyplot as plt

    calibrator = result.calibrator
    labels = list(calibrator.labels)
    figure, axes = plt.subplots(1, len(labels), figsize=(4.6 * len(labels), 4.4), squeeze=False)
    rows = []
    for axis, label in zip(axes[0], labels):
        curves = [("calibration set", calibrator.labels[label].reliability)]
        curves += [(condition, per_label[label]) for condition, per_label in result.reliability.items()
                   if label in per_label]
        for name, reliability in curves:
            confidence, frequency, _ = reliability.curve()
            if len(confidence):
                axis.plot(confidence, frequency, marker="o", markersize=3, label=name)
            rows.append([label, name, int(reliability.count.sum()), reliability.ece])
        _diagonal_panel(axis, "structure probability (bin mean)", "fraction in the reference", label,
                        linestyle="--")
    figure.tight_layout()
    image = png(figure)
    plt.close(figure)
    temperature = ("" if calibrator.temperature is None else
                   f" Probabilities are temperature-scaled (T = {calibrator.temperature:.3g}).")
    return (note("Voxels near the structures (predicted or reference foreground, dilated by the band width), "
                  f"{RELIABILITY_BINS} equal-width bins, one-vs-rest per label; ECE as Guo et al. 2017." + temperature)
            + image + table(["label", "data", "voxels", "ECE"], rows, text_columns=(0, 1)))


def _risk(result: "RatingResult") -> str:
    ratings = result.ratings
    target = result.calibrator.fnr_target
    columns = ["safe_mask_fnr"] if "safe_mask_fnr" in ratings else []
    summary = ratings.groupby(["condition", "label"], sort=False).agg(
        cases=("case", "size"), **{"lambda": ("safe_mask_lambda", "first")},
        mean_size_cost=("size_cost", "mean"), **({"mean_fnr": ("safe_mask_fnr", "mean")} if columns else {})
    ).reset_index()
    rows = [[r["condition"], r["label"], r["cases"], r["lambda"], r.get("mean_fnr"), target,
             r["mean_size_cost"]] for _, r in summary.iterrows()]
    return (note("Safe mask = prediction plus every voxel whose structure probability is >= lambda. Conformal "
                  f"risk control guarantees an expected FNR <= {target:g} for exchangeable cases only; size cost "
                  "= safe-mask voxels / predicted voxels. Mean FNR needs references.")
            + table(["condition", "label", "cases", "lambda", "mean FNR", "target", "mean size cost"], rows,
                     text_columns=(0, 1)))


def _flagged(result: "RatingResult") -> str:
    ratings = result.ratings
    flagged = ratings[ratings["flagged"]].sort_values(["lower_bound", "condition", "case"], kind="stable")
    if not len(flagged):
        return note("No case is in the lowest band.")
    rows = [[r["condition"], r["case"], r["label"], r["lower_bound"], r["predicted_dice"], r["rating"],
             r.get("dice", np.nan) if "dice" in ratings else None, r["expected_dice"], r["entropy_boundary"]]
            for _, r in flagged.iterrows()]
    return table(["condition", "case", "label", "lower bound", "predicted Dice", "rating", "actual Dice",
                   "expected Dice", "boundary entropy"], rows, text_columns=(0, 1, 2, 5))


def _diagonal_panel(axis, xlabel: str, ylabel: str, title: str, linestyle: str) -> None:
    """One label's panel of a predicted-vs-observed plot: the identity line, labels, grid and legend."""
    axis.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle=linestyle)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    # outside the axes: with many conditions an inner legend covers the points
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                ncol=1 + len(axis.get_legend_handles_labels()[1]) // 16)

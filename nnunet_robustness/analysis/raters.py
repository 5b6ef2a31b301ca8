"""Several references per case: consensus, inter-rater agreement, and the model against both.

For a case annotated by raters ``R1..Rn`` (n >= 2) and a model prediction ``P``, per structure
(label or nnU-Net region):

- **inter-rater agreement**: Dice and NSD of every rater pair (``pairwise_agreement``); their mean
  gives the case's **disagreement** ``1 - mean pairwise Dice``, the difficulty measure cases are
  ranked by (``rank_by_disagreement``; rank 1 = most disagreement);
- **consensus**: STAPLE (Warfield et al. 2004, IEEE TMI 23(7):903-921; SimpleITK's ``STAPLE`` for one
  foreground label, ``MultiLabelSTAPLE`` for several) or majority vote (``consensus``);
- **the model** against the consensus and against each rater;
- **within the inter-rater range**: the model's mean Dice against the raters compared with the
  range [min, max] of the pairwise inter-rater Dice: ``below`` / ``within`` / ``above``.
  ``model_within_inter_rater_range`` is True unless ``below``: the model disagrees with the raters
  no more than the two most different raters disagree with each other (``above``: it agrees with
  them better than any two of them agree, as a consensus-like segmentation does).

Verdicts and statistics should use the consensus as *the* reference (``write_consensus_folder``
writes it as a label folder that the standard evaluation can take as its reference); the per-rater
columns are the extra information. Empty masks follow ``compare_masks``' policy (both empty: Dice 1).
"""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import SimpleITK as sitk

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_path
from nnunet_robustness.metrics.masks import compare_masks

ConsensusMethod = Literal["staple", "majority"]
CONSENSUS_METHODS: tuple[str, ...] = ("staple", "majority")
RATER_METRICS: tuple[str, ...] = ("dice", "nsd")
STAPLE_THRESHOLD = 0.5  # a voxel is foreground when STAPLE's posterior probability is at least this
Structure = int | tuple[int, ...]  # a label value, or an nnU-Net region (a tuple of label values)


# --- consensus -----------------------------------------------------------------------------------------

def _check_raters(raters: Sequence[np.ndarray]) -> list[np.ndarray]:
    raters = [np.asarray(r) for r in raters]
    if len(raters) < 2:
        raise ValueError(f"need at least 2 raters, got {len(raters)}")
    shapes = {r.shape for r in raters}
    if len(shapes) != 1:
        raise ValueError(f"raters' label maps differ in shape: {sorted(shapes)}")
    return raters


def majority_vote(raters: Sequence[np.ndarray]) -> np.ndarray:
    """Per voxel the label most raters gave; a tie goes to the lowest tied label (background first), so
    with two labels the foreground needs more than half of the votes."""
    raters = _check_raters(raters)
    values = np.unique(np.concatenate([np.unique(r) for r in raters]))
    votes = np.stack([sum((r == v).astype(np.int32) for r in raters) for v in values])
    return values[np.argmax(votes, axis=0)].astype(raters[0].dtype)  # argmax takes the first maximum


def staple(raters: Sequence[np.ndarray], threshold: float = STAPLE_THRESHOLD) -> np.ndarray:
    """STAPLE consensus label map.

    One foreground label: SimpleITK's binary ``STAPLE`` posterior, foreground where it is at least
    ``threshold``. Several: ``MultiLabelSTAPLE``, with the voxels it leaves undecided (ties) taken
    from the majority vote. Where STAPLE is degenerate (no rater marks any foreground, or every voxel
    is foreground: its posterior is NaN) the majority vote is used.
    """
    raters = _check_raters(raters)
    values = np.unique(np.concatenate([np.unique(r) for r in raters]))
    if np.any(values < 0):
        raise ValueError(f"STAPLE needs non-negative labels, got {values[values < 0].tolist()}")
    foreground = values[values != 0]
    if foreground.size == 0:
        return np.zeros_like(raters[0])
    fallback = majority_vote(raters)
    if foreground.size == 1 and 0 in values:
        images = [sitk.GetImageFromArray((r == foreground[0]).astype(np.uint8)) for r in raters]
        probability = sitk.GetArrayFromImage(sitk.STAPLE(images, 1.0))
        if np.isnan(probability).any():
            return fallback
        return np.where(probability >= threshold, foreground[0], 0).astype(raters[0].dtype)
    undecided = int(values.max()) + 1
    staple_filter = sitk.MultiLabelSTAPLEImageFilter()
    staple_filter.SetLabelForUndecidedPixels(undecided)
    images = [sitk.GetImageFromArray(r.astype(np.uint16)) for r in raters]
    result = sitk.GetArrayFromImage(staple_filter.Execute(images)).astype(np.int64)
    return np.where(result == undecided, fallback, result).astype(raters[0].dtype)


def consensus(raters: Sequence[np.ndarray], method: ConsensusMethod = "staple") -> np.ndarray:
    if method == "staple":
        return staple(raters)
    if method == "majority":
        return majority_vote(raters)
    raise ValueError(f"consensus method must be one of {', '.join(CONSENSUS_METHODS)}, got {method!r}")


# --- agreement -----------------------------------------------------------------------------------------

def structure_mask(label_map: np.ndarray, structure: Structure) -> np.ndarray:
    return np.isin(label_map, structure) if isinstance(structure, tuple) else label_map == structure


def pairwise_agreement(rater_masks: Sequence[np.ndarray], spacing: Sequence[float], nsd_tolerance_mm: float = 1.0,
                       ignore: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Dice and NSD of every rater pair (raters numbered from 1) for one structure's masks."""
    return [{"rater_a": a + 1, "rater_b": b + 1,
             **{m: compare_masks(rater_masks[a], rater_masks[b], spacing, nsd_tolerance_mm, ignore)[m]
                for m in RATER_METRICS}}
            for a, b in itertools.combinations(range(len(rater_masks)), 2)]


def inter_rater_agreement(raters: Sequence[np.ndarray], spacing: Sequence[float], structures: Mapping[str, Structure],
                          nsd_tolerance_mm: float = 1.0, ignore: np.ndarray | None = None) -> dict[str, list[dict]]:
    """:func:`pairwise_agreement` for every structure of one case: structure name -> rater pairs.
    It depends on the raters only, so compute it once per case and pass it to
    :func:`compare_with_raters` for every model and condition."""
    raters = _check_raters(raters)
    return {name: pairwise_agreement([structure_mask(r, structure) for r in raters], spacing, nsd_tolerance_mm, ignore)
            for name, structure in structures.items()}


def position_in_range(value: float, low: float, high: float) -> str:
    """``below``, ``within`` or ``above`` the closed interval [low, high] (higher is better)."""
    if value < low:
        return "below"
    return "above" if value > high else "within"


def compare_with_raters(prediction: np.ndarray, raters: Sequence[np.ndarray], spacing: Sequence[float],
                        structures: Mapping[str, Structure], consensus_method: ConsensusMethod = "staple",
                        nsd_tolerance_mm: float = 1.0, consensus_map: np.ndarray | None = None,
                        ignore: np.ndarray | None = None,
                        inter_rater: Mapping[str, list[dict]] | None = None) -> list[dict[str, Any]]:
    """One row per structure of one case (the columns are listed in :data:`RATER_COLUMNS` and
    ``model_vs_rater{k}_{dice,nsd}`` for k = 1..n).

    ``prediction`` and ``raters`` are label maps of one shape; ``structures`` maps a name to a label
    value or a region (tuple of values); ``consensus_map``: a precomputed consensus (e.g. the file
    written by :func:`write_consensus_folder`), else computed with ``consensus_method``;
    ``ignore``: voxels excluded from every metric; ``inter_rater``: the case's
    :func:`inter_rater_agreement` (computed here when not given; it must be for the same raters,
    spacing, tolerance and ignore mask).
    """
    raters = _check_raters(raters)
    prediction = np.asarray(prediction)
    if prediction.shape != raters[0].shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from the raters' {raters[0].shape}")
    if consensus_map is None:
        consensus_map = consensus(raters, consensus_method)
    rows = []
    for name, structure in structures.items():
        masks = [structure_mask(r, structure) for r in raters]
        predicted = structure_mask(prediction, structure)
        row: dict[str, Any] = {"label": name, "label_value": str(structure), "n_raters": len(raters),
                               "consensus_method": consensus_method}
        pairs = (inter_rater[name] if inter_rater is not None
                 else pairwise_agreement(masks, spacing, nsd_tolerance_mm, ignore))
        versus_consensus = compare_masks(structure_mask(consensus_map, structure), predicted, spacing,
                                         nsd_tolerance_mm, ignore)
        versus_raters = [compare_masks(mask, predicted, spacing, nsd_tolerance_mm, ignore) for mask in masks]
        for metric in RATER_METRICS:
            pair_values = [p[metric] for p in pairs]
            low, high = min(pair_values), max(pair_values)
            model_mean = float(np.mean([v[metric] for v in versus_raters]))
            row.update({
                f"inter_rater_{metric}_mean": float(np.mean(pair_values)),
                f"inter_rater_{metric}_min": low,
                f"inter_rater_{metric}_max": high,
                f"model_vs_consensus_{metric}": versus_consensus[metric],
                f"model_vs_raters_{metric}_mean": model_mean,
                f"model_{metric}_position": position_in_range(model_mean, low, high),
                **{f"model_vs_rater{k}_{metric}": v[metric] for k, v in enumerate(versus_raters, start=1)},
            })
        row["disagreement"] = 1.0 - row["inter_rater_dice_mean"]
        row["model_within_inter_rater_range"] = row["model_dice_position"] != "below"
        rows.append(row)
    return rows


RATER_COLUMNS: tuple[str, ...] = (
    "label", "label_value", "n_raters", "consensus_method", "disagreement",
    *(f"{prefix}_{m}{suffix}" for m in RATER_METRICS for prefix, suffix in (
        ("inter_rater", "_mean"), ("inter_rater", "_min"), ("inter_rater", "_max"))),
    *(f"model_vs_consensus_{m}" for m in RATER_METRICS),
    *(f"model_vs_raters_{m}_mean" for m in RATER_METRICS),
    *(f"model_{m}_position" for m in RATER_METRICS),
    "model_within_inter_rater_range",
)


def rank_by_disagreement(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``disagreement_rank`` per structure: 1 = the case the raters disagree on most.

    ``table`` has one row per (model, condition, case, label) or any subset of those: the rank is
    computed over distinct cases (disagreement is a property of the case, not of the model), ties
    share the best rank. Returns a new table sorted by label, rank and case.
    """
    missing = {"case", "label", "disagreement"} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the columns {sorted(missing)}")
    cases = table.drop_duplicates(["case", "label"])[["case", "label", "disagreement"]].copy()
    cases["disagreement_rank"] = (cases.groupby("label")["disagreement"]
                                  .rank(method="min", ascending=False).astype(int))
    ranked = table.drop(columns=["disagreement_rank"], errors="ignore").merge(
        cases[["case", "label", "disagreement_rank"]], on=["case", "label"], how="left")
    return ranked.sort_values(["label", "disagreement_rank", "case"], kind="stable").reset_index(drop=True)


# --- folders -------------------------------------------------------------------------------------------

def match_rater_folders(folders: Sequence[str | Path], file_ending: str) -> dict[str, list[Path]]:
    """Case name -> one file per rater folder (in the folders' order). Every folder must hold the same
    case names; a missing or extra case raises UserInputError naming the folder and the case."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise UserInputError(f"inter-rater evaluation needs at least 2 reference folders, got {len(folders)}")
    if len(set(f.resolve() for f in folders)) != len(folders):
        raise UserInputError(f"a reference folder is given twice: {', '.join(map(str, folders))}")
    cases_per_folder = []
    for folder in folders:
        if not folder.is_dir():
            raise UserInputError(f"reference folder {folder} does not exist")
        files = {p.name[: -len(file_ending)]: p for p in folder.iterdir()
                 if p.is_file() and p.name.endswith(file_ending) and not p.name.startswith(".")}
        if not files:
            raise UserInputError(f"reference folder {folder} has no {file_ending} files")
        cases_per_folder.append(files)
    first = cases_per_folder[0]
    for folder, files in zip(folders[1:], cases_per_folder[1:]):
        for case in sorted(set(first) ^ set(files)):
            lacking = folder if case in first else folders[0]
            raise UserInputError(f"reference folders disagree on the cases: {lacking} has no {case}{file_ending}")
    return {case: [files[case] for files in cases_per_folder] for case in sorted(first)}


def read_rater_case(files: Sequence[Path]) -> tuple[list[np.ndarray], sitk.Image]:
    """The raters' label maps of one case (arrays in SimpleITK's axis order) and the first rater's
    image, whose geometry every other rater must share."""
    images = [sitk.ReadImage(str(f)) for f in files]
    first = images[0]
    for f, image in zip(files[1:], images[1:]):
        if image.GetSize() != first.GetSize():
            raise UserInputError(f"{f}: size {image.GetSize()} differs from {files[0]} {first.GetSize()}")
        if not np.allclose(image.GetSpacing(), first.GetSpacing(), rtol=1e-4, atol=1e-6):
            raise UserInputError(f"{f}: spacing {image.GetSpacing()} differs from {files[0]} {first.GetSpacing()}")
    return [sitk.GetArrayFromImage(image) for image in images], first


def write_consensus_folder(folders: Sequence[str | Path], output_folder: str | Path,
                           method: ConsensusMethod = "staple", file_ending: str = ".nii.gz") -> Path:
    """Write the consensus label map of every case into ``output_folder`` (same names and geometry as
    the first rater's files) and return it; existing files are overwritten."""
    if method not in CONSENSUS_METHODS:
        raise UserInputError(f"consensus method {method!r}: choose one of {', '.join(CONSENSUS_METHODS)}")
    output_folder = Path(output_folder)
    for case, files in match_rater_folders(folders, file_ending).items():
        raters, first = read_rater_case(files)
        result = sitk.GetImageFromArray(consensus(raters, method))
        result.CopyInformation(first)
        with atomic_path(output_folder / f"{case}{file_ending}") as tmp:
            sitk.WriteImage(result, str(tmp), True)
    return output_folder


def summarize_raters(table: pd.DataFrame) -> dict[str, Any]:
    """Per label: mean disagreement, share of cases where the model is within the inter-rater range,
    and the Spearman correlation of model-vs-consensus Dice with disagreement (NaN below 3 cases)."""
    summary = {}
    for label, group in table.groupby("label", sort=False):
        cases = group.drop_duplicates("case") if "case" in group else group
        with warnings.catch_warnings():  # constant columns (raters that always agree) give NaN, by definition
            warnings.simplefilter("ignore")
            correlation = (group["model_vs_consensus_dice"].corr(group["disagreement"], method="spearman")
                           if len(group) >= 3 else math.nan)
        summary[label] = {
            "n_cases": int(len(cases)),
            "mean_disagreement": float(cases["disagreement"].mean()),
            "share_within_inter_rater_range": float(group["model_within_inter_rater_range"].mean()),
            "spearman_dice_vs_disagreement": float(correlation),
        }
    return summary


def plot_performance_vs_disagreement(table: pd.DataFrame, path: str | Path, metric: str = "dice",
                                     label: str | None = None) -> Path:
    """PNG file of :func:`performance_vs_disagreement_figure`."""
    import matplotlib.pyplot as plt

    figure = performance_vs_disagreement_figure(table, metric, label)
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)
    return path


def performance_vs_disagreement_figure(table: pd.DataFrame, metric: str = "dice", label: str | None = None):
    """The model's ``metric`` against the consensus (y) over the case's rater disagreement (x), one panel
    per model (column ``model`` if present), one colour per condition (column ``condition`` if
    present), with each condition's least-squares line. ``label``: the structure to plot (default: the
    first in the table). Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = table["label"].iloc[0] if label is None else label
    data = table[table["label"] == label]
    models = list(dict.fromkeys(data["model"])) if "model" in data else [None]
    conditions = list(dict.fromkeys(data["condition"])) if "condition" in data else [None]
    y_column = f"model_vs_consensus_{metric}"
    figure, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.4), squeeze=False, sharey=True)
    for axis, model in zip(axes[0], models):
        for index, condition in enumerate(conditions):
            rows = data
            if model is not None:
                rows = rows[rows["model"] == model]
            if condition is not None:
                rows = rows[rows["condition"] == condition]
            if rows.empty:
                continue
            x, y = rows["disagreement"].to_numpy(float), rows[y_column].to_numpy(float)
            colour = f"C{index % 10}"
            axis.scatter(x, y, s=14, color=colour, alpha=0.7, label=condition or "model")
            if len(x) >= 2 and np.ptp(x) > 0:
                slope, intercept = np.polyfit(x, y, 1)
                grid = np.linspace(x.min(), x.max(), 2)
                axis.plot(grid, slope * grid + intercept, color=colour, linewidth=1)
        axis.set_xlabel("rater disagreement (1 - mean pairwise Dice)")
        axis.set_title(f"{model or 'model'}: {label}", fontsize=9)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} vs consensus")
    axes[0][-1].legend(fontsize="small")
    figure.tight_layout()
    return figure


def rater_table(per_case: pd.DataFrame, rater_folders: Sequence[str | Path], consensus_folder: str | Path,
                structures: Mapping[str, Structure], file_ending: str, nsd_tolerance_mm: float = 1.0,
                consensus_method: ConsensusMethod = "staple") -> pd.DataFrame:
    """Every prediction of an evaluation (``per_case``'s model, condition, case, prediction_file) against
    each rater and the consensus, one row per model x condition x case x structure, ranked by the case's
    rater disagreement (``disagreement_rank`` 1 = most). Each case's raters are read, and their pairwise
    agreement computed, once for all its predictions."""
    files = match_rater_folders(rater_folders, file_ending)
    predictions = per_case.drop_duplicates(["model", "condition", "case"])[
        ["model", "condition", "case", "prediction_file"]]
    rows = []
    for case, group in predictions.groupby("case", sort=True):
        raters, first = read_rater_case(files[case])
        spacing = tuple(reversed(first.GetSpacing()))  # SimpleITK's array order
        consensus_map = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(consensus_folder) / f"{case}{file_ending}")))
        pairs = inter_rater_agreement(raters, spacing, structures, nsd_tolerance_mm)
        for _, prediction in group.iterrows():
            array = sitk.GetArrayFromImage(sitk.ReadImage(str(prediction["prediction_file"])))
            for row in compare_with_raters(array, raters, spacing, structures, consensus_method, nsd_tolerance_mm,
                                           consensus_map=consensus_map, inter_rater=pairs):
                rows.append({"model": prediction["model"], "condition": prediction["condition"], "case": case,
                             **row})
    return rank_by_disagreement(pd.DataFrame(rows))

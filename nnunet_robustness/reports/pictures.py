"""Pictures of cases for the evaluation report: the clean input and the input under the condition (the
views ``run`` wrote, ``records/item_view.py``), with the reference contour (green) and the prediction
contour (red) of the same slice. Items without a view (folders not made by ``run``, context crops)
are left out, and the report says how many."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnunet_robustness.conditions import CLEAN_NAME
from nnunet_robustness.records.item_view import ItemView
from nnunet_robustness.reports.html import esc, fmt, png

PICTURES_PER_MODEL = {"worst": 3, "median": 2}


def structure_values(key: Any) -> tuple[int, ...]:
    """The labels of a per-case row's ``label_value``: nnU-Net's key, ``"1"`` for a label or ``"(1, 2)"``
    for a region (region-based dataset.json), whose mask is every voxel holding any of its labels."""
    values = tuple(int(v) for v in re.findall(r"-?\d+", str(key)))
    if not values:
        raise ValueError(f"not a label or region: {key!r}")
    return values


def _labels(path: Any, values: tuple[int, ...]) -> np.ndarray | None:
    import SimpleITK as sitk

    if not isinstance(path, str) or not Path(path).is_file():
        return None
    return np.isin(sitk.GetArrayFromImage(sitk.ReadImage(path)), values)


def picked_rows(per_case: pd.DataFrame, models: list[str]) -> list[tuple[str, pd.Series]]:
    """Per model, its worst structures under a corruption (lowest Dice) and a few median ones."""
    rows = per_case[(per_case["condition"] != CLEAN_NAME) & per_case["dice"].notna()]
    picked = []
    for model in models:
        mine = rows[rows["model"] == model].sort_values("dice", kind="stable")
        if not len(mine):
            continue
        worst = mine.head(PICTURES_PER_MODEL["worst"])
        middle = len(mine) // 2
        median = mine.iloc[max(0, middle - 1): middle + PICTURES_PER_MODEL["median"] - 1]
        picked += [("worst", r) for _, r in worst.iterrows()]
        picked += [("median", r) for _, r in median.iterrows() if r.name not in worst.index]
    return picked


def case_picture(row: pd.Series) -> str | None:
    """HTML <img> of the clean and the corrupted input with contours, or None without views."""
    prediction = Path(row["prediction_file"])
    clean_folder = prediction.parent.parent / CLEAN_NAME
    view, clean_view = (ItemView.read_if_present(prediction.parent, row["case"]),
                        ItemView.read_if_present(clean_folder, row["case"]))
    values = structure_values(row["label_value"])
    reference, predicted = _labels(row["reference_file"], values), _labels(row["prediction_file"], values)
    if view is None or reference is None or predicted is None:
        return None
    import matplotlib.pyplot as plt

    panels = [(clean_view, "clean input"), (view, row["condition"])] if clean_view is not None else [
        (view, row["condition"])]
    figure, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.3), squeeze=False)
    for axis, (item, title) in zip(axes[0], panels):
        axis.imshow(item.image, cmap="gray", vmin=0, vmax=255)
        # the prediction shown is the one under the condition: on the clean panel, the reference only
        outlines = [(reference, "#00c000")] + ([] if item is clean_view else [(predicted, "#ff3030")])
        for mask, colour in outlines:
            plane = item.mask_slice(mask)
            if plane.shape == item.image.shape and plane.any():
                axis.contour(plane.astype(float), levels=[0.5], colors=colour, linewidths=1.0)
        axis.set_title(title, fontsize=7)
        axis.axis("off")
    figure.tight_layout(pad=0.2)
    image = png(figure)
    plt.close(figure)
    return image


def pictures_section(per_case: pd.DataFrame, models: list[str]) -> str:
    picked = picked_rows(per_case, models)
    cells, missing = [], 0
    for kind, row in picked:
        picture = case_picture(row)
        if picture is None:
            missing += 1
            continue
        caption = (f"{esc(kind)}: {esc(row['model'])} / {esc(row['condition'])} / {esc(row['case'])} / "
                   f"{esc(row['label'])}, Dice {esc(fmt(row['dice']))}")
        cells.append(f"<figure style='display:inline-block;margin:4px'>{picture}"
                     f"<figcaption class='note'>{caption}</figcaption></figure>")
    note = ("<p class='note'>Green: reference; red: the prediction under the condition; left: the clean input, "
            "right: the input the model got under the condition (the same slice; a volume shows the slice with "
            "the most reference foreground).")
    if missing:
        note += f" {missing} picked item(s) have no view (folders not made by nnunet-robust run, or context crops)."
    return note + "</p>" + "".join(cells)

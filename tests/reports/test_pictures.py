"""The report shows what the worst and median cases looked like, from the views run wrote."""

from __future__ import annotations

import shutil

import numpy as np
import SimpleITK as sitk

from nnunet_robustness.reports.pictures import PICTURES_PER_MODEL, picked_rows, pictures_section
from nnunet_robustness.runner.views import ItemView


def _add_views(folder):
    """A view per prediction, as run writes them (the prediction's own grid, 2D slice of a volume)."""
    for prediction in folder.rglob("*.nii.gz"):
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(prediction))).astype(np.float32)
        image = array[None] if array.ndim == 3 else array[None, None]
        ItemView.of(image, (0.0, 2.0), image.astype(np.uint8)).write(prediction.parent,
                                                                       prediction.name[: -len(".nii.gz")])


def test_worst_and_median_items_get_pictures_and_items_without_views_are_counted(study, study_result, tmp_path):
    result, _ = study_result
    per_case = result.per_case
    picked = picked_rows(per_case, result.models)
    for model in result.models:
        mine = [row for kind, row in picked if row["model"] == model]
        worst = [row["dice"] for kind, row in picked if kind == "worst" and row["model"] == model]
        assert len(worst) == PICTURES_PER_MODEL["worst"]
        others = per_case[(per_case["model"] == model) & (per_case["condition"] != "clean")]["dice"]
        assert max(worst) <= others.sort_values().iloc[len(worst) - 1] + 1e-12  # really the lowest
        assert all(row["condition"] != "clean" for row in mine)

    assert "<img" not in pictures_section(per_case, result.models)  # no views: no pictures, and it says so
    assert "have no view" in pictures_section(per_case, result.models)

    copies = {}
    for model in ("A", "B"):
        copies[model] = tmp_path / model
        shutil.copytree(study[model], copies[model])
        _add_views(copies[model])
    moved = per_case.assign(prediction_file=[
        str(p).replace(str(study[m]), str(copies[m])) for p, m in zip(per_case["prediction_file"], per_case["model"])])
    html = pictures_section(moved, result.models)
    assert html.count("<img") == len(picked) and "have no view" not in html

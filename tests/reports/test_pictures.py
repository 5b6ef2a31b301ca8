"""The report shows what the worst and median cases looked like, from the views run wrote."""

from __future__ import annotations

import shutil

from nnunet_robustness.reports.pictures import PICTURES_PER_MODEL, picked_rows, pictures_section
from tests.helpers.prediction_folders import add_views


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
        add_views(copies[model])
    moved = per_case.assign(prediction_file=[
        str(p).replace(str(study[m]), str(copies[m])) for p, m in zip(per_case["prediction_file"], per_case["model"])])
    html = pictures_section(moved, result.models)
    assert html.count("<img") == len(picked) and "have no view" not in html

"""Several references per case: consensus, inter-rater agreement, the model within the inter-rater range."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from nnunet_robustness.analysis.raters import (
    RATER_COLUMNS,
    compare_with_raters,
    consensus,
    inter_rater_agreement,
    majority_vote,
    match_rater_folders,
    pairwise_agreement,
    rank_by_disagreement,
    staple,
    summarize_raters,
    write_consensus_folder,
)
from nnunet_robustness.errors import UserInputError

SPACING = (1.0, 1.0)


def disk(shape=(48, 48), centre=(24, 24), radius=10.0, value=1) -> np.ndarray:
    rows, cols = np.indices(shape)
    return np.where((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2, value, 0).astype(np.uint8)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_staple_of_identical_raters_is_that_rater(n):
    rater = disk()
    assert np.array_equal(staple([rater] * n), rater)
    # several labels: MultiLabelSTAPLE
    multi = disk() + disk(centre=(8, 8), radius=5, value=2)
    assert set(np.unique(multi)) == {0, 1, 2}
    assert np.array_equal(staple([multi] * n), multi)
    assert np.array_equal(majority_vote([multi] * n), multi)


def test_staple_and_majority_on_disagreeing_raters():
    small, medium, large = disk(radius=8), disk(radius=10), disk(radius=12)
    # nested masks: the majority of three is the middle one; STAPLE lies between the smallest and largest
    assert np.array_equal(majority_vote([small, medium, large]), medium)
    result = staple([small, medium, large])
    assert np.all(result[small == 1] == 1) and np.all(result[large == 0] == 0)
    # two raters, majority needs more than half: the intersection
    assert np.array_equal(majority_vote([small, large]), small)
    # nobody marks anything: empty consensus (STAPLE alone would give NaN)
    empty = np.zeros((10, 10), np.uint8)
    assert np.array_equal(consensus([empty, empty], "staple"), empty)
    with pytest.raises(ValueError, match="at least 2 raters"):
        staple([small])
    with pytest.raises(ValueError, match="consensus method"):
        consensus([small, large], "mean")


def test_inter_rater_dice_of_a_rater_with_itself_is_one():
    rater = disk()
    pairs = pairwise_agreement([rater == 1, rater == 1, rater == 1], SPACING)
    assert [(p["rater_a"], p["rater_b"]) for p in pairs] == [(1, 2), (1, 3), (2, 3)]
    assert all(p["dice"] == 1.0 and p["nsd"] == 1.0 for p in pairs)
    other = pairwise_agreement([rater == 1, disk(radius=7) == 1], SPACING)[0]
    assert other["dice"] < 1.0 and math.isclose(other["dice"], 2 * 149 / (317 + 149), rel_tol=0.05)


def rows_for(prediction, raters, **kwargs):
    return compare_with_raters(prediction, raters, SPACING, {"lesion": 1}, **kwargs)[0]


def test_model_within_inter_rater_range_on_constructed_cases():
    raters = [disk(radius=8), disk(radius=10), disk(radius=12)]
    row = rows_for(disk(centre=(24, 27), radius=10), raters)  # the middle rater shifted by 3 px
    assert set(RATER_COLUMNS) <= set(row)
    assert row["n_raters"] == 3
    assert row["inter_rater_dice_min"] < row["model_vs_raters_dice_mean"] < row["inter_rater_dice_max"]
    assert row["model_dice_position"] == "within" and row["model_within_inter_rater_range"]

    # exactly the middle rater: perfect agreement with one rater lifts its mean above every rater pair
    same = rows_for(disk(radius=10), raters)
    assert same["model_vs_rater2_dice"] == 1.0 and same["model_vs_rater2_nsd"] == 1.0
    assert same["model_dice_position"] == "above" and same["model_within_inter_rater_range"]

    far = rows_for(disk(centre=(30, 30), radius=10), raters)  # shifted by 6 px diagonally: worse than any pair
    assert far["model_vs_raters_dice_mean"] < far["inter_rater_dice_min"]
    assert far["model_dice_position"] == "below" and not far["model_within_inter_rater_range"]

    # two raters that disagree a lot; a model equal to their consensus agrees with each better than they agree
    two = [disk(centre=(24, 20), radius=10), disk(centre=(24, 28), radius=10)]
    middle = rows_for(disk(centre=(24, 24), radius=10), two)
    assert middle["inter_rater_dice_min"] == middle["inter_rater_dice_max"]
    assert middle["model_dice_position"] == "above" and middle["model_within_inter_rater_range"]


def test_consensus_is_the_reference_of_the_consensus_columns():
    raters = [disk(radius=8), disk(radius=10), disk(radius=12)]
    row = rows_for(disk(radius=10), raters, consensus_method="majority")
    assert row["consensus_method"] == "majority" and row["model_vs_consensus_dice"] == 1.0
    identical = rows_for(disk(radius=9), [disk(radius=10)] * 3)
    assert identical["disagreement"] == 0.0
    assert identical["model_vs_consensus_dice"] == identical["model_vs_rater1_dice"] < 1.0
    # a precomputed consensus map is used as given
    given = rows_for(disk(radius=10), raters, consensus_map=disk(radius=12))
    assert given["model_vs_consensus_dice"] < 1.0


def test_precomputed_inter_rater_agreement_gives_the_same_rows():
    raters = [disk(radius=8), disk(radius=10), disk(radius=12)]
    structures = {"lesion": 1}
    pairs = inter_rater_agreement(raters, SPACING, structures)
    assert len(pairs["lesion"]) == 3
    prediction = disk(centre=(24, 27), radius=10)
    assert (compare_with_raters(prediction, raters, SPACING, structures, inter_rater=pairs)
            == compare_with_raters(prediction, raters, SPACING, structures))


def test_regions_and_multiple_labels():
    raters = [disk() + disk(centre=(8, 8), radius=4, value=2) for _ in range(2)]
    rows = compare_with_raters(raters[0], raters, SPACING, {"a": 1, "b": 2, "both": (1, 2)})
    assert [r["label"] for r in rows] == ["a", "b", "both"]
    assert all(r["inter_rater_dice_mean"] == 1.0 and r["model_vs_consensus_dice"] == 1.0 for r in rows)


def test_rank_by_disagreement_ranks_cases_not_rows():
    rows = []
    for case, radius in (("easy", 10), ("hard", 6), ("medium", 9)):
        raters = [disk(radius=10), disk(radius=radius)]
        for condition in ("clean", "noise"):
            rows.append({"case": case, "condition": condition, **rows_for(disk(radius=10), raters)})
    ranked = rank_by_disagreement(pd.DataFrame(rows))
    assert ranked.drop_duplicates("case")["case"].tolist() == ["hard", "medium", "easy"]
    assert ranked.groupby("case")["disagreement_rank"].first().to_dict() == {"hard": 1, "medium": 2, "easy": 3}
    summary = summarize_raters(ranked[ranked["condition"] == "clean"])["lesion"]
    assert summary["n_cases"] == 3 and summary["share_within_inter_rater_range"] == 1.0


def write(array: np.ndarray, path: Path, spacing=(0.8, 0.8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def test_rater_folders_and_consensus_folder(tmp_path):
    folders = [tmp_path / f"labelsTs_rater{k}" for k in (1, 2, 3)]
    for folder, radius in zip(folders, (8, 10, 12)):
        write(disk(radius=radius), folder / "case_a.nii.gz")
        write(disk(radius=radius - 2), folder / "case_b.nii.gz")
    matched = match_rater_folders(folders, ".nii.gz")
    assert sorted(matched) == ["case_a", "case_b"] and matched["case_a"][2] == folders[2] / "case_a.nii.gz"
    out = write_consensus_folder(folders, tmp_path / "consensus", "majority")
    image = sitk.ReadImage(str(out / "case_a.nii.gz"))
    assert np.allclose(image.GetSpacing(), (0.8, 0.8))
    assert np.array_equal(sitk.GetArrayFromImage(image), disk(radius=10))

    write(disk(), folders[1] / "extra.nii.gz")
    with pytest.raises(UserInputError, match=r"labelsTs_rater1 has no extra\.nii\.gz"):
        match_rater_folders(folders, ".nii.gz")
    with pytest.raises(UserInputError, match="at least 2 reference folders"):
        match_rater_folders(folders[:1], ".nii.gz")
    write(disk(shape=(40, 40)), folders[2] / "extra.nii.gz")
    write(disk(), folders[0] / "extra.nii.gz")
    with pytest.raises(UserInputError, match="labelsTs_rater3/extra.nii.gz: size"):
        write_consensus_folder(folders, tmp_path / "c2")


def test_performance_vs_disagreement_plot(tmp_path):
    from nnunet_robustness.analysis.raters import plot_performance_vs_disagreement

    rows = [{"model": m, "condition": c, "case": f"c{r}",
             **rows_for(disk(radius=10 - (c == "noise")), [disk(radius=10), disk(radius=r)])}
            for m in ("UNet", "NoSkip") for c in ("clean", "noise") for r in (6, 8, 10)]
    path = plot_performance_vs_disagreement(pd.DataFrame(rows), tmp_path / "difficulty.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000

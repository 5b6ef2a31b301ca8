"""ROOD-MRI's severity-weighted degradation, checked against a hand computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnunet_robustness.analysis.rood_mri import ROOD_MRI_ALPHA, rood_mri_summary
from nnunet_robustness.corruptions import CORRUPTIONS
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.modalities import (
    MODALITY_SETS,
    ROOD_MRI_MAPPING,
    modality_from_channel_names,
)


def per_case_table() -> pd.DataFrame:
    rows = []
    # Model A, label 1: clean Dice 0.9 / 0.8 (mean 0.85), HD95 2 / 4 (mean 3).
    for case, dice, hd95 in (("c1", 0.9, 2.0), ("c2", 0.8, 4.0)):
        rows.append({"model": "A", "family": None, "severity": 0, "case": case, "label": 1, "dice": dice, "hd95": hd95})
    # Noise at severities 1 and 3 (2, 4, 5 absent: ROOD-MRI sums over the levels present).
    for severity, dices, hd95s in ((1, (0.85, 0.75), (3.0, 5.0)), (3, (0.6, 0.4), (10.0, np.nan))):
        for case, dice, hd95 in zip(("c1", "c2"), dices, hd95s):
            rows.append({"model": "A", "family": "gaussian_noise", "severity": severity, "case": case, "label": 1,
                         "dice": dice, "hd95": hd95})
    # Blur at severity 2 only.
    for case, dice, hd95 in (("c1", 0.7, 6.0), ("c2", 0.7, 6.0)):
        rows.append({"model": "A", "family": "gaussian_blur", "severity": 2, "case": case, "label": 1,
                     "dice": dice, "hd95": hd95})
    return pd.DataFrame(rows)


def test_weighted_degradation_and_overall_match_a_hand_computation():
    result = rood_mri_summary(per_case_table())
    noise = result[(result["family"] == "gaussian_noise")].set_index("metric")
    w1, w3 = 2 / 3, (2 / 3) ** 3
    # Dice: clean 0.85; severity means 0.80 and 0.50; degradation = clean - mean (higher is better).
    assert noise.loc["dice", "clean"] == pytest.approx(0.85)
    assert noise.loc["dice", "degradation"] == pytest.approx((w1 * 0.05 + w3 * 0.35) / (w1 + w3))
    assert noise.loc["dice", "overall"] == pytest.approx((0.85 + w1 * 0.80 + w3 * 0.50) / (1 + w1 + w3))
    # HD95: clean 3; severity means 4 and 10 (NaN skipped); degradation = mean - clean (lower is better).
    assert noise.loc["hd95", "degradation"] == pytest.approx((w1 * 1.0 + w3 * 7.0) / (w1 + w3))
    assert noise.loc["hd95", "overall"] == pytest.approx((3.0 + w1 * 4.0 + w3 * 10.0) / (1 + w1 + w3))
    assert noise.loc["dice", "severities"] == [1.0, 3.0]
    blur = result[(result["family"] == "gaussian_blur") & (result["metric"] == "dice")].iloc[0]
    assert blur["degradation"] == pytest.approx(0.15)  # a single level: its weight cancels
    assert list(result.columns[:3]) == ["model", "family", "label"]
    assert ROOD_MRI_ALPHA == pytest.approx(2 / 3)


def test_labels_are_averaged_per_case_without_by_label():
    table = per_case_table()
    other = table.assign(label=2, dice=table["dice"] - 0.1)
    result = rood_mri_summary(pd.concat([table, other]), metrics=("dice",), by_label=False)
    noise = result[result["family"] == "gaussian_noise"].iloc[0]
    assert "label" not in result.columns
    assert noise["clean"] == pytest.approx(0.80)
    w1, w3 = 2 / 3, (2 / 3) ** 3
    assert noise["degradation"] == pytest.approx((w1 * 0.05 + w3 * 0.35) / (w1 + w3))  # a common shift cancels


def test_missing_clean_rows_and_unknown_metrics_are_errors():
    table = per_case_table()
    with pytest.raises(ValueError, match="no clean rows"):
        rood_mri_summary(table[table["severity"] > 0])
    with pytest.raises(ValueError, match="higher is better for surface_dice"):
        rood_mri_summary(table.assign(surface_dice=1.0), metrics=("surface_dice",))
    assert not rood_mri_summary(table, metrics=("hd95",), higher_is_better={"hd95": False}).empty


@pytest.mark.parametrize("names,expected", [
    ({"0": "CT"}, "ct"), ({"0": "ct", "1": "CT"}, "ct"), ({"0": "US"}, "ultrasound"),
    ({"0": "Ultrasound"}, "ultrasound"), ({"0": "R", "1": "G", "2": "B"}, "histology"),
    ({"0": "rgb"}, "histology"), ({"0": "H&E"}, "histology"), ({"0": "red", "1": "green", "2": "blue"}, "histology"),
    ({"0": "T2"}, None), ({"0": "CT", "1": "PET"}, None), ({"0": "R", "1": "G"}, None), ({}, None),
    ({"0": "noNorm"}, None),
])
def test_modality_from_channel_names(names, expected):
    assert modality_from_channel_names(names) == expected


def test_modality_sets_name_real_families_and_severities():
    from nnunet_robustness.conditions.parsing import parse_condition_spec

    assert set(MODALITY_SETS) == {"ct", "ultrasound", "histology", "rood-mri"}
    for specs in MODALITY_SETS.values():
        for spec in specs:
            conditions = parse_condition_spec(spec)
            assert conditions and all(c.family in CORRUPTIONS for c in conditions)
    for rood_name, mapping in ROOD_MRI_MAPPING.items():
        if mapping["family"] is not None:
            assert mapping["family"] in CORRUPTIONS, rood_name
            assert any(spec.startswith(mapping["family"] + ":") for spec in MODALITY_SETS["rood-mri"]), rood_name
    assert len(parse_condition_spec("ct_low_dose:1-5")) == 5


def test_auto_set_follows_the_models_channel_names():
    from nnunet_robustness.conditions.parsing import resolve_conditions

    ct = resolve_conditions([], ["auto"], {"channel_names": {"0": "CT"}})
    assert {c.family for c in ct if c.family} >= {"ct_low_dose", "ct_metal"}
    with pytest.raises(UserInputError, match="cannot tell the modality"):
        resolve_conditions([], ["auto"], {"channel_names": {"0": "T2", "1": "ADC"}})
    # 'all' is the general families only: no HU-reading CT family on an MR image
    assert not {c.family for c in resolve_conditions([], ["all"])} & {"ct_low_dose", "he_stain", "us_speckle"}

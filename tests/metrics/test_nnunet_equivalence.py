"""Dice/IoU/TP/FP/FN equal nnU-Net's own evaluation on the same folders, and surface metrics equal
surface-distance on the arrays read from those folders (anisotropic spacing, axis order included)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_robustness.evaluation import evaluate
from tests.helpers.prediction_folders import SPACING, reference_case, write_dataset_json, write_label

surface_distance = pytest.importorskip("surface_distance")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance.*")


def _folders(root: Path, labels: dict, **dataset_extra) -> tuple[Path, Path, Path]:
    """Four cases covering every empty-mask situation of the tumour (label 2) and normal overlap."""
    rng = np.random.default_rng(3)
    reference_folder, prediction_folder = root / "labelsTs", root / "pred"
    for index in range(4):
        reference = reference_case(rng)
        prediction = np.roll(reference, index % 3, axis=1 + index % 2)
        if index == 1:  # missed tumour
            prediction[prediction == 2] = 1
        if index == 2:  # tumour absent from the reference but predicted
            reference[reference == 2] = 1
        if index == 3:  # tumour absent from both
            reference[reference == 2] = 1
            prediction[prediction == 2] = 1
        write_label(reference_folder / f"case_{index}.nii.gz", reference, SPACING)
        write_label(prediction_folder / f"case_{index}.nii.gz", prediction, SPACING)
    dataset_json = write_dataset_json(root / "dataset.json", labels, **dataset_extra)
    return reference_folder, prediction_folder, dataset_json


@pytest.mark.parametrize("labels, extra", [
    ({"background": 0, "organ": 1, "tumour": 2}, {}),
    ({"background": 0, "whole": [1, 2], "tumour": [2]}, {"regions_class_order": [1, 2]}),
], ids=["labels", "regions"])
def test_overlap_metrics_equal_nnunet(tmp_path: Path, labels: dict, extra: dict) -> None:
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    reference, predictions, dataset_json = _folders(tmp_path, labels, **extra)
    manager = LabelManager(labels, extra.get("regions_class_order"))
    targets = manager.foreground_regions if manager.has_regions else manager.foreground_labels
    nnunet = compute_metrics_on_folder(str(reference), str(predictions), None, SimpleITKIO(), ".nii.gz", targets,
                                       num_processes=1)
    result = evaluate({"m": predictions}, reference, dataset_json, progress=False, n_bootstrap=10)
    ours = result.per_case.set_index(["case", "label_value"])
    compared = undefined = 0
    for case_result in nnunet["metric_per_case"]:
        case = Path(case_result["prediction_file"]).name.removesuffix(".nii.gz")
        for target, metrics in case_result["metrics"].items():
            row = ours.loc[(case, str(target))]
            for name in ("TP", "FP", "FN"):
                assert row[name.lower()] == metrics[name], (case, target, name)
            if math.isnan(metrics["Dice"]):  # nnU-Net: undefined when both masks are empty; ours: 1
                assert row["empty_mask"] == "both" and row["dice"] == 1.0 and row["iou"] == 1.0
                undefined += 1
            else:
                assert row["dice"] == pytest.approx(metrics["Dice"], abs=1e-12)
                assert row["iou"] == pytest.approx(metrics["IoU"], abs=1e-12)
                compared += 1
    assert undefined == 1 and compared == 7
    assert set(result.per_case["empty_mask"]) == {"none", "both", "reference", "prediction"}


def test_surface_metrics_equal_surface_distance_on_read_files(tmp_path: Path) -> None:
    reference, predictions, dataset_json = _folders(tmp_path, {"background": 0, "organ": 1, "tumour": 2})
    result = evaluate({"m": predictions}, reference, dataset_json, nsd_tolerance_mm=1.5, progress=False,
                      n_bootstrap=10)
    checked = 0
    for row in result.per_case.itertuples():
        if row.empty_mask != "none":
            continue
        # Read independently of nnU-Net: SimpleITK arrays are (z, y, x), spacing is (x, y, z).
        ref_image = sitk.ReadImage(row.reference_file)
        spacing = ref_image.GetSpacing()[::-1]
        assert spacing == pytest.approx(SPACING)
        value = int(row.label_value)
        a = sitk.GetArrayFromImage(ref_image) == value
        b = sitk.GetArrayFromImage(sitk.ReadImage(row.prediction_file)) == value
        distances = surface_distance.compute_surface_distances(a, b, spacing)
        assert row.hd95_mm == pytest.approx(surface_distance.compute_robust_hausdorff(distances, 95), abs=1e-6)
        assert row.assd_mm == pytest.approx(np.mean(surface_distance.compute_average_surface_distance(distances)),
                                            abs=1e-6)
        assert row.nsd == pytest.approx(surface_distance.compute_surface_dice_at_tolerance(distances, 1.5), abs=1e-6)
        checked += 1
    assert checked >= 5
    assert (result.per_case["hd95_mm"] > 0).any()

"""End to end through nnU-Net's CLIs: plan-context, 1-epoch training of a context configuration with an
fg trainer, FBR logs, the test-time context condition through ``run``, and ``eval``'s FBR columns.

The acceptance command is ``nnUNetv2_train D 3d_fullres_ctx0.50 0 -tr nnUNetTrainer_fg100``; that
trainer has nnU-Net's 1000 epochs, so CI trains ``nnUNetTrainer_fg100_tiny`` (same sampling, 1 epoch of
10 iterations).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_robustness.conditions.parsing import resolve_conditions
from nnunet_robustness.evaluation import evaluate, write_report
from nnunet_robustness.foreground_ratio import foreground_fraction
from nnunet_robustness.records.context_fbr import record_path
from nnunet_robustness.records.training_fbr import TRAINING_LOG
from nnunet_robustness.runner.cases import list_cases
from nnunet_robustness.runner.runner import PredictionSettings, RobustnessRunner
from nnunet_robustness.trainers.fbr_logging import FBR_HISTOGRAM_PNG
from tests.helpers.nnunet_cli import run_cli
from tests.helpers.synthetic import write_nnunet_dataset

pytestmark = pytest.mark.e2e

DATASET_ID, TRAINER, CONFIGURATION = 911, "nnUNetTrainer_fg100_tiny", "3d_fullres_ctx0.50"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("context_fbr")
    env = {**os.environ, "nnUNet_n_proc_DA": "2", "nnUNet_def_n_proc": "1", "nnUNet_compile": "false",
           "OMP_NUM_THREADS": "2",
           **{name: str(root / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    raw = write_nnunet_dataset(Path(env["nnUNet_raw"]), DATASET_ID, 3, n_train=6, n_test=3, seed=11)
    run_cli(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1"],
            env)
    preprocessed = Path(env["nnUNet_preprocessed"]) / raw.name
    original = (preprocessed / "nnUNetPlans.json").read_bytes()
    for extra in ([], ["--memory-matched"]):
        run_cli(["nnunet-robust", "plan-context", "-d", str(DATASET_ID), "-c", "3d_fullres", "--scales", "0.5",
                 "0.75", "1.0", "1.25", *extra], env)
    run_cli(["nnUNetv2_train", str(DATASET_ID), CONFIGURATION, "0", "-tr", TRAINER, "-device", "cpu"], env)
    model = Path(env["nnUNet_results"]) / raw.name / f"{TRAINER}__nnUNetPlans__{CONFIGURATION}"
    return {"env": env, "raw": raw, "model": model, "preprocessed": preprocessed, "original_plans": original}


def test_plan_context_configurations_train_and_original_is_backed_up(trained):
    preprocessed, model = trained["preprocessed"], trained["model"]
    # the oldest backup (two runs in one second get ".<stamp>.bak" and ".<stamp>-1.bak", which sort the
    # other way round by name)
    (backup, *more) = sorted(preprocessed.glob("nnUNetPlans.json.*.bak"), key=lambda p: p.stat().st_mtime_ns)
    assert backup.read_bytes() == trained["original_plans"]
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    original = json.loads(trained["original_plans"])
    assert plans["configurations"]["3d_fullres"] == original["configurations"]["3d_fullres"]
    assert {f"3d_fullres_ctx{s}{m}" for s in ("0.50", "0.75", "1.00", "1.25") for m in ("", "_mem")} \
        <= set(plans["configurations"])
    # nnU-Net trained the context configuration: its plans (as the predictor will read them) say 16^3
    used = json.loads((model / "plans.json").read_text())["configurations"][CONFIGURATION]
    assert used["patch_size"] == [16, 16, 16] and used["inherits_from"] == "3d_fullres"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()


def test_fg100_training_log(trained):
    fold = trained["model"] / "fold_0"
    log = json.loads((fold / TRAINING_LOG).read_text())
    assert log["oversample_foreground_percent"] == 1.0 and log["patch_size"] == [16, 16, 16]
    (epoch,) = log["epochs"]
    batch_size = log["batch_size"]
    for kind in ("network", "sampled"):
        assert epoch[kind]["n"] == 10 * batch_size == sum(epoch[kind]["histogram"])
    assert epoch["sampled"]["min"] > 0, "fg100: every sampled patch contains foreground"
    assert (fold / FBR_HISTOGRAM_PNG).stat().st_size > 1000


def test_context_condition_run_and_eval(trained, tmp_path):
    raw = trained["raw"]
    runner = RobustnessRunner(PredictionSettings(trained["model"], folds=(0,), use_mirroring=False, device="cpu"))
    cases = list_cases(raw / "imagesTs", ".nii.gz", 1)
    levels = (0.4, 0.15)
    out = tmp_path / "robust"
    runner.run(cases, resolve_conditions([f"context:{','.join(map(str, levels))}"]), out,
               reference_folder=raw / "labelsTs", progress=False)
    for case in cases:
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTs" / f"{case}.nii.gz")))
        for level in levels:
            folder = out / f"context_fbr{level:.2f}"
            record = json.loads(record_path(folder, case).read_text())
            box = tuple(slice(a, b) for a, b in record["box"])
            assert record["fbr"] == pytest.approx(foreground_fraction(reference[box]))
            assert reference[box].sum() == reference.sum()
            if not record["clipped"]:
                assert abs(record["fbr"] - level) <= 0.2 * level
            prediction = sitk.ReadImage(str(folder / f"{case}.nii.gz"))
            reference_image = sitk.ReadImage(str(raw / "labelsTs" / f"{case}.nii.gz"))
            assert prediction.GetSize() == reference_image.GetSize()
            assert prediction.GetOrigin() == reference_image.GetOrigin()
            outside = np.ones(reference.shape, bool)
            outside[box] = False
            assert not sitk.GetArrayFromImage(prediction)[outside].any()

    result = evaluate({"fg100": out}, raw / "labelsTs", raw / "dataset.json", progress=False)
    per_case = result.per_case
    training = result.settings["training_fbr_ranges"]["fg100"]
    assert training["logs"] == [str(trained["model"] / "fold_0" / TRAINING_LOG)]
    for _, row in per_case.iterrows():
        if row["condition"] == "clean":
            reference = sitk.GetArrayFromImage(sitk.ReadImage(row["reference_file"]))
            assert row["test_fbr"] == pytest.approx(foreground_fraction(reference))
        else:
            record = json.loads(record_path(Path(row["prediction_file"]).parent, row["case"]).read_text())
            assert row["test_fbr"] == record["fbr"]
        outside = not training["low"] <= row["test_fbr"] <= training["high"]
        assert row["fbr_outside_training"] == outside
    report = write_report(result, tmp_path / "report.html").read_text()
    assert "Metric vs test FBR" in report

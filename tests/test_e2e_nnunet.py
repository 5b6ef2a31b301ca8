"""End to end through nnU-Net's real CLIs, on CPU: plan/preprocess, train with our trainers (and with
the stock trainer through the plans route), predict, evaluate, and load the checkpoint in-process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.helpers.nnunet_cli import run_cli
from tests.helpers.nnunet_models import BLOBS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env(nnunet_models) -> dict:
    return nnunet_models.env


CASES = [
    # (dim, trainer, plans, plan-arch arguments or None, expected skip levels, expected attention)
    # (2D No-Skip and attention-gated trainers train and predict in the study smoke test, tests/studies;
    # the No-Skip plans route builds its network in tests/plans and trains here through the 2D attention one)
    (3, "nnUNetTrainerNoSkip_tiny", "nnUNetPlans", None, (), False),
    # 3D attention gates, trained with PGD examples in train_step (adversarial training)
    (3, "nnUNetTrainerAttentionGateAdversarial_tiny", "nnUNetPlans", None, "all", True),
    (2, "nnUNetTrainer_tiny", "nnUNetPlansAttentionGate", ["--arch", "attention"], "all", True),
]


@pytest.mark.parametrize("dim,trainer,plans,plan_arch,skip_levels,attention", CASES,
                         ids=[f"{c[0]}d-{c[1]}-{c[2]}" for c in CASES])
def test_train_predict_evaluate(env, nnunet_models, tmp_path, dim, trainer, plans, plan_arch, skip_levels, attention):
    # the blob datasets are planned and preprocessed (with nnU-Net's integrity check) once per session, and
    # the 3D No-Skip model is the one the adversarial tests attack: whichever module runs first trains it
    dataset_id, configuration = BLOBS[dim].dataset_id, BLOBS[dim].configuration
    raw = nnunet_models.dataset(dim)
    if plan_arch:
        run_cli(["nnunet-robust", "plan-arch", "-d", str(dataset_id), *plan_arch], env)

    model_folder = nnunet_models.model(dim, trainer, plans)
    checkpoint = torch.load(model_folder / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == trainer

    predictions = tmp_path / "predictions"
    run_cli(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(predictions), "-d", str(dataset_id),
             "-c", configuration, "-tr", trainer, "-p", plans, "-f", "0", "-device", "cpu", "--disable_tta",
             "-npp", "0", "-nps", "0"], env)
    test_cases = sorted(p.name for p in (raw / "labelsTs").iterdir())
    assert sorted(p.name for p in predictions.glob("*.nii.gz")) == test_cases

    run_cli(["nnUNetv2_evaluate_folder", str(raw / "labelsTs"), str(predictions), "-djfile",
             str(model_folder / "dataset.json"), "-pfile", str(model_folder / "plans.json"), "-np", "1"], env)
    summary = json.loads((predictions / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == len(test_cases)
    dice = summary["foreground_mean"]["Dice"]
    assert math.isfinite(dice)

    if trainer.endswith("NoSkip_tiny"):
        _robustness_run_and_eval(env, raw, model_folder, predictions, tmp_path, dice)

    # The same checkpoint through nnU-Net's Python API builds our network, not the stock one.
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_robustness.architectures import SkipSelectiveUNetDecoder, resolve_skip_levels

    predictor = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False,
                                device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_folder), use_folds=(0,),
                                                   checkpoint_name="checkpoint_final.pth")
    decoder = predictor.network.decoder
    assert isinstance(decoder, SkipSelectiveUNetDecoder)
    assert decoder.skip_levels == resolve_skip_levels(skip_levels, decoder.num_skip_levels)
    assert (decoder.attention_gates is not None) == attention


def _robustness_run_and_eval(env: dict, raw: Path, model_folder: Path, nnunet_predictions: Path, tmp_path: Path,
                             nnunet_dice: float) -> None:
    """``nnunet-robust run`` (3 conditions) then ``eval`` on the same model: the clean condition is
    nnUNetv2_predict's prediction, and eval's Dice equals nnU-Net's evaluation of it."""
    import numpy as np
    import pandas as pd
    import SimpleITK as sitk

    out = tmp_path / "robust"
    run_cli(["nnunet-robust", "run", "-i", str(raw / "imagesTs"), "-o", str(out), "-m", str(model_folder),
             "-f", "0", "-device", "cpu", "--disable_tta", "--no-progress",
             "--conditions", "gaussian_noise:4", "motion:3"], env)
    conditions = ["clean", "gaussian_noise_sev4", "motion_sev3"]
    for case in sorted(p.name for p in (raw / "labelsTs").iterdir()):
        for condition in conditions:
            assert (out / condition / case).is_file()
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "clean" / case)))
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(nnunet_predictions / case)))
        np.testing.assert_array_equal(ours, theirs)

    evaluation = tmp_path / "evaluation"
    run_cli(["nnunet-robust", "eval", "-i", str(out), "-ref", str(raw / "labelsTs"), "-djfile",
             str(raw / "dataset.json"), "-o", str(evaluation), "-np", "1", "--n-bootstrap", "200"], env)
    table = pd.read_csv(evaluation / "per_case.csv")
    assert sorted(table["condition"].unique()) == sorted(conditions)
    assert math.isclose(table.loc[table["condition"] == "clean", "dice"].mean(), nnunet_dice, abs_tol=1e-9)
    report = (evaluation / "report.html").read_text()
    assert "<img" in report and "gaussian_noise" in report

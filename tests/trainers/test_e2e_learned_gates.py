"""nnUNetTrainerLearnedSkipL1_tiny through nnU-Net's real CLIs (2D, CPU): the gate log and plot are
written in the fold folder, and the checkpoint (with its gate logits) loads in nnUNetv2_predict."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.helpers.nnunet_cli import run_cli
from tests.helpers.nnunet_models import BLOBS

pytestmark = pytest.mark.e2e

TRAINER = "nnUNetTrainerLearnedSkipL1_tiny"


def test_learned_skip_train_log_predict(nnunet_models, tmp_path):
    # trained here, not through nnunet_models.model: the L1 variant's own training is what is checked.
    # The blob dataset is the session's shared one, preprocessed once.
    env = {**nnunet_models.env, "OMP_NUM_THREADS": "2"}
    raw, dataset_id, configuration = nnunet_models.dataset(2), str(BLOBS[2].dataset_id), BLOBS[2].configuration
    run_cli(["nnUNetv2_train", dataset_id, configuration, "0", "-tr", TRAINER, "-device", "cpu"], env)

    fold = nnunet_models.model_folder(2, TRAINER) / "fold_0"
    log = json.loads((fold / "learned_gates.json").read_text())
    assert log["trainer"] == TRAINER and log["gate_mode"] == "scalar"
    assert log["gate_sparsity_weight"] == 0.01  # the L1 variant's class attribute, in nnU-Net's own run
    levels = sorted(log["skip_channels"], key=int)
    initial = log["initial"]["gates"]
    assert sorted(initial, key=int) == levels and len(levels) >= 2
    assert all(math.isclose(v, 0.95, rel_tol=1e-6) for vs in initial.values() for v in vs)
    assert [e["epoch"] for e in log["epochs"]] == [0]  # _tiny: one epoch
    final = log["epochs"][-1]["gates"]
    assert all(0.0 < vs[0] < 1.0 for vs in final.values())
    assert any(vs[0] != initial[level][0] for level, vs in final.items())  # trained, not frozen
    assert all(0.0 < share < 1.0 for share in log["epochs"][-1]["skip_weight_share"].values())
    assert (fold / "learned_gates.png").stat().st_size > 1000

    # the checkpoint's gates are the logged ones, and nnUNetv2_predict rebuilds the gated network
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    for level, values in final.items():
        logit = checkpoint["network_weights"][f"decoder.learned_gates.{level}.logit"]
        assert math.isclose(float(torch.sigmoid(logit).flatten()[0]), values[0], rel_tol=1e-5)
    predictions = tmp_path / "predictions"
    run_cli(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(predictions), "-d", dataset_id, "-c", configuration,
             "-tr", TRAINER, "-f", "0", "-device", "cpu", "--disable_tta", "-npp", "0", "-nps", "0"], env)
    assert sorted(p.name for p in predictions.glob("*.nii.gz")) == sorted(p.name for p in (raw / "labelsTs").iterdir())

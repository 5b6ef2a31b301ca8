"""Acceptance: generated 2D and 3D texture datasets pass nnU-Net's integrity check, plan, preprocess and
train for one epoch with nnU-Net on CPU (through the real console scripts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def run(args: list[str], env: dict[str, str], timeout: int = 600) -> str:
    result = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], env=env, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}\n--- stdout ---\n"
                             f"{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}")
    return result.stdout


# 2D: the smoke scale of `nnunet-robust study` (tests/studies) makes, plans, trains and scores a 2D texture
# dataset through the same CLIs, so only the 3D dataset is trained here.
@pytest.mark.parametrize("dataset_id,shape,configuration", [(542, (32, 32, 32), "3d_fullres")], ids=["3d"])
def test_generated_dataset_plans_and_trains_with_nnunet(nnunet_env, dataset_id, shape, configuration):
    env = {**nnunet_env, "OMP_NUM_THREADS": "2"}
    run(["nnunet-robust", "make-dataset", "textures", "-d", dataset_id, "--shape", *shape,
         "--train-alpha", "0.2", "--test-alpha", "0.2", "0.8", "--num-train", 5, "--num-test", 1], env)
    folder_name = f"Dataset{dataset_id}_Textures"

    # one worker: for five tiny cases, starting a second torch-importing process costs more than it saves
    run(["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", configuration, "--verify_dataset_integrity",
         "-np", 1, "-npfp", 1], env)
    preprocessed = Path(env["nnUNet_preprocessed"]) / folder_name
    plans = (preprocessed / "nnUNetPlans.json").read_text()
    assert f'"{configuration}"' in plans
    # 2D cases are read as one slice: nnU-Net's 2D patch covers the whole 64 x 64 image
    assert (preprocessed / f"nnUNetPlans_{configuration}").is_dir()

    # 1 epoch, a handful of iterations (the trainer comes with nnunet-robustness); 5 cases = 4 train + 1 val
    run(["nnUNetv2_train", dataset_id, configuration, 0, "-tr", "nnUNetTrainer_tiny", "-device", "cpu"], env)
    fold = Path(env["nnUNet_results"]) / folder_name / f"nnUNetTrainer_tiny__nnUNetPlans__{configuration}" / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()
    assert (fold / "validation" / "summary.json").is_file()

    # the dataset id resolves through nnUNet_raw for `complexity` too
    out = run(["nnunet-robust", "complexity", dataset_id, "-o", Path(env["nnUNet_results"]) / "td.csv"], env)
    assert "0.20" in out and "0.80" in out

"""Real nnU-Net plans (written by nnUNetv2_plan_and_preprocess for tests/synthetic.py's 3D blobs),
plus the ResEnc and cascade forms derived from them the way nnU-Net's planners write them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

PLANS_FILE = Path(__file__).parent / "data" / "nnUNetPlans_blobs3d.json"
DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "blob": 1}, "numTraining": 6,
                "file_ending": ".nii.gz"}


def default_plans() -> dict:
    """nnUNetPlans with 2d and 3d_fullres, plus a 3d_cascade_fullres that inherits its architecture."""
    plans = json.loads(PLANS_FILE.read_text())
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres",
                                                     "previous_stage": "3d_lowres"}
    return plans


def resenc_plans() -> dict:
    """The same dataset as nnU-Net's ResEnc presets plan it: ResidualEncoderUNet with n_blocks_per_stage."""
    plans = default_plans()
    plans["plans_name"] = "nnUNetResEncUNetMPlans"
    for name in ("2d", "3d_fullres"):
        arch = plans["configurations"][name]["architecture"]
        arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
        kwargs = arch["arch_kwargs"]
        kwargs["n_blocks_per_stage"] = [1, 3, 4, 6][: kwargs["n_stages"]]
        del kwargs["n_conv_per_stage"]
        kwargs["n_conv_per_stage_decoder"] = [1] * (kwargs["n_stages"] - 1)
    return copy.deepcopy(plans)


def write_source_plans(folder: Path) -> Path:
    """``folder``/nnUNetPlans.json with the default plans, as nnUNetv2_plan_and_preprocess leaves it."""
    folder.mkdir(parents=True)
    source = folder / "nnUNetPlans.json"
    source.write_text(json.dumps(default_plans(), indent=4))
    return source

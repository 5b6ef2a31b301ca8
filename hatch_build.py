"""Build hook: ship the trainer shim inside nnU-Net's trainer folder, and keep its template in ours.

The wheel must carry ``nnunetv2/training/nnUNetTrainer/nnunet_robustness_trainers.py`` (see README,
"How nnU-Net finds our trainers"). A plain ``force-include`` of our template would *move* it: hatch
reserves a force-included source inside the project, so ``nnunet_robustness/shim/template.py`` would
be missing from the installed package and ``doctor``/``install-shim`` could not read it. Copying the
template to a temporary file outside the project and force-including that copy keeps both.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

TEMPLATE = "nnunet_robustness/shim/template.py"
TARGET = "nnunetv2/training/nnUNetTrainer/nnunet_robustness_trainers.py"


class ShimBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        self._tmp = Path(tempfile.mkdtemp(prefix="nnunet-robustness-shim-"))
        copy = self._tmp / Path(TARGET).name
        shutil.copyfile(Path(self.root) / TEMPLATE, copy)
        build_data["force_include"][str(copy)] = TARGET

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if getattr(self, "_tmp", None) is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

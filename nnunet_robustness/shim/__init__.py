"""Making nnU-Net's ``-tr NAME`` lookup find our trainers.

nnU-Net resolves ``-tr`` by importing every module of ``nnunetv2/training/nnUNetTrainer/`` (top
folder first, then subfolders in order) and taking the first module that has the name. We place a
one-line shim module there that star-imports :mod:`nnunet_robustness.trainers`:

- the wheel ships it (``hatch_build.py`` copies :file:`template.py` of this package to that place in
  the wheel, so the template also stays readable here after a wheel install), so a plain
  ``pip install`` works for ``nnUNetv2_train`` and ``nnUNetv2_predict`` alike;
- ``nnunet-robust install-shim`` writes the same file (idempotent) for editable installs made by
  other build front-ends, or after nnU-Net was reinstalled into a fresh folder.

Why not ``nnUNet_extTrainer``: nnU-Net consults it only after its internal search failed, and on
CPU-only machines that search crashes first when it imports ``primus/`` (CUDA torchvision build
against CPU torch). A top-folder module is found before ``primus/`` is reached.

This module imports neither torch nor nnU-Net's trainers (``nnunet-robust --help`` stays fast);
nnU-Net itself is imported only to find its folder.
"""

from __future__ import annotations

import importlib.util
from enum import Enum
from importlib import resources
from pathlib import Path

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_text

SHIM_MODULE_NAME = "nnunet_robustness_trainers"


class ShimState(str, Enum):
    OK = "ok"
    MISSING = "missing"
    OUTDATED = "outdated"


def shim_source() -> str:
    """The text of the shim module, from the package data (present in every kind of install)."""
    return resources.files(__name__).joinpath("template.py").read_text()


def nnunet_trainer_folder() -> Path:
    """nnU-Net's trainer folder, found without importing nnU-Net (whose package import is slow)."""
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError("nnunetv2 is not installed in this environment: pip install 'nnunetv2>=2.8,<2.9'")
    return Path(list(spec.submodule_search_locations)[0]) / "training" / "nnUNetTrainer"


def shim_path(trainer_folder: Path | None = None) -> Path:
    return (trainer_folder or nnunet_trainer_folder()) / f"{SHIM_MODULE_NAME}.py"


def shim_state(trainer_folder: Path | None = None) -> ShimState:
    path = shim_path(trainer_folder)
    if not path.is_file():
        return ShimState.MISSING
    return ShimState.OK if path.read_text() == shim_source() else ShimState.OUTDATED


def install_shim(trainer_folder: Path | None = None) -> tuple[Path, bool]:
    """Write the shim unless an identical one is there. Returns (path, whether it was written)."""
    path = shim_path(trainer_folder)
    if shim_state(trainer_folder) is ShimState.OK:
        return path, False
    atomic_write_text(path, shim_source())
    return path, True


def remove_shim(trainer_folder: Path | None = None) -> bool:
    path = shim_path(trainer_folder)
    if path.is_file():
        path.unlink()
        return True
    return False

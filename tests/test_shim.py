"""How nnU-Net finds our trainers: the shim module, its guard, the wheel, and ``doctor``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nnunetv2
import pytest

from nnunet_robustness.shim import (
    SHIM_MODULE_NAME,
    ShimState,
    install_shim,
    remove_shim,
    shim_source,
    shim_state,
)

REPO = Path(__file__).resolve().parents[1]
SHIM_RELPATH = f"nnunetv2/training/nnUNetTrainer/{SHIM_MODULE_NAME}.py"


def run_python(code_or_args: list[str], pythonpath: Path | None = None, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    if pythonpath is not None:
        environment["PYTHONPATH"] = str(pythonpath)
    # cwd outside the repository: `python -c` puts the cwd first on sys.path
    return subprocess.run([sys.executable, *code_or_args], capture_output=True, text=True, env=environment,
                          timeout=300, cwd=pythonpath or REPO.parent)


@pytest.fixture
def nnunet_copy_without_shim(tmp_path) -> Path:
    """A private copy of the installed nnunetv2 package without our shim, put first on PYTHONPATH."""
    site = tmp_path / "site"
    shutil.copytree(Path(nnunetv2.__path__[0]), site / "nnunetv2",
                    ignore=shutil.ignore_patterns("__pycache__", f"{SHIM_MODULE_NAME}.py"))
    return site


def test_install_shim_is_idempotent_and_repairs(tmp_path):
    assert shim_state(tmp_path) is ShimState.MISSING
    path, written = install_shim(tmp_path)
    assert written and path.read_text() == shim_source() and shim_state(tmp_path) is ShimState.OK
    assert install_shim(tmp_path) == (path, False)
    path.write_text("# stale\n")
    assert shim_state(tmp_path) is ShimState.OUTDATED
    assert install_shim(tmp_path)[1] and shim_state(tmp_path) is ShimState.OK
    assert remove_shim(tmp_path) and shim_state(tmp_path) is ShimState.MISSING


def test_installed_shim_is_current():
    """The environment the tests run in must itself be set up as a user's would be."""
    assert shim_state() is ShimState.OK, "run `nnunet-robust install-shim`"


def test_nnunet_lookup_finds_our_trainers_via_the_shim(nnunet_copy_without_shim):
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
            "import nnunetv2; print(nnunetv2.__file__)\n"
            "print(find('nnUNetTrainerAttentionGate_5epochs').__module__)")
    missing = run_python(["-c", code], nnunet_copy_without_shim)
    assert str(nnunet_copy_without_shim) in missing.stdout  # the copy is the one imported
    assert "nnunet_robustness.trainers" not in missing.stdout
    install_shim(nnunet_copy_without_shim / "nnunetv2" / "training" / "nnUNetTrainer")
    present = run_python(["-c", code], nnunet_copy_without_shim)
    assert present.returncode == 0, present.stderr
    assert present.stdout.strip().endswith("nnunet_robustness.trainers.generated.unet_variants")


def test_a_broken_nnunet_robustness_never_breaks_nnunets_own_trainers(tmp_path, nnunet_copy_without_shim):
    install_shim(nnunet_copy_without_shim / "nnunetv2" / "training" / "nnUNetTrainer")
    broken = nnunet_copy_without_shim / "nnunet_robustness"  # shadows the real package on PYTHONPATH
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('simulated broken install')\n")
    # nnU-Net's search imports every module of the folder; ours must import cleanly (with a warning)
    code = ("import warnings; warnings.simplefilter('always')\n"
            f"import nnunetv2.training.nnUNetTrainer.{SHIM_MODULE_NAME}\n"
            "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
            "print(find('nnUNetTrainer').__name__)")
    result = run_python(["-c", code], nnunet_copy_without_shim)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nnUNetTrainer"
    assert "nnunet-robustness trainers are unavailable" in result.stderr and "doctor" in result.stderr


def test_doctor_passes_here(nnunet_env):
    result = run_python(["-m", "nnunet_robustness.cli", "doctor"], **{k: v for k, v in nnunet_env.items()
                                                                        if k.startswith("nnUNet")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed" in result.stdout
    assert "[FAIL]" not in result.stdout


def test_doctor_fails_with_a_fix_when_the_shim_is_missing(nnunet_copy_without_shim):
    result = run_python(["-m", "nnunet_robustness.cli", "doctor"], nnunet_copy_without_shim)
    assert result.returncode == 1
    assert "[FAIL] trainer shim missing" in result.stdout
    assert "fix: nnunet-robust install-shim" in result.stdout
    assert "trainer lookup fails" in result.stdout

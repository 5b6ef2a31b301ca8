"""The path users take: our wheel (built from the sdist), installed non-editable into a fresh virtual
environment that already holds their torch, with the README's own-environment instructions.

One module-scoped environment serves every test here; the smoke test then runs nnU-Net's real CLIs
and ours from that environment on one tiny 2D dataset. This is the only place the suite leaves the
editable install, so it is kept to the checks that differ between the two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers.synthetic import write_nnunet_dataset

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
SHIM_IN_WHEEL = "nnunetv2/training/nnUNetTrainer/nnunet_robustness_trainers.py"
TEMPLATE_IN_WHEEL = "nnunet_robustness/shim/template.py"
CARD_SCHEMA_IN_WHEEL = "nnunet_robustness/schemas/robustness_card.schema.json"


def _run(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}\n--- stdout ---\n"
                             f"{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}")
    return result


def _clean_env(**extra: str) -> dict:
    """The environment without anything that would put this checkout or the test venv on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """sdist, and the wheel built *from that sdist* (what `pip install nnunet-robustness` from an sdist does)."""
    out = tmp_path_factory.mktemp("dist")
    _run([str(Path(sys.executable).parent / "hatchling"), "build", "-t", "sdist", "-d", str(out)], cwd=REPO)
    (sdist,) = out.glob("nnunet_robustness-*.tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
          str(sdist)], cwd=out)
    (wheel,) = out.glob("nnunet_robustness-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_sdist_and_its_wheel_carry_the_shim_and_its_template(dist):
    with tarfile.open(dist["sdist"]) as archive:
        names = archive.getnames()
    assert any(n.endswith("/hatch_build.py") for n in names) and any(n.endswith("/" + TEMPLATE_IN_WHEEL)
                                                                   for n in names)
    with zipfile.ZipFile(dist["wheel"]) as archive:
        template = archive.read(TEMPLATE_IN_WHEEL)
        assert archive.read(SHIM_IN_WHEEL) == template  # the placed shim is the template, byte for byte
        assert [n for n in archive.namelist() if n.startswith("nnunetv2/")] == [SHIM_IN_WHEEL]
        # package data: the robustness card's published schema (nnunet_robustness.analysis.card.schema reads it)
        assert CARD_SCHEMA_IN_WHEEL in archive.namelist()


@pytest.fixture(scope="module")
def user_venv(dist, tmp_path_factory) -> dict:
    """A fresh venv with the user's torch (the version this suite runs on), then our wheel installed the way
    the README says: with the installed torch family pinned by a constraints file."""
    import torch

    root = tmp_path_factory.mktemp("user")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    python, env = str(venv / "bin" / "python"), _clean_env()
    # --no-compile: pip would byte-compile every module it installs, all of torch's (most of that install's time);
    # the CLIs below compile what they import, as they would from any install
    _run([python, "-m", "pip", "install", "-q", "--no-compile", f"torch=={torch.__version__.split('+')[0]}"], cwd=root,
         env=env)
    before = _run([python, "-c", "import torch; print(torch.__version__)"], cwd=root, env=env).stdout.strip()
    # README, "Installing into your own environment": keep the torch you have
    freeze = _run([python, "-m", "pip", "freeze"], cwd=root, env=env).stdout.splitlines()
    (root / "keep-torch.txt").write_text("\n".join(line for line in freeze if line.lower().startswith(
        ("torch==", "torchvision==", "torchaudio=="))) + "\n")
    _run([python, "-m", "pip", "install", "-q", "--no-compile", str(dist["wheel"]), "-c",
          str(root / "keep-torch.txt")], cwd=root, env=env)
    return {"root": root, "bin": venv / "bin", "python": python, "env": env, "torch_before": before}


def test_wheel_install_keeps_the_users_torch(user_venv):
    after = _run([user_venv["python"], "-c", "import torch; print(torch.__version__)"], cwd=user_venv["root"],
                 env=user_venv["env"]).stdout.strip()
    assert after == user_venv["torch_before"]


def test_doctor_and_install_shim_work_after_a_wheel_install(user_venv, tmp_path):
    b, env = user_venv["bin"], user_venv["env"]
    nnunet_env = {**env, "nnUNet_n_proc_DA": "2", "nnUNet_def_n_proc": "2",
                  **{name: str(tmp_path / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
    doctor = _run([str(b / "nnunet-robust"), "doctor"], cwd=tmp_path, env=nnunet_env)
    assert "All checks passed" in doctor.stdout and "[FAIL]" not in doctor.stdout
    assert "already up to date" in _run([str(b / "nnunet-robust"), "install-shim"], cwd=tmp_path, env=env).stdout
    assert "removed" in _run([str(b / "nnunet-robust"), "install-shim", "--remove"], cwd=tmp_path, env=env).stdout
    missing = subprocess.run([str(b / "nnunet-robust"), "doctor"], cwd=tmp_path, env=nnunet_env,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "trainer shim missing" in missing.stdout
    assert "installed" in _run([str(b / "nnunet-robust"), "install-shim"], cwd=tmp_path, env=env).stdout
    _run([str(b / "nnunet-robust"), "doctor"], cwd=tmp_path, env=nnunet_env)


def test_real_cli_smoke_from_the_wheel_install(user_venv, tmp_path):
    """nnUNetv2_train with one of our `_tiny` trainers (No-Skip with corruption augmentation: found by
    nnU-Net's lookup through the wheel's shim), nnUNetv2_predict, then `nnunet-robust run` and `eval`."""
    b = user_venv["bin"]
    # one export process for nnU-Net's final validation (it spawns them, each importing torch), and
    # nnUNetv2_predict in its sequential mode (-npp 0 -nps 0): two tiny cases
    env = {**user_venv["env"], "nnUNet_n_proc_DA": "2", "nnUNet_def_n_proc": "1", "nnUNet_compile": "false",
           "OMP_NUM_THREADS": "2",
           **{name: str(tmp_path / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    raw = write_nnunet_dataset(tmp_path / "nnUNet_raw", 911, 2, n_train=5, n_test=2, size=32)
    for name in ("nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
    _run([str(b / "nnUNetv2_plan_and_preprocess"), "-d", "911", "-c", "2d", "-np", "1", "-npfp", "1"], tmp_path, env)
    _run([str(b / "nnUNetv2_train"), "911", "2d", "0", "-tr", "nnUNetTrainerNoSkipCorruptionAug_tiny", "-device", "cpu"],
         tmp_path, env)
    _run([str(b / "nnUNetv2_predict"), "-i", str(raw / "imagesTs"), "-o", str(tmp_path / "pred"), "-d", "911",
          "-c", "2d", "-tr", "nnUNetTrainerNoSkipCorruptionAug_tiny", "-f", "0", "-device", "cpu", "--disable_tta",
          "-npp", "0", "-nps", "0"], tmp_path, env)
    assert len(list((tmp_path / "pred").glob("*.nii.gz"))) == 2
    model = tmp_path / "nnUNet_results" / raw.name / "nnUNetTrainerNoSkipCorruptionAug_tiny__nnUNetPlans__2d"
    record = json.loads((model / "robust_training_record.json").read_text())  # what eval reads as "seen"
    assert record["trainer"] == "nnUNetTrainerNoSkipCorruptionAug_tiny" and record["corruption_augmentation"]["families"]
    _run([str(b / "nnunet-robust"), "run", "-i", str(raw / "imagesTs"), "-o", str(tmp_path / "robust"), "-m",
          str(model), "-f", "0", "-device", "cpu", "--disable_tta", "--conditions", "gaussian_noise:3"], tmp_path, env)
    _run([str(b / "nnunet-robust"), "eval", "-i", str(tmp_path / "robust"), "-ref", str(raw / "labelsTs"),
          "-djfile", str(raw / "dataset.json"), "-o", str(tmp_path / "eval"), "--n-bootstrap", "100"], tmp_path, env)
    per_case = (tmp_path / "eval" / "per_case.csv").read_text().splitlines()
    assert len(per_case) == 1 + 2 * 2  # header + 2 cases x (clean, gaussian_noise_sev3) x 1 label
    assert (tmp_path / "eval" / "report.html").is_file()

"""The bad-input catalogue as a table: each row is one mistake a new user makes, the exit status it must
give, and the file or option its one-line message must name. No row may end in a traceback (an
exception escaping ``main`` fails the test) or leave outputs that look complete.

One tiny trained 2D model (No-Skip, 10 iterations) and the shared prediction study serve every row.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_robustness.cli import main
from tests.helpers.nnunet_cli import run_cli
from tests.helpers.synthetic import write_nnunet_dataset

DATASET_ID, TRAINER = 907, "nnUNetTrainerNoSkip_tiny"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("bad_inputs")
    env = {**os.environ, "nnUNet_n_proc_DA": "2", "nnUNet_def_n_proc": "2", "nnUNet_compile": "false",
           **{name: str(root / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    raw = write_nnunet_dataset(Path(env["nnUNet_raw"]), DATASET_ID, 2, n_train=5, n_test=2, size=32)
    run_cli(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-np", "1", "-npfp", "1"], env)
    run_cli(["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", TRAINER, "-device", "cpu"], env)
    return {"raw": raw, "model": Path(env["nnUNet_results"]) / raw.name / f"{TRAINER}__nnUNetPlans__2d"}


@dataclass
class Case:
    """``setup(tmp, tiny, study) -> (argv, text the message must contain)``."""

    name: str
    setup: Callable[[Path, dict, dict], tuple[list[str], str]]
    status: int = 2


def _file(tmp: Path) -> Path:
    blocker = tmp / "a_file"
    blocker.write_text("not a folder")
    return blocker


def _one_image(tmp: Path, tiny: dict) -> Path:
    folder = tmp / "images"
    folder.mkdir(exist_ok=True)
    source = sorted((tiny["raw"] / "imagesTs").iterdir())[0]
    shutil.copy(source, folder / source.name)
    return folder / source.name


def _run(tiny: dict, images: Path, output: Path, *extra: str) -> list[str]:
    return ["run", "-i", str(images), "-o", str(output), "-m", str(tiny["model"]), "-f", "0", "-device", "cpu",
            "--disable_tta", "--no-progress", *extra]


def _write(path: Path, array: np.ndarray, like: Path | None = None, vector: bool = False) -> Path:
    image = sitk.GetImageFromArray(array, isVector=vector)
    if like is not None:
        image.CopyInformation(sitk.ReadImage(str(like)))
    sitk.WriteImage(image, str(path))
    return path


def run_step_size(tmp, tiny, study):
    return _run(tiny, _one_image(tmp, tiny).parent, tmp / "out", "-step_size", "0"), "-step_size 0"


def run_step_size_two(tmp, tiny, study):
    return _run(tiny, _one_image(tmp, tiny).parent, tmp / "out", "-step_size", "2"), "-step_size 2"


def run_config_sets_not_a_list(tmp, tiny, study):
    config = tmp / "conditions.json"
    config.write_text('{"sets": 5}')
    return _run(tiny, _one_image(tmp, tiny).parent, tmp / "out", "--config", str(config)), str(config)


def run_output_is_a_file(tmp, tiny, study):
    return _run(tiny, _one_image(tmp, tiny).parent, _file(tmp)), "a_file"


def run_nan_image(tmp, tiny, study):
    path = _one_image(tmp, tiny)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    array.flat[3] = np.nan
    _write(path, array, like=path)
    return _run(tiny, path.parent, tmp / "out"), path.name


def run_rgb_image(tmp, tiny, study):
    path = _one_image(tmp, tiny)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    _write(path, np.stack([array] * 3, axis=-1), vector=True)
    return _run(tiny, path.parent, tmp / "out"), path.name


def run_3d_image_to_2d_model(tmp, tiny, study):
    path = _one_image(tmp, tiny)
    _write(path, np.random.default_rng(0).random((8, 32, 32)).astype(np.float32))
    return _run(tiny, path.parent, tmp / "out"), path.name


def run_case_without_channel_0000(tmp, tiny, study):
    path = _one_image(tmp, tiny)
    path.rename(path.with_name(path.name.replace("_0000", "_0001")))
    return _run(tiny, path.parent, tmp / "out"), "_0000"


def run_truncated_gzip(tmp, tiny, study):
    path = _one_image(tmp, tiny)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.75)])
    return _run(tiny, path.parent, tmp / "out"), path.name


def _prediction_copy(tmp: Path, study: dict) -> Path:
    folder = tmp / "A"
    shutil.copytree(study["A"], folder)
    return folder


def _eval(study: dict, predictions: Path, output: Path) -> list[str]:
    return ["eval", "--model", f"A={predictions}", "-ref", str(study["reference"]), "-djfile",
            str(study["dataset_json"]), "-o", str(output)]


def eval_output_is_a_file(tmp, tiny, study):
    return _eval(study, study["A"], _file(tmp) / "evaluation"), "a_file"


def _first_prediction(folder: Path) -> Path:
    return sorted(folder.rglob("*.nii.gz"))[0]


def eval_nan_prediction(tmp, tiny, study):
    folder = _prediction_copy(tmp, study)
    path = _first_prediction(folder)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    array.flat[0] = np.nan
    _write(path, array, like=path)
    return _eval(study, folder, tmp / "evaluation"), path.name


def eval_prediction_on_another_grid(tmp, tiny, study):
    folder = _prediction_copy(tmp, study)
    path = _first_prediction(folder)
    image = sitk.ReadImage(str(path))
    image.SetOrigin(tuple(o + 5.0 for o in image.GetOrigin()))
    sitk.WriteImage(image, str(path))
    return _eval(study, folder, tmp / "evaluation"), "origin"


def eval_truncated_prediction(tmp, tiny, study):
    folder = _prediction_copy(tmp, study)
    path = _first_prediction(folder)
    with gzip.open(path, "rb") as stream:
        raw = stream.read()
    path.write_bytes(gzip.compress(raw)[: -20])
    return _eval(study, folder, tmp / "evaluation"), path.name


def complexity_output_in_a_file(tmp, tiny, study):
    return ["complexity", str(tiny["raw"]), "-o", str(_file(tmp) / "c.csv")], "a_file"


def make_dataset_output_is_a_file(tmp, tiny, study):
    return (["make-dataset", "textures", "-d", "555", "-o", str(_file(tmp)), "--shape", "16", "16", "--num-train", "1",
             "--num-test", "1"], "a_file")


def make_dataset_too_big(tmp, tiny, study):
    return (["make-dataset", "textures", "-d", "556", "-o", str(tmp / "raw"), "--shape", "100000", "100000", "1000",
             "--num-train", "1", "--num-test", "1"], "--shape 100000 100000 1000")


def corrupt_output_is_a_file(tmp, tiny, study):
    return (["corrupt", "-i", str(_one_image(tmp, tiny).parent), "-o", str(_file(tmp)), "--family", "gaussian_noise",
             "--severity", "1"], "a_file")


def corrupt_unknown_family(tmp, tiny, study):
    return (["corrupt", "-i", str(_one_image(tmp, tiny).parent), "-o", str(tmp / "c"), "--family", "gausian_noise",
             "--severity", "1"], "gausian_noise")


def calibrate_missing_probabilities(tmp, tiny, study):
    return (["calibrate", "-i", str(study["A"]), "-ref", str(study["reference"]), "-djfile",
             str(study["dataset_json"]), "-o", str(tmp / "calibrator.json")], str(study["A"]))


def plan_arch_escaping_plans_name(tmp, tiny, study):
    return ["plan-arch", "-d", str(DATASET_ID), "--arch", "noskip", "--plans-name", "../../escape"], "escape"


def study_gpu_scale_on_a_cpu(tmp, tiny, study):
    return ["study", "noise", "--scale", "gpu", "-o", str(tmp / "studies")], "--scale gpu"


def study_output_is_a_file(tmp, tiny, study):
    return ["study", "noise", "--scale", "smoke", "-o", str(_file(tmp))], "a_file"


CASES = [Case(f.__name__, f) for f in (
    run_step_size, run_step_size_two, run_config_sets_not_a_list, run_output_is_a_file, run_nan_image,
    run_rgb_image, run_3d_image_to_2d_model, run_case_without_channel_0000, run_truncated_gzip,
    eval_output_is_a_file, eval_nan_prediction, eval_prediction_on_another_grid, eval_truncated_prediction,
    complexity_output_in_a_file, make_dataset_output_is_a_file, make_dataset_too_big, corrupt_output_is_a_file,
    corrupt_unknown_family, calibrate_missing_probabilities, plan_arch_escaping_plans_name,
    study_gpu_scale_on_a_cpu, study_output_is_a_file)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_line_naming_the_problem(case, tmp_path, tiny, study, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tiny["raw"].parent))
    monkeypatch.setenv("nnUNet_preprocessed", str(tiny["model"].parents[2] / "nnUNet_preprocessed"))
    monkeypatch.setenv("nnUNet_results", str(tiny["model"].parents[1]))
    argv, named = case.setup(tmp_path, tiny, study)
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        status = exit_.code
    error = capsys.readouterr().err
    assert status == case.status, error
    lines = [line for line in error.splitlines() if line.startswith("nnunet-robust: error:")]
    assert len(lines) == 1, error
    assert named in lines[0], lines[0]
    assert "Traceback" not in error

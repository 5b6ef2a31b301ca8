"""The bad-input catalogue as a table: each row is one mistake a new user makes, the exit status it must
give, and the file or option its one-line message must name. No row may end in a traceback (an
exception escaping ``main`` fails the test) or leave outputs that look complete: every file that existed
before the command is byte-identical afterwards, and new files appear only under ``-o``.

Two tables: rows that need a model share the session's small trained 2D model (No-Skip, 100 iterations;
tests/helpers/nnunet_models.py); the rest (``ROWS``, most of issue #32's catalogue) use the shared prediction
study and a trust study with probabilities, and train nothing. A fuzz test at the end runs file-system
oddities and broken image headers through every verb that reads folders.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_robustness.cli import main
from tests.helpers.nnunet_models import BLOBS, KNOWN_GOOD_2D

# what no message may hold (#32 item 15): io.atomic_path's temporary names, a hidden stage, numpy's scalar repr
FAULTY_LINE = re.compile(r"\.tmp\b|\.staged-|\bnp\.\w+\(|array\(")


@pytest.fixture(scope="module")
def tiny(nnunet_models):
    """The session's shared 2D model (tests/helpers/nnunet_models.py): the rows need a model, not a particular one."""
    return {"raw": nnunet_models.dataset(2), "model": nnunet_models.model(2, KNOWN_GOOD_2D)}


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


def _with_odd_file(tmp: Path, tiny: dict, name: str) -> Path:
    path = _one_image(tmp, tiny)
    shutil.copy(path, path.with_name(name))
    return path.parent


def run_input_with_an_upper_case_ending(tmp, tiny, study):
    """(#32 item 6) the model's file ending is .nii.gz; run dropped the case with only a count line."""
    return _run(tiny, _with_odd_file(tmp, tiny, "other_0000.NII.GZ"), tmp / "out"), "other_0000.NII.GZ"


def run_input_with_a_png_among_nii_gz(tmp, tiny, study):
    return _run(tiny, _with_odd_file(tmp, tiny, "other_0000.png"), tmp / "out"), "other_0000.png"


def run_input_without_channel_number(tmp, tiny, study):
    return _run(tiny, _with_odd_file(tmp, tiny, "other.nii.gz"), tmp / "out"), "other.nii.gz"


def run_truncated_gzip(tmp, tiny, study):
    path = _one_image(tmp, tiny)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.75)])
    return _run(tiny, path.parent, tmp / "out"), path.name


def _damaged_model(tmp: Path, tiny: dict, damage: Callable[[Path], None]) -> Path:
    """A copy of the tiny model with one file damaged (the shared model stays whole)."""
    model = tmp / "model"
    shutil.copytree(tiny["model"], model)
    damage(model)
    return model


def _run_damaged(tmp: Path, tiny: dict, damage: Callable[[Path], None]) -> list[str]:
    return _run({**tiny, "model": _damaged_model(tmp, tiny, damage)}, _one_image(tmp, tiny).parent, tmp / "out")


def _edit_plans(model: Path, edit: Callable[[dict], None]) -> None:
    import json

    plans = json.loads((model / "plans.json").read_text())
    edit(plans["configurations"]["2d"]["architecture"]["arch_kwargs"])
    (model / "plans.json").write_text(json.dumps(plans))


def run_truncated_checkpoint(tmp, tiny, study):
    """(#32 item 12) a copy cut short: torch's 'PytorchStreamReader failed reading zip archive' traceback."""
    def damage(model):
        path = model / "fold_0" / "checkpoint_final.pth"
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 9 // 10])
    return _run_damaged(tmp, tiny, damage), "fold_0/checkpoint_final.pth: truncated or damaged checkpoint"


def run_checkpoint_with_a_damaged_byte(tmp, tiny, study):
    def damage(model):
        path = model / "fold_0" / "checkpoint_final.pth"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # inside the weights: only the entries' CRCs notice
        path.write_bytes(bytes(data))
    return _run_damaged(tmp, tiny, damage), "fold_0/checkpoint_final.pth: damaged checkpoint"


def run_invalid_plans_json(tmp, tiny, study):
    def damage(model):
        (model / "plans.json").write_text('{"configurations": {"2d": ')
    return _run_damaged(tmp, tiny, damage), "model/plans.json: not valid JSON"


def run_dataset_json_channels_disagree_with_the_checkpoint(tmp, tiny, study):
    def damage(model):
        import json

        dataset = json.loads((model / "dataset.json").read_text())
        dataset["channel_names"] = {"0": "T1", "1": "T2"}
        (model / "dataset.json").write_text(json.dumps(dataset))
    return _run_damaged(tmp, tiny, damage), "model/dataset.json: names 2 input channel(s) (T1, T2), but"


def run_wrong_input_channels_in_the_plans(tmp, tiny, study):
    """nnU-Net passes the channel count itself: a plans entry too made the network builder fail."""
    return (_run_damaged(tmp, tiny, lambda model: _edit_plans(model, lambda arch: arch.update(input_channels=3))),
            "model/plans.json: the network of configuration '2d' differs from the one")


def run_plans_network_other_than_the_checkpoint(tmp, tiny, study):
    """Weights that do not fit the network the plans build: forty lines of state_dict size mismatches."""
    def edit(arch):
        arch["features_per_stage"] = [2 * f for f in arch["features_per_stage"]]
    return (_run_damaged(tmp, tiny, lambda model: _edit_plans(model, edit)),
            "model/plans.json: the network of configuration '2d' differs from the one")


def run_he_stain_on_a_greyscale_model(tmp, tiny, study):
    """(#32 item 15) he_stain needs 3 channels: it failed at its first item, after run.json was written,
    naming no file (--force-modality only says the channels show another modality)."""
    return (_run(tiny, _one_image(tmp, tiny).parent, tmp / "out", "--conditions", "he_stain:1", "--force-modality"),
            "dataset.json: the model takes 1 channel(s)")


def eval_prediction_with_a_non_integer_value(tmp, tiny, study):
    """(#32 item 15) the message printed numpy's repr of the value (np.float32(0.5))."""
    folder = _prediction_copy(tmp, study)
    path = _first_prediction(folder)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    array.flat[0] = 0.5
    _write(path, array, like=path)
    return _eval(study, folder, tmp / "evaluation"), f"{path.name}: not a label map (non-integer value 0.5)"


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
    return ["plan-arch", "-d", str(BLOBS[2].dataset_id), "--arch", "noskip", "--plans-name", "../../escape"], "escape"


def study_gpu_scale_on_a_cpu(tmp, tiny, study):
    return ["study", "noise", "--scale", "gpu", "-o", str(tmp / "studies")], "--scale gpu"


def study_output_is_a_file(tmp, tiny, study):
    return ["study", "noise", "--scale", "smoke", "-o", str(_file(tmp))], "a_file"


CASES = [Case(f.__name__, f) for f in (
    run_step_size, run_step_size_two, run_config_sets_not_a_list, run_output_is_a_file, run_nan_image,
    run_rgb_image, run_3d_image_to_2d_model, run_case_without_channel_0000, run_truncated_gzip,
    run_input_with_an_upper_case_ending, run_input_with_a_png_among_nii_gz, run_input_without_channel_number,
    run_truncated_checkpoint, run_checkpoint_with_a_damaged_byte, run_invalid_plans_json,
    run_dataset_json_channels_disagree_with_the_checkpoint, run_wrong_input_channels_in_the_plans,
    run_plans_network_other_than_the_checkpoint,
    eval_output_is_a_file, eval_nan_prediction, eval_prediction_on_another_grid, eval_truncated_prediction,
    run_he_stain_on_a_greyscale_model, eval_prediction_with_a_non_integer_value,
    complexity_output_in_a_file, make_dataset_output_is_a_file, make_dataset_too_big, corrupt_output_is_a_file,
    corrupt_unknown_family, calibrate_missing_probabilities, plan_arch_escaping_plans_name,
    study_gpu_scale_on_a_cpu, study_output_is_a_file)]


def assert_one_line_error(error: str, status: int, expected: int, named: str, before, argv: list[str],
                          tmp_path: Path) -> None:
    """What every row of both tables must show: the expected exit code, one error line naming the problem, no
    traceback, no temporary name or numpy repr, and nothing changed outside the output."""
    assert status == expected, error
    lines = [line for line in error.splitlines() if line.startswith("nnunet-robust: error:")]
    assert len(lines) == 1, error
    assert named in lines[0], lines[0]
    assert "Traceback" not in error
    assert not FAULTY_LINE.search(lines[0]), lines[0]  # (#32 item 15) a temporary name or a numpy repr
    check_nothing_changed_outside_the_output(before, snapshot(tmp_path), tmp_path, _output_of(argv, tmp_path))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_line_naming_the_problem(case, tmp_path, tiny, study, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tiny["raw"].parent))
    monkeypatch.setenv("nnUNet_preprocessed", str(tiny["model"].parents[2] / "nnUNet_preprocessed"))
    monkeypatch.setenv("nnUNet_results", str(tiny["model"].parents[1]))
    argv, named = case.setup(tmp_path, tiny, study)
    before = snapshot(tmp_path)
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        status = exit_.code
    assert_one_line_error(capsys.readouterr().err, status, case.status, named, before, argv, tmp_path)


# --- rows that need no trained model ---------------------------------------------------------------------
# Each row's setup gets ``tmp`` (nnUNet_raw/_preprocessed/_results point inside it) and ``fx``, which
# gives the shared fixtures by name (``fx("study")``, ``fx("trust")``), built only for rows that ask.
# Besides the one-line message, the harness checks that every file under ``tmp`` (the copied inputs,
# earlier outputs, files outside the folders) is byte-identical afterwards, and that new files appear
# only under ``-o``.


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    """calibrate/rate inputs without a model: two fold folders with probabilities, a calibrator, and an
    earlier successful ``rate --save-masks`` output to be kept whole."""
    from tests.trust.synthetic import write_prediction_study

    root = tmp_path_factory.mktemp("bad_inputs_trust")
    cal = write_prediction_study(root / "cal", 20, [("clean", 0.0)], n_folds=2, seed=0, prefix="cal")
    test = write_prediction_study(root / "test", 6, [("clean", 0.0), ("noise_sev2", 1.5)], n_folds=2, seed=1,
                                  prefix="test")
    calibrator = root / "calibrator.json"
    assert main(["calibrate", *_folds(cal["folds"]), "-ref", str(cal["labels"]), "-djfile", str(cal["dataset_json"]),
                 "-o", str(calibrator), "--alpha", "0.2"]) == 0
    rated = root / "rated"
    assert main(_rate(calibrator, test, rated, "--save-masks")) == 0
    return {"calibrator": calibrator, "test": test, "rated": rated}


def _folds(folders) -> list[str]:
    return [a for f in folders for a in ("-i", str(f))]


def _rate(calibrator: Path, test: dict, output: Path, *extra: str, folds=None) -> list[str]:
    return ["rate", "-c", str(calibrator), *_folds(folds or test["folds"]), "-djfile", str(test["dataset_json"]),
            "-ref", str(test["labels"]), "-o", str(output), *extra]


def _study_copy(tmp: Path, study: dict) -> dict:
    """A writable copy of the shared prediction study (models A and B, labelsTs, dataset.json)."""
    for name in ("A", "B"):
        shutil.copytree(study[name], tmp / name)
    shutil.copytree(study["reference"], tmp / "labelsTs")
    shutil.copy(study["dataset_json"], tmp / "dataset.json")
    return {"A": tmp / "A", "B": tmp / "B", "reference": tmp / "labelsTs", "dataset_json": tmp / "dataset.json"}


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    import json

    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _rename_condition(copy: dict, new_name: str) -> None:
    def edit(data):
        data["conditions"][1]["name"] = new_name
    _edit_json(copy["A"] / "run.json", edit)


def eval_condition_name_leaves_the_model_folder(tmp, fx):
    """(#32 item 1) run.json's condition names become folders: ``../B/noise_sev1`` read model B's predictions."""
    copy = _study_copy(tmp, fx("study"))
    _rename_condition(copy, "../B/noise_sev1")
    return _eval(copy, copy["A"], tmp / "evaluation"), "run.json"


def eval_condition_name_is_an_absolute_path(tmp, fx):
    copy = _study_copy(tmp, fx("study"))
    _rename_condition(copy, str(copy["B"] / "noise_sev1"))
    return _eval(copy, copy["A"], tmp / "evaluation"), "run.json"


def eval_case_name_leaves_the_condition_folder(tmp, fx):
    copy = _study_copy(tmp, fx("study"))

    def edit(data):
        data["cases"][0] = "../../B/clean/" + data["cases"][0]
    _edit_json(copy["A"] / "run.json", edit)
    return _eval(copy, copy["A"], tmp / "evaluation"), "run.json: case name"


def _preprocessed(tmp: Path) -> Path:
    """A preprocessed dataset with real plans, and a plans file outside nnUNet_preprocessed that an
    escaping -p would read and rewrite."""
    import json

    from tests.helpers.plans import default_plans

    folder = tmp / "nnUNet_preprocessed" / "Dataset901_Bad"
    folder.mkdir(parents=True)
    (folder / "nnUNetPlans.json").write_text(json.dumps(default_plans()))
    (tmp / "outside.json").write_text(json.dumps(default_plans()))
    return folder


def plan_context_escaping_plans_name(tmp, fx):
    """(#32 item 2) ``-p ../../outside`` read and rewrote tmp/outside.json (with a backup beside it)."""
    _preprocessed(tmp)
    return ["plan-context", "-d", "901", "-c", "2d", "--scales", "0.5", "-p", "../../outside"], "-p ../../outside"


def plan_context_absolute_plans_name(tmp, fx):
    _preprocessed(tmp)
    return (["plan-context", "-d", "901", "-c", "2d", "--scales", "0.5", "-p", str(tmp / "outside")],
            f"-p {tmp / 'outside'}")


def plan_arch_escaping_source_plans(tmp, fx):
    _preprocessed(tmp)
    return ["plan-arch", "-d", "901", "--arch", "noskip", "-p", "../../outside"], "-p ../../outside"


def plan_context_escaping_dataset_name(tmp, fx):
    """nnU-Net passes a name that starts with "Dataset" through unchanged."""
    _preprocessed(tmp)
    (tmp / "Dataset_x").mkdir()
    (tmp / "Dataset_x" / "nnUNetPlans.json").write_text((tmp / "outside.json").read_text())
    return ["plan-context", "-d", "Dataset901_Bad/../../Dataset_x", "-c", "2d", "--scales", "0.5"], "-d Dataset901"


def run_escaping_trainer_name(tmp, fx):
    return (["run", "-i", str(tmp), "-o", str(tmp / "out"), "-d", "Dataset901_Bad", "-c", "2d", "-tr", "../../x",
             "-device", "cpu"], "-tr ../../x")


def rate_failing_rerun_keeps_the_earlier_outputs(tmp, fx):
    """(#32 item 3) rate deleted ratings.csv, coverage.csv, summary.json and report.html before failing."""
    trust = fx("trust")
    shutil.copytree(trust["rated"], tmp / "rated")
    broken = tmp / "fold0"
    shutil.copytree(trust["test"]["folds"][0], broken)
    npz = broken / "noise_sev2" / "test_003.npz"
    npz.write_bytes(npz.read_bytes()[:-40])  # found by the up-front listing, fails only when read
    folds = [broken, trust["test"]["folds"][1]]
    return _rate(trust["calibrator"], trust["test"], tmp / "rated", "--save-masks", folds=folds), "test_003.npz"


def rate_output_is_a_prediction_folder(tmp, fx):
    """(#32 item 5)"""
    trust = fx("trust")
    folds = [tmp / "fold0", tmp / "fold1"]
    for source, target in zip(trust["test"]["folds"], folds):
        shutil.copytree(source, target)
    return _rate(trust["calibrator"], trust["test"], folds[0] / "clean", folds=folds), "prediction folder 1"


def rate_over_a_foreign_ratings_csv(tmp, fx):
    trust = fx("trust")
    (tmp / "out").mkdir()
    (tmp / "out" / "ratings.csv").write_text("patient,grade\n1,good\n")
    return _rate(trust["calibrator"], trust["test"], tmp / "out"), "ratings.csv"


def rate_over_a_foreign_report(tmp, fx):
    trust = fx("trust")
    (tmp / "out").mkdir()
    (tmp / "out" / "report.html").write_text("<html><body>my own notes</body></html>")
    return _rate(trust["calibrator"], trust["test"], tmp / "out"), "report.html"


def eval_output_is_the_reference_folder(tmp, fx):
    copy = _study_copy(tmp, fx("study"))
    return _eval(copy, copy["A"], copy["reference"]), "reference folder"


def eval_over_a_foreign_report(tmp, fx):
    copy = _study_copy(tmp, fx("study"))
    (tmp / "evaluation").mkdir()
    (tmp / "evaluation" / "report.html").write_text("<html><body>my own notes</body></html>")
    return _eval(copy, copy["A"], tmp / "evaluation"), "report.html"


def _model_folder(tmp: Path) -> Path:
    """A folder that -m accepts as far as the output check: the check runs before the model is read."""
    (tmp / "model" / "fold_0").mkdir(parents=True)
    (tmp / "imagesTs").mkdir()
    return tmp / "model"


def _run_without_model(tmp: Path, output: Path, *extra: str) -> list[str]:
    return ["run", "-i", str(tmp / "imagesTs"), "-o", str(output), "-m", str(tmp / "model"), "-f", "0",
            "-device", "cpu", *extra]


def run_output_is_the_input_folder(tmp, fx):
    _model_folder(tmp)
    return _run_without_model(tmp, tmp / "imagesTs"), "input folder"


def run_output_is_a_fold_folder(tmp, fx):
    model = _model_folder(tmp)
    return _run_without_model(tmp, model / "fold_0"), "is inside the model folder"


def run_output_is_the_reference_folder(tmp, fx):
    _model_folder(tmp)
    (tmp / "labelsTs").mkdir()
    return _run_without_model(tmp, tmp / "labelsTs", "--reference", str(tmp / "labelsTs")), "reference folder"


def _folds_missing_a_case(tmp: Path, fx, condition: str) -> list[Path]:
    """Copies of the trust study's fold folders where one condition lacks case test_002 (run.json lists it)."""
    folds = [tmp / "fold0", tmp / "fold1"]
    for source, target in zip(fx("trust")["test"]["folds"], folds):
        shutil.copytree(source, target)
        for ending in (".nii.gz", ".npz"):
            (target / condition / f"test_002{ending}").unlink()
    return folds


def rate_case_missing_from_one_condition(tmp, fx):
    """(#32 item 7) rate rated that condition on the cases it had; eval refuses such a folder."""
    trust = fx("trust")
    folds = _folds_missing_a_case(tmp, fx, "noise_sev2")
    return _rate(trust["calibrator"], trust["test"], tmp / "out", folds=folds), "noise_sev2/test_002.nii.gz: missing"


def calibrate_case_missing_from_one_condition(tmp, fx):
    test = fx("trust")["test"]
    folds = _folds_missing_a_case(tmp, fx, "clean")
    return (["calibrate", *_folds(folds), "-ref", str(test["labels"]), "-djfile", str(test["dataset_json"]),
             "-o", str(tmp / "calibrator.json")], "clean/test_002.nii.gz: missing")


def _images_with(tmp: Path, fx, name: str) -> Path:
    """An imagesTs-style folder (the shared study's reference maps serve as images) plus one odd file."""
    folder = tmp / "images"
    folder.mkdir()
    for source in sorted(fx("study")["reference"].iterdir())[:2]:
        shutil.copy(source, folder / source.name.replace(".nii.gz", "_0000.nii.gz"))
    shutil.copy(sorted(folder.iterdir())[0], folder / name)
    return folder


def _corrupt(images: Path, output: Path) -> list[str]:
    return ["corrupt", "-i", str(images), "-o", str(output), "--family", "gaussian_noise", "--severity", "1"]


def corrupt_input_without_channel_number(tmp, fx):
    """(#32 item 6) files run and corrupt cannot use are named, never dropped with only a count to hint at it."""
    return _corrupt(_images_with(tmp, fx, "case_009.nii.gz"), tmp / "c"), "case_009.nii.gz: not an image named"


def corrupt_input_with_a_line_break_in_a_name(tmp, fx):
    return _corrupt(_images_with(tmp, fx, "case\n_009_0000.nii.gz"), tmp / "c"), "line break"


def corrupt_input_with_a_png_among_nii_gz(tmp, fx):
    return _corrupt(_images_with(tmp, fx, "case_009_0000.png"), tmp / "c"), "case_009_0000.png"


def corrupt_input_with_an_upper_case_ending(tmp, fx):
    return _corrupt(_images_with(tmp, fx, "case_009_0000.NII.GZ"), tmp / "c"), "case_009_0000.NII.GZ"


def corrupt_he_stain_on_a_greyscale_folder(tmp, fx):
    """(#32 item 15) refused before anything is written, naming an input file (it failed after writing
    every family before it, naming none)."""
    images = _images_with(tmp, fx, "case_009_0000.nii.gz")
    return (["corrupt", "-i", str(images), "-o", str(tmp / "c"), "--family", "gaussian_noise", "he_stain",
             "--severity", "1"], f"{images}/case_000_0000.nii.gz: 1 channel(s); he_stain needs 3 channels")


def corrupt_nan_image(tmp, fx):
    """(#31) corrupt reads a case with run's reader, so it refuses NaN/Inf voxels as run does (it checked only
    the first file of the folder and wrote the others' NaN into every corrupted copy)."""
    images = _images_with(tmp, fx, "case_009_0000.nii.gz")
    path = sorted(images.iterdir())[1]  # not the first file, which was the only one checked
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    array.flat[3] = np.nan
    _write(path, array, like=path)
    return _corrupt(images, tmp / "c"), f"{path.name}: contains NaN or Inf"


def corrupt_rgb_image(tmp, fx):
    """(#31) a multi-component (RGB) file where nnU-Net takes one channel per file, refused as run refuses it."""
    images = _images_with(tmp, fx, "case_009_0000.nii.gz")
    path = sorted(images.iterdir())[1]
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    _write(path, np.stack([array] * 3, axis=-1), vector=True)
    return _corrupt(images, tmp / "c"), f"{path.name} has"


def run_num_parts_without_part_id(tmp, fx):
    """(#32 item 8) every process of the sharded run ran shard 0."""
    _model_folder(tmp)
    return _run_without_model(tmp, tmp / "out", "--num-parts", "2"), "--num-parts 2 needs --part-id"


def recommend_nan_severity(tmp, fx):
    return (["recommend", "--evidence", f"{tmp / 'eval'}={tmp / 'c.csv'}", "--condition", "gaussian_noise:nan",
             "-o", str(tmp / "r.json")], "gaussian_noise:nan")


def rate_nan_band(tmp, fx):
    trust = fx("trust")
    return _rate(trust["calibrator"], trust["test"], tmp / "out", "--bands", "A=nan,B=0"), "--bands"


def calibrate_nan_band(tmp, fx):
    test = fx("trust")["test"]
    return (["calibrate", *_folds(test["folds"]), "-ref", str(test["labels"]), "-djfile", str(test["dataset_json"]),
             "-o", str(tmp / "calibrator.json"), "--bands", "A=0.8,B=nan,C=0"], "--bands")


def plan_arch_skip_level_the_network_lacks(tmp, fx):
    """plan-arch wrote plans whose network could not be built (found only when training starts)."""
    _preprocessed(tmp)
    return ["plan-arch", "-d", "901", "--arch", "unet", "--skip-levels", "99"], "--skip-levels 99"


def _negative_seed(verb_argv: Callable[[Path, Callable], list[str]]):
    def setup(tmp, fx):
        return [*verb_argv(tmp, fx), "--seed", "-1"], "--seed -1"
    return setup


NEGATIVE_SEED = {  # (#32 item 13) a traceback in eval, calibrate, recommend; accepted by run and corrupt
    "eval": lambda tmp, fx: _eval(_study_copy(tmp, fx("study")), tmp / "A", tmp / "evaluation"),
    "calibrate": lambda tmp, fx: ["calibrate", *_folds(fx("trust")["test"]["folds"]), "-ref",
                                  str(fx("trust")["test"]["labels"]), "-djfile",
                                  str(fx("trust")["test"]["dataset_json"]), "-o", str(tmp / "c.json")],
    "recommend": lambda tmp, fx: ["recommend", "--evidence", f"{tmp / 'eval'}={tmp / 'c.csv'}", "-o",
                                  str(tmp / "r.json")],
    "run": lambda tmp, fx: (_model_folder(tmp), _run_without_model(tmp, tmp / "out"))[1],
    "corrupt": lambda tmp, fx: _corrupt(_images_with(tmp, fx, "case_000_0001.nii.gz"), tmp / "c"),
    "make-dataset": lambda tmp, fx: ["make-dataset", "textures", "-d", "557", "-o", str(tmp / "raw"), "--shape", "16",
                                     "16", "--num-train", "1", "--num-test", "1"],
}


def study_cuda_without_cuda(tmp, fx):
    """(#32 item 14) on a machine without CUDA, checked before the study starts (as run checks it)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    return ["study", "noise", "--scale", "smoke", "-device", "cuda", "-o", str(tmp / "studies")], "-device cuda"


ROWS = [Case(f"{verb}_negative_seed", _negative_seed(argv)) for verb, argv in NEGATIVE_SEED.items()] + [
    Case(f.__name__, f) for f in (
    study_cuda_without_cuda, run_num_parts_without_part_id, recommend_nan_severity, rate_nan_band, calibrate_nan_band,
    plan_arch_skip_level_the_network_lacks,
    rate_case_missing_from_one_condition, calibrate_case_missing_from_one_condition,
    corrupt_he_stain_on_a_greyscale_folder, corrupt_nan_image, corrupt_rgb_image,
    corrupt_input_without_channel_number, corrupt_input_with_a_line_break_in_a_name,
    corrupt_input_with_a_png_among_nii_gz, corrupt_input_with_an_upper_case_ending,
    eval_condition_name_leaves_the_model_folder, eval_condition_name_is_an_absolute_path,
    eval_case_name_leaves_the_condition_folder, plan_context_escaping_plans_name, plan_context_absolute_plans_name,
    plan_arch_escaping_source_plans, plan_context_escaping_dataset_name, run_escaping_trainer_name,
    rate_failing_rerun_keeps_the_earlier_outputs, rate_output_is_a_prediction_folder, rate_over_a_foreign_ratings_csv,
    rate_over_a_foreign_report, eval_output_is_the_reference_folder, eval_over_a_foreign_report,
    run_output_is_the_input_folder, run_output_is_a_fold_folder, run_output_is_the_reference_folder)]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file and link under ``root`` (links not followed) -> its content (or link target)."""
    import os

    found = {}
    for folder, folders, files in os.walk(root):
        for name in files + [d for d in folders if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = (b"link:" + os.readlink(path).encode() if os.path.islink(path)
                                                  else Path(path).read_bytes())
    return found


def _output_of(argv: list[str], root: Path) -> Path | None:
    for flag in ("-o", "--output"):
        if flag in argv:
            return Path(argv[argv.index(flag) + 1]).resolve()
    return None


def check_nothing_changed_outside_the_output(before: dict[str, bytes], after: dict[str, bytes], root: Path,
                                             output: Path | None) -> None:
    changed = sorted(path for path, content in before.items() if after.get(path) != content)
    assert not changed, f"earlier files changed or removed: {changed[:5]}"
    new = sorted(set(after) - set(before))
    outside = [p for p in new if output is None or output not in (root / p).resolve().parents]
    assert not outside, f"written outside -o {output}: {outside[:5]}"


def _main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        return exit_.code


@pytest.mark.parametrize("case", ROWS, ids=[c.name for c in ROWS])
def test_bad_input_without_a_model(case, tmp_path, capsys, monkeypatch, request):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir(exist_ok=True)
        monkeypatch.setenv(name, str(tmp_path / name))
    argv, named = case.setup(tmp_path, lambda name: request.getfixturevalue(name))
    capsys.readouterr()
    before = snapshot(tmp_path)
    status = _main(argv)
    assert_one_line_error(capsys.readouterr().err, status, case.status, named, before, argv, tmp_path)


# --- outputs replaced as one set (#32 items 3, 4) and CSV cells that are no formulas -----------------------

def test_eval_replaces_its_outputs_as_one_set_and_removes_abandoned_stages(tmp_path, study):
    """--no-report after a run with a report leaves no stale report.html beside the new tables; a stage
    that a SIGTERM'd eval left is removed by the next eval, a stage of a running one is kept."""
    from nnunet_robustness.io import _lock_stage

    copy = _study_copy(tmp_path, study)
    output = tmp_path / "evaluation"
    assert main(_eval(copy, copy["A"], output)) == 0
    assert (output / "report.html").is_file()
    abandoned = output / ".staged-killed"
    abandoned.mkdir()
    (abandoned / ".lock").touch()  # its lock died with its process
    (abandoned / "per_case.csv").write_text("half")
    running = output / ".staged-running"
    running.mkdir()
    lock = _lock_stage(running)
    try:
        assert main([*_eval(copy, copy["A"], output), "--no-report"]) == 0
        assert not (output / "report.html").exists()
        assert not abandoned.exists() and running.is_dir()
    finally:
        lock.close()
    assert sorted(p.name for p in output.iterdir() if not p.name.startswith(".")) == [
        "per_case.csv", "per_case.parquet", "summary.json"]


def test_rate_replaces_its_outputs_as_one_set(tmp_path, trust):
    """Masks of an earlier --save-masks run over other conditions never mix with this run's; the mask
    paths in ratings.csv name the final folder, not the staging folder."""
    import pandas as pd

    output = tmp_path / "rated"
    shutil.copytree(trust["rated"], output)
    assert (output / "safe_masks" / "clean").is_dir()
    assert main(_rate(trust["calibrator"], trust["test"], output, "--save-masks", "--condition", "noise_sev2")) == 0
    assert sorted(p.name for p in (output / "safe_masks").iterdir()) == ["noise_sev2"]
    ratings = pd.read_csv(output / "ratings.csv")
    assert all(Path(f).is_file() and output in Path(f).parents for f in ratings["safe_mask_file"])
    assert main(_rate(trust["calibrator"], trust["test"], output)) == 0  # without --save-masks: no stale masks
    assert not (output / "safe_masks").exists() and not (output / "ensemble").exists()
    assert not list(output.glob(".staged-*"))


def test_names_that_start_like_a_formula_are_neutralised_in_csv(tmp_path, study):
    """A model name from --model or a case name from a file name must not run as a spreadsheet formula."""
    import pandas as pd

    from nnunet_robustness.analysis.recommend import read_per_case_table

    copy = _study_copy(tmp_path, study)
    output = tmp_path / "evaluation"
    model = "@SUM(1+1)*cmd"  # ("=" cannot start a --model NAME=FOLDER; @, + and - can)
    assert main(["eval", "--model", f"{model}={copy['A']}", "-ref", str(copy["reference"]), "-djfile",
                 str(copy["dataset_json"]), "-o", str(output), "--no-report"]) == 0
    text = (output / "per_case.csv").read_text()
    assert "'@SUM" in text and ",@SUM" not in text and '"@SUM' not in text
    assert set(pd.read_parquet(output / "per_case.parquet")["model"]) == {model}  # the parquet keeps the name
    table, _ = read_per_case_table(output / "per_case.csv")  # and our reader of the CSV gets it back
    assert set(table["model"]) == {model}


# --- no room to write (#32 item 11): a file-size limit stands for a full disk --------------------------------
# A subprocess under RLIMIT_FSIZE with SIGXFSZ ignored, so that a write beyond the limit fails with EFBIG
# (as a full disk fails with ENOSPC) instead of killing the process. Each verb first writes a complete
# output; the re-run under the limit must fail in one line naming a file under -o (not a temporary or
# staged name), leave every earlier file byte-identical and no temporary file behind.

_UNDER_A_FILE_SIZE_LIMIT = """import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from nnunet_robustness.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_with_file_size_limit(argv: list[str], limit: int):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", _UNDER_A_FILE_SIZE_LIMIT, str(limit), *argv], capture_output=True,
                          text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=600)


def _largest_file(folder: Path) -> int:
    return max(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _no_room_eval(tmp, fx):
    copy = _study_copy(tmp, fx("study"))
    argv = [*_eval(copy, copy["A"], tmp / "out"), "--n-bootstrap", "20"]
    assert main(argv) == 0
    return argv, _largest_file(tmp / "out") - 1  # the largest output (the report, written last) does not fit


def _no_room_rate(tmp, fx):
    trust = fx("trust")
    shutil.copytree(trust["rated"], tmp / "out")  # an earlier rate --save-masks output
    return _rate(trust["calibrator"], trust["test"], tmp / "out", "--save-masks"), _largest_file(tmp / "out") - 1


def _no_room_calibrate(tmp, fx):
    shutil.copy(fx("trust")["calibrator"], tmp / "calibrator.json")
    cal = fx("trust")["test"]
    argv = ["calibrate", *_folds(cal["folds"]), "-ref", str(cal["labels"]), "-djfile", str(cal["dataset_json"]),
            "-o", str(tmp / "calibrator.json")]
    return argv, (tmp / "calibrator.json").stat().st_size // 2


def _no_room_recommend(tmp, fx):
    from tests.helpers.evidence import write_study as write_evidence

    eval_folder, complexity_csv = write_evidence(tmp / "eval", cases_per_group=10)
    argv = ["recommend", "--evidence", f"{eval_folder}={complexity_csv}", "-o", str(tmp / "out" / "r.json")]
    assert main(argv) == 0
    return argv, (tmp / "out" / "r.json").stat().st_size // 2


def _no_room_make_dataset(tmp, fx):
    def argv(dataset_id):
        return ["make-dataset", "textures", "-d", str(dataset_id), "-o", str(tmp / "out"), "--shape", "48", "48",
                "--num-train", "1", "--num-test", "1", "--alpha", "0.5"]
    assert main(argv(558)) == 0  # an earlier dataset in the same folder stays whole
    images = [p.stat().st_size for p in (tmp / "out").rglob("*_0000.nii.gz")]
    return argv(559), min(images) - 1  # its images do not fit


def _no_room_run(tmp, fx):
    tiny = fx("tiny")
    images = tmp / "images"
    shutil.copytree(tiny["raw"] / "imagesTs", images)
    argv = _run(tiny, images, tmp / "out", "--save-probabilities")
    assert main(argv) == 0
    case = sorted((tmp / "out" / "clean").glob("*.nii.gz"))[0].name[: -len(".nii.gz")]
    for path in (tmp / "out" / "clean").glob(f"{case}.*"):
        path.unlink()  # the resumed run predicts this case again: run.json fits, its probabilities do not
    limit = max(p.stat().st_size for p in (tmp / "out").rglob("*") if p.suffix in (".json", ".gz")) + 64
    assert limit < _largest_file(tmp / "out")
    return argv, limit


NO_ROOM = {"run": _no_room_run, "eval": _no_room_eval, "rate": _no_room_rate, "calibrate": _no_room_calibrate,
           "recommend": _no_room_recommend, "make-dataset": _no_room_make_dataset}


@pytest.mark.parametrize("verb", NO_ROOM)
def test_no_room_to_write_gives_one_line_naming_the_file(verb, tmp_path, request, monkeypatch, capsys):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    argv, limit = NO_ROOM[verb](tmp_path, lambda name: request.getfixturevalue(name))
    capsys.readouterr()
    before = snapshot(tmp_path)
    done = _run_with_file_size_limit(argv, limit)
    lines = [line for line in done.stderr.splitlines() if line.startswith("nnunet-robust: error:")]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    output = _output_of(argv, tmp_path)
    named = lines[0].split(": ")[2]
    assert "File too large" in lines[0] and (Path(named) == output or output in Path(named).parents), lines[0]
    assert ".tmp" not in named and ".staged" not in named, lines[0]
    check_nothing_changed_outside_the_output(before, snapshot(tmp_path), tmp_path, output)
    new = set(snapshot(tmp_path)) - set(before)
    assert all("/." not in f"/{path}" for path in new), f"temporary files left: {sorted(new)[:5]}"
    if verb == "make-dataset":  # the interrupted generation is finished by the next run, as after a kill
        assert main(argv) == 0 and (output / "Dataset559_Textures" / "dataset.json").is_file()


# --- one line, final names (#32 item 15) ---------------------------------------------------------------------

def test_corrupt_family_all_leaves_out_families_a_greyscale_folder_cannot_take(tmp_path, study):
    """--family all on a greyscale folder stopped at he_stain after writing every family before it; now it
    leaves he_stain out with one warning naming an input file, and writes every other family."""
    from nnunet_robustness.corruptions import CORRUPTIONS

    images = tmp_path / "images"
    images.mkdir()
    source = sorted(study["reference"].iterdir())[0]
    shutil.copy(source, images / source.name.replace(".nii.gz", "_0000.nii.gz"))
    output = tmp_path / "c"
    with pytest.warns(UserWarning, match=r"case_000_0000\.nii\.gz: 1 channel\(s\); he_stain needs 3 .*leaves he_stain out"):
        assert main(["corrupt", "-i", str(images), "-o", str(output), "-l", str(study["reference"]), "--family", "all",
                     "--severity", "1"]) == 0
    assert sorted(p.name for p in output.iterdir()) == sorted(set(CORRUPTIONS) - {"he_stain"})
    assert all(len(list((output / family / "1").glob("*.nii.gz"))) == 1 for family in set(CORRUPTIONS) - {"he_stain"})


def test_messages_name_the_final_file_in_one_line():
    from nnunet_robustness.cli import one_line

    assert one_line("/o/clean/.case_001.k3j_a9Zq.tmp.nii.gz: x") == "/o/clean/case_001.nii.gz: x"
    assert one_line("/o/.staged-ab12_xYz/report.html: x") == "/o/report.html: x"
    assert one_line("value np.float32(0.5), np.int64(3)\n  and a library's\n\nsecond line") == \
        "value 0.5, 3; and a library's; second line"


# --- region-based datasets (#32 item 10): a supported nnU-Net feature, evaluated with a report -----------

def test_eval_with_a_report_on_a_region_based_dataset(tmp_path):
    """``"whole": [1, 2]`` ended in a ValueError in the report's pictures (int("(1, 2)")); only --no-report
    worked. A region is scored and drawn as the voxels holding any of its labels."""
    import pandas as pd

    from tests.helpers.prediction_folders import add_views, write_dataset_json, write_study

    folders = write_study(tmp_path, n_cases=3, models=("A",))
    dataset_json = write_dataset_json(tmp_path / "dataset.json", {"background": 0, "whole": [1, 2], "core": 2},
                                      regions_class_order=[1, 2])
    add_views(folders["A"])  # pictures are drawn only for items with the views run writes
    output = tmp_path / "evaluation"
    argv = ["eval", "--model", f"A={folders['A']}", "-ref", str(tmp_path / "labelsTs"), "-djfile", str(dataset_json),
            "-o", str(output), "--n-bootstrap", "20"]
    assert main(argv) == 0
    html = (output / "report.html").read_text()
    assert "have no view" not in html and html.count("/ whole, Dice") + html.count("/ core, Dice") >= 3
    per_case = pd.read_csv(output / "per_case.csv")
    assert set(zip(per_case["label"], per_case["label_value"])) == {("whole", "(1, 2)"), ("core", "2")}
    row = per_case[(per_case["label"] == "whole") & (per_case["condition"] == "noise_sev2")].iloc[0]
    reference, predicted = (sitk.GetArrayFromImage(sitk.ReadImage(row[f])) > 0  # labels 1 and 2: the region
                            for f in ("reference_file", "prediction_file"))
    dice = 2 * (reference & predicted).sum() / (reference.sum() + predicted.sum())
    assert row["dice"] == pytest.approx(dice)


def test_the_pictures_draw_a_region_as_the_union_of_its_labels(tmp_path):
    from nnunet_robustness.reports.pictures import _labels, structure_values

    path = tmp_path / "label.nii.gz"
    array = np.array([[0, 1, 2, 3]], dtype=np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    assert structure_values("(1, 2)") == (1, 2) and structure_values("3") == (3,)
    assert _labels(str(path), structure_values("(1, 2)")).tolist() == [[False, True, True, False]]
    assert _labels(str(path), structure_values("3")).tolist() == [[False, False, False, True]]


# --- fuzz: file-system oddities and image headers on every verb that reads folders ------------------------
# Not a catalogue of known mistakes but whatever a folder can hold: links that loop or point outside,
# folders and empty files named like images, names that are not UTF-8, broken or odd NIfTI headers. Each
# verb must either succeed or give one line (status 2); never a traceback, never a write outside -o.
# (run reads its input folder with corrupt's rule, runner.cases.list_cases; it needs a model, so corrupt
# stands for it here; recommend reads eval's outputs, not image folders.)

def _nifti_bytes(shape: tuple[int, ...], dtype=np.uint8) -> bytes:
    """A gzipped NIfTI-1 file of ``shape`` (1 to 7 dimensions, zeros allowed) written by nibabel."""
    import nibabel

    image = nibabel.Nifti1Image(np.zeros(shape, dtype=dtype), np.eye(4))
    return gzip.compress(image.to_bytes())


def _odd_header(data: bytes, offset: int, value: bytes) -> bytes:
    raw = bytearray(gzip.decompress(data))
    raw[offset:offset + len(value)] = value
    return gzip.compress(bytes(raw))


ODDITIES: dict[str, Callable[[Path, str, Path], None]] = {
    # (folder, an existing image's name, a folder outside everything) -> put the oddity into folder
    "link_loop": lambda folder, name, outside: (folder / "loop_0000.nii.gz").symlink_to("loop_0000.nii.gz"),
    "dangling_link": lambda folder, name, outside: (folder / name).unlink() or (folder / name).symlink_to(
        outside / "gone.nii.gz"),
    "link_to_outside_folder": lambda folder, name, outside: (folder / "zzz").symlink_to(outside, True),
    "folder_named_like_an_image": lambda folder, name, outside: (folder / name.replace("00", "99", 1)).mkdir(),
    "empty_file": lambda folder, name, outside: (folder / name).write_bytes(b""),
    "random_bytes_gzipped": lambda folder, name, outside: (folder / name).write_bytes(
        gzip.compress(np.random.default_rng(0).bytes(400))),
    "not_gzip": lambda folder, name, outside: (folder / name).write_bytes(b"\x00" * 400),
    "non_utf8_name": lambda folder, name, outside: (folder / os.fsdecode(b"\xff\xfe_0000.nii.gz")).write_bytes(
        (folder / name).read_bytes()),
    "four_dimensional": lambda folder, name, outside: (folder / name).write_bytes(_nifti_bytes((8, 8, 2, 2))),
    "one_dimensional": lambda folder, name, outside: (folder / name).write_bytes(_nifti_bytes((16,))),
    "zero_sized_axis": lambda folder, name, outside: (folder / name).write_bytes(_nifti_bytes((8, 0, 8))),
    "negative_dimension_in_header": lambda folder, name, outside: (folder / name).write_bytes(
        _odd_header(_nifti_bytes((8, 8, 8)), 42, np.int16(-8).tobytes())),  # dim[1]
    "zero_spacing_in_header": lambda folder, name, outside: (folder / name).write_bytes(
        _odd_header(_nifti_bytes((8, 8, 8)), 80, np.float32(0).tobytes())),  # pixdim[1]
    "float64_nan_free_label": lambda folder, name, outside: (folder / name).write_bytes(
        _nifti_bytes((8, 8, 8), np.float64)),
}

def _fuzz_eval(tmp, fx) -> tuple[list[str], Path]:
    copy = _study_copy(tmp, fx("study"))
    return [*_eval(copy, copy["A"], tmp / "out"), "--n-bootstrap", "20", "--no-report"], copy["A"] / "noise_sev1"


def _fuzz_eval_reference(tmp, fx) -> tuple[list[str], Path]:
    copy = _study_copy(tmp, fx("study"))
    return [*_eval(copy, copy["A"], tmp / "out"), "--n-bootstrap", "20", "--no-report"], copy["reference"]


def _fuzz_corrupt(tmp, fx) -> tuple[list[str], Path]:
    images = _images_with(tmp, fx, "case_000_0001.nii.gz")
    (images / "case_000_0001.nii.gz").unlink()
    return _corrupt(images, tmp / "out"), images


def _fuzz_rate(tmp, fx) -> tuple[list[str], Path]:
    trust = fx("trust")
    folds = [tmp / "fold0", tmp / "fold1"]
    for source, target in zip(trust["test"]["folds"], folds):
        shutil.copytree(source, target)
    return _rate(trust["calibrator"], trust["test"], tmp / "out", "--condition", "clean", folds=folds), folds[0] / "clean"


def _fuzz_calibrate(tmp, fx) -> tuple[list[str], Path]:
    test = fx("trust")["test"]
    folds = [tmp / "fold0", tmp / "fold1"]
    for source, target in zip(test["folds"], folds):
        shutil.copytree(source, target)
    (tmp / "out").mkdir()
    return (["calibrate", *_folds(folds), "-ref", str(test["labels"]), "-djfile", str(test["dataset_json"]),
             "-o", str(tmp / "out" / "calibrator.json"), "--condition", "clean"], folds[0] / "clean")


def _fuzz_complexity(tmp, fx) -> tuple[list[str], Path]:
    """A raw dataset folder (the shared study's reference maps serve as images and labels)."""
    study, raw = fx("study"), tmp / "Dataset999_Fuzz"
    for folder in ("imagesTr", "labelsTr"):
        (raw / folder).mkdir(parents=True)
    for source in sorted(study["reference"].iterdir())[:3]:
        shutil.copy(source, raw / "imagesTr" / source.name.replace(".nii.gz", "_0000.nii.gz"))
        shutil.copy(source, raw / "labelsTr" / source.name)
    shutil.copy(study["dataset_json"], raw / "dataset.json")
    (tmp / "out").mkdir()
    return ["complexity", str(raw), "-o", str(tmp / "out" / "complexity.csv")], raw / "imagesTr"


VERBS = {"eval": _fuzz_eval, "eval_reference": _fuzz_eval_reference, "corrupt": _fuzz_corrupt, "rate": _fuzz_rate,
         "calibrate": _fuzz_calibrate, "complexity": _fuzz_complexity}


@pytest.mark.parametrize("verb", VERBS)
def test_fuzz_folders_never_end_in_a_traceback_or_a_write_outside_the_output(verb, tmp_path, capsys, request):
    failures = []
    for number, (oddity, put) in enumerate(ODDITIES.items()):
        tmp = tmp_path / str(number)
        tmp.mkdir()
        outside = tmp / "outside"
        outside.mkdir()
        argv, folder = VERBS[verb](tmp, lambda name: request.getfixturevalue(name))
        put(folder, sorted(p.name for p in folder.iterdir() if p.name.endswith(".nii.gz"))[0], outside)
        before = snapshot(tmp)
        try:
            status = _main(argv)
        except Exception as e:  # noqa: BLE001 - collected: one report for every oddity
            failures.append(f"{oddity}: traceback {type(e).__name__}: {e}")
            continue
        # a library's logging handler bound to an earlier test's captured stream reports "Logging error"
        # with a traceback of its own: pytest's capture, not the command's
        error = re.sub(r"--- Logging error ---.*?\nArguments: [^\n]*\n", "", capsys.readouterr().err, flags=re.S)
        lines = [line for line in error.splitlines() if line.startswith("nnunet-robust: error:")]
        if status not in (0, 2) or (status == 2 and len(lines) != 1) or "Traceback" in error:
            failures.append(f"{oddity}: status {status}, {error.strip()[:300]}")
        try:
            check_nothing_changed_outside_the_output(before, snapshot(tmp), tmp, tmp / "out")
        except AssertionError as e:
            failures.append(f"{oddity}: {e}")
    assert not failures, "\n".join(failures)

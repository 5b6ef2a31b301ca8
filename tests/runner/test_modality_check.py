"""Modality-specific families (CT, ultrasound, microscopy) on data of another modality: `run` refuses them
in one line naming the family, the channel and the dataset.json, unless --force-modality (then one
warning line, and run.json records it). No model is trained: the check runs before the model is loaded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from nnunet_robustness.cli import main
from nnunet_robustness.conditions import CLEAN, family_condition
from nnunet_robustness.conditions.parsing import resolve_conditions
from nnunet_robustness.corruptions.specs import check_modality, modality_mismatches
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.modalities import channel_modality
from nnunet_robustness.records.run_manifest import RunManifest

T1 = {"channel_names": {"0": "T1"}, "labels": {"background": 0, "lesion": 1}, "file_ending": ".nii.gz"}


@pytest.mark.parametrize("name,expected", [
    ("T1", "mr"), ("t1ce", "mr"), ("FLAIR", "mr"), ("ADC", "mr"), ("CT", "ct"), ("US", "ultrasound"),
    ("R", "histology"), ("rgb_to_0_1", "histology"), ("PET", "pet"), ("image", None), ("noNorm", None), ("0", None),
])
def test_what_a_channel_name_says(name, expected):
    assert channel_modality(name) == expected


def test_ct_family_on_t1_is_refused_and_forced_with_a_warning():
    conditions = resolve_conditions(["ct_metal:3", "gaussian_noise:1"])
    with pytest.raises(UserInputError) as refused:
        check_modality(conditions, T1, "model/dataset.json")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("model/dataset.json: ct_metal assumes CT images in HU")
    assert "channel 0 is 'T1' (MR)" in message and "--force-modality" in message
    assert "gaussian_noise" not in message  # general families apply to any image
    with pytest.warns(UserWarning, match=r"--force-modality: model/dataset.json: ct_metal assumes CT") as warned:
        forced = check_modality(conditions, T1, "model/dataset.json", force=True, recorded_in="out/run.json")
    assert len(warned) == 1 and "\n" not in str(warned[0].message) and "out/run.json" in str(warned[0].message)
    assert forced == {"ct_metal": "assumes CT images in HU, but channel 0 is 'T1' (MR)"}


def test_what_fits_or_says_nothing_passes():
    ct, ultrasound, histology = (resolve_conditions([], [name]) for name in ("ct", "ultrasound", "histology"))
    assert modality_mismatches(ct, {"channel_names": {"0": "CT"}}) == {}
    assert modality_mismatches(ultrasound, {"channel_names": {"0": "B-mode"}}) == {}
    assert modality_mismatches(histology, {"channel_names": {"0": "R", "1": "G", "2": "B"}}) == {}
    assert modality_mismatches(ct, {"channel_names": {"0": "image"}}) == {}  # the name does not say
    assert modality_mismatches(resolve_conditions([], ["rood-mri"]), T1) == {}
    # every channel must fit: CT + PET refuses the CT families because of the PET channel
    mixed = modality_mismatches(resolve_conditions(["ct_rings:1"]), {"channel_names": {"0": "CT", "1": "PET"}})
    assert mixed == {"ct_rings": "assumes CT images in HU, but channel 1 is 'PET' (PET)"}
    assert set(modality_mismatches(ultrasound + histology, T1)) == {
        "us_speckle", "us_shadowing", "us_tgc", "us_haze", "he_stain", "jpeg_compression", "defocus_blur",
        "vignetting", "dust_bubbles"}


def _model_folder(tmp_path: Path) -> Path:
    """What the check reads of a model folder: its dataset.json (the model itself is never loaded here)."""
    folder = tmp_path / "Dataset900_T1" / "nnUNetTrainer__nnUNetPlans__2d"
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps(T1))
    return folder


def test_run_refuses_ct_metal_on_a_t1_model_in_one_line(tmp_path, capsys):
    model = _model_folder(tmp_path)
    out, images = tmp_path / "out", tmp_path / "images"
    images.mkdir()
    status = main(["run", "-i", str(images), "-o", str(out), "-m", str(model), "-device", "cpu",
                   "--conditions", "ct_metal:3"])
    error = capsys.readouterr().err
    assert status == 2 and len(error.strip().splitlines()) == 1
    assert "ct_metal" in error and "'T1'" in error and str(model / "dataset.json") in error
    assert not out.exists()  # refused before anything was written


def test_run_with_force_modality_warns_and_hands_the_record_to_run_json(tmp_path, monkeypatch):
    """The forced run goes on to the runner (replaced here: loading a model is not what is tested) with the
    record that the real runner writes into run.json."""
    import nnunet_robustness.runner.runner as runner_module

    handed: dict = {}

    class Runner:
        file_ending, num_channels = ".nii.gz", 1

        def __init__(self, settings):
            pass

        def run(self, cases, conditions, output, **kwargs):
            handed.update(kwargs, conditions=[c.name for c in conditions])
            return runner_module.RunStats()

    import nnunet_robustness.runner.worker as worker_module

    # patched where run's worker uses it (worker binds the name when it is first imported)
    monkeypatch.setattr(worker_module, "RobustnessRunner", Runner)
    model = _model_folder(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    (images / "case_0000.nii.gz").write_bytes(b"")
    argv = ["run", "-i", str(images), "-o", str(tmp_path / "out"), "-m", str(model), "-device", "cpu",
            "--conditions", "ct_metal:3", "--force-modality"]
    with pytest.warns(UserWarning, match="--force-modality: .*ct_metal assumes CT images in HU, but channel 0 is 'T1'"):
        assert main(argv) == 0
    assert handed["conditions"] == ["clean", "ct_metal_sev3"]
    assert handed["modality_forced"] == {"ct_metal": "assumes CT images in HU, but channel 0 is 'T1' (MR)"}


def test_run_json_keeps_the_forced_record_across_a_resume(tmp_path):
    forced = {"ct_metal": "assumes CT images in HU, but channel 0 is 'T1' (MR)"}
    first = RunManifest(model={"model_folder": "m", "checkpoint_sha256": {"0": "a"}}, seed=0,
                        save_probabilities=False, file_ending=".nii.gz",
                        conditions=(CLEAN, family_condition("ct_metal", 3)), cases=("a",), modality_forced=forced)
    first.write(tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["modality_forced"] == forced
    # adding a general family later, without forcing, resumes the folder and keeps the record
    second = replace(first, conditions=(CLEAN, family_condition("gaussian_noise", 1)), modality_forced={})
    merged = second.merged_into(tmp_path)
    assert merged.modality_forced == forced and len(merged.conditions) == 3
    # a run.json written before the field existed still reads
    data = json.loads((tmp_path / "run.json").read_text())
    del data["modality_forced"]
    assert RunManifest.from_json(data, tmp_path / "run.json").modality_forced == {}

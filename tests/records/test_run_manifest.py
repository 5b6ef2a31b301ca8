"""run.json: one owner, loud failures, and a resume that never reuses predictions of other inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nnunet_robustness.conditions import CLEAN, family_condition
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.records.run_manifest import RunManifest, input_fingerprint


def _manifest(tmp_path: Path, inputs: dict, checkpoint: str = "aaa") -> RunManifest:
    return RunManifest(model={"model_folder": str(tmp_path / "model"), "folds": [0], "checkpoint_sha256": {"0": checkpoint}},
                       seed=0, save_probabilities=False, file_ending=".nii.gz",
                       conditions=(CLEAN, family_condition("gaussian_noise", 3)), cases=tuple(inputs), inputs=inputs)


def test_round_trip_and_loud_failures(tmp_path):
    manifest = _manifest(tmp_path, {"a": "a_0000.nii.gz:10:1"})
    manifest.write(tmp_path)
    assert RunManifest.read(tmp_path) == manifest
    (tmp_path / "run.json").write_text('{"conditions": []}')
    with pytest.raises(UserInputError, match="run.json: not a valid run manifest"):
        RunManifest.read(tmp_path)


def test_a_resumed_run_writes_run_json_back_as_it_was(tmp_path):
    """(#32 item 9) a resume read severity 3 as 3.0 and wrote it back so; run.json's values stay as written."""
    first = _manifest(tmp_path, {"a": "a_0000.nii.gz:10:1"})
    first.write(tmp_path)
    written = (tmp_path / "run.json").read_bytes()
    assert b'"severity": 3,' in written
    _manifest(tmp_path, {"a": "a_0000.nii.gz:10:1"}).merged_into(tmp_path).write(tmp_path)
    assert (tmp_path / "run.json").read_bytes() == written
    RunManifest.read(tmp_path).write(tmp_path)
    assert (tmp_path / "run.json").read_bytes() == written


@pytest.mark.parametrize("name", ["../other/gaussian_noise_sev3", "/abs/gaussian_noise_sev3", "..", ""])
def test_condition_names_that_leave_the_folder_are_refused(tmp_path, name):
    """(#32 item 1) condition names become folders under the run folder for eval, rate and calibrate."""
    import json

    _manifest(tmp_path, {"a": "a_0000.nii.gz:10:1"}).write(tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    data["conditions"][1]["name"] = name
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(UserInputError, match="run.json: condition name .* not a plain file or folder name"):
        RunManifest.read(tmp_path)


def test_resume_with_changed_inputs_or_checkpoint_is_refused(tmp_path):
    image = tmp_path / "a_0000.nii.gz"
    image.write_bytes(b"first")
    first = _manifest(tmp_path, {"a": input_fingerprint([image])})
    first.write(tmp_path)
    assert _manifest(tmp_path, {"a": input_fingerprint([image])}).merged_into(tmp_path) == first  # same inputs
    image.write_bytes(b"other image")  # same case name, different image
    os.utime(image, ns=(1, 2))
    with pytest.raises(UserInputError, match="the input files of case a .*changed"):
        _manifest(tmp_path, {"a": input_fingerprint([image])}).merged_into(tmp_path)
    with pytest.raises(UserInputError, match="the checkpoint of fold 0 in .*model has other contents .*aaa.* then, "
                                             "bbb.* now.*retrained or replaced"):
        _manifest(tmp_path, first.inputs, checkpoint="bbb").merged_into(tmp_path)
    # another model's folder: said as such, naming both folders
    other = _manifest(tmp_path, first.inputs, checkpoint="ccc")
    other.model["model_folder"] = str(tmp_path / "other_model")
    with pytest.raises(UserInputError, match=r"holds predictions of another model \(.*model\), not of .*other_model"):
        other.merged_into(tmp_path)
    other_fold = _manifest(tmp_path, first.inputs)
    other_fold.model["checkpoint_sha256"] = {"1": "aaa"}
    with pytest.raises(UserInputError, match="predictions of folds 0 of this model, not of folds 1"):
        other_fold.merged_into(tmp_path)
    assert _manifest(tmp_path, {"a": input_fingerprint([image])}).merged_into(tmp_path, overwrite=True).inputs[
        "a"] == input_fingerprint([image])


def test_a_folder_is_not_resumed_on_another_corruption_device(tmp_path):
    """CPU and CUDA random streams differ, so noise drawn on one device must not be mixed with the other's;
    a run.json from before the device was recorded was corrupted on the CPU."""
    def on(device: str | None) -> RunManifest:
        manifest = _manifest(tmp_path, {"a": "a_0000.nii.gz:10:1"})
        if device is not None:
            manifest.model["corruption_device"] = device
        return manifest

    on(None).write(tmp_path)  # an older run.json
    assert on("cpu").merged_into(tmp_path).model["corruption_device"] == "cpu"
    with pytest.raises(UserInputError, match="holds a different run .*corruption_device.*cuda"):
        on("cuda").merged_into(tmp_path)

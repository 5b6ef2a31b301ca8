"""``nnunet-robust run``: conditions, sharding, resume, and equality with nnUNetv2_predict on a real model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_robustness.conditions import CLEAN, Condition, read_conditions_file
from nnunet_robustness.conditions.parsing import parse_condition_spec, resolve_conditions
from nnunet_robustness.corruptions.specs import corruption_for, requires_label
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.records.input_change import InputChange
from nnunet_robustness.records.item_view import ItemView
from nnunet_robustness.records.run_manifest import MANIFEST_NAME, RunManifest
from nnunet_robustness.runner.cases import list_cases
from nnunet_robustness.runner.runner import PredictionSettings, RobustnessRunner, work_items
from tests.helpers.nnunet_cli import run_cli
from tests.helpers.nnunet_models import BLOBS, KNOWN_GOOD_2D

# ------------------------------------------------------------------ conditions and work split (fast)


def test_condition_specs():
    assert [c.name for c in parse_condition_spec("gaussian_noise:1,3")] == ["gaussian_noise_sev1",
                                                                           "gaussian_noise_sev3"]
    assert [c.severity for c in parse_condition_spec("motion:2-4")] == [2, 3, 4]
    assert [c.severity for c in parse_condition_spec("spike")] == [1, 2, 3, 4, 5]
    assert parse_condition_spec("gamma:2.5")[0].name == "gamma_sev2.5"
    harder = parse_condition_spec("seed-study:harder")
    assert harder == [Condition("seed-study_harder", "speckle_noise", None, "seed-study:harder")]
    assert len(parse_condition_spec("seed-study")) == 4
    assert requires_label(parse_condition_spec("seed-study:easier")[0])
    for bad, message in (("gausian_noise", "unknown condition"), ("spike:7", "out of range"),
                         ("spike:a", "cannot read severities")):
        with pytest.raises(UserInputError, match=message):
            parse_condition_spec(bad)


def test_resolve_conditions_puts_clean_first_and_dedups():
    conditions = resolve_conditions(["spike:1", "clean", "spike:1"], ["seed-study"])
    assert conditions[0] == CLEAN
    assert [c.name for c in conditions].count("spike_sev1") == 1
    assert len(conditions) == 1 + 4 + 1
    with pytest.raises(UserInputError, match="unknown condition set"):
        resolve_conditions([], ["mri"])
    for condition in resolve_conditions([], ["all"]):  # every condition can build its corruption
        assert condition.is_clean or corruption_for(condition) is not None


def test_conditions_file(tmp_path):
    path = tmp_path / "conditions.yaml"
    path.write_text("conditions: [gaussian_noise:1, clean]\nsets: [seed-study]\n")
    assert read_conditions_file(path) == (["gaussian_noise:1", "clean"], ["seed-study"])
    path.write_text("conditions: gaussian_noise: [\n")
    with pytest.raises(UserInputError, match="conditions.yaml: not valid YAML"):
        read_conditions_file(path)
    (tmp_path / "c.json").write_text('{"severities": [1]}')
    with pytest.raises(UserInputError, match="c.json: expected a mapping"):
        read_conditions_file(tmp_path / "c.json")


def test_shards_partition_the_work():
    cases, conditions = [f"case{i}" for i in range(5)], resolve_conditions(["spike:1,2"])
    everything = work_items(cases, conditions)
    parts = [work_items(cases, conditions, 3, i) for i in range(3)]
    assert sorted(map(str, sum(parts, []))) == sorted(map(str, everything))
    assert not set(map(str, parts[0])) & set(map(str, parts[1]))
    with pytest.raises(UserInputError, match="--part-id 3"):
        work_items(cases, conditions, 3, 3)


# ------------------------------------------------------------------ on a trained model (end to end)

DATASET_ID, CONFIGURATION, TRAINER = BLOBS[2].dataset_id, BLOBS[2].configuration, KNOWN_GOOD_2D
CONDITION_ARGS = ["--conditions", "gaussian_noise:5", "salt_pepper_noise:5", "--preset", "seed-study"]


@pytest.fixture(scope="module")
def trained(nnunet_models):
    """A No-Skip U-Net trained for 2 short epochs on an easy 2D task (Dice > 0.8 expected): the session's
    shared 2D model (tests/helpers/nnunet_models.py)."""
    return {"env": nnunet_models.env, "raw": nnunet_models.dataset(2), "model": nnunet_models.model(2, TRAINER)}


@pytest.fixture(scope="module")
def runner(trained) -> RobustnessRunner:
    return RobustnessRunner(PredictionSettings(trained["model"], folds=(0,), use_mirroring=False, device="cpu"))


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): sitk.GetArrayFromImage(sitk.ReadImage(str(p)))
            for p in sorted(folder.rglob("*.nii.gz"))}


def _mean_dice(reference: Path, predictions: Path) -> float:
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    summary = compute_metrics_on_folder(str(reference), str(predictions), str(predictions / "summary.json"),
                                        SimpleITKIO(), ".nii.gz", [1], num_processes=1)
    return summary["foreground_mean"]["Dice"]


@pytest.mark.e2e
def test_run_cli_equals_nnunet_predict_on_clean_and_noise_lowers_dice(trained, tmp_path):
    raw, env = trained["raw"], trained["env"]
    out = tmp_path / "robust"
    run_cli(["nnunet-robust", "run", "-i", str(raw / "imagesTs"), "-o", str(out), "-d", str(DATASET_ID),
             "-c", CONFIGURATION, "-tr", TRAINER, "-f", "0", "-device", "cpu", "--disable_tta",
             "--reference", str(raw / "labelsTs"), "--no-progress", *CONDITION_ARGS], env)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    names = [c["name"] for c in manifest["conditions"]]
    assert names == ["clean", "seed-study_easiest", "seed-study_easier", "seed-study_harder", "seed-study_hardest",
                     "gaussian_noise_sev5", "salt_pepper_noise_sev5"]
    # what each condition applied, for the report's definitions table; the model's checkpoint identity
    assert manifest["parameters"]["gaussian_noise_sev5"]["std_fraction"] > 0
    assert manifest["parameters"]["seed-study_hardest"]["variance"] == 0.3
    assert set(manifest["model"]["checkpoint_sha256"]) == {"0"}
    cases = sorted(p.name for p in (raw / "labelsTs").iterdir())
    for name in names:
        assert sorted(p.name for p in (out / name).glob("*.nii.gz")) == cases
        # the picture of what the predictor got, for eval's report (records/item_view.py)
        assert len(list((out / name).glob("*.view.npz"))) == len(cases)
    first = cases[0][: -len(".nii.gz")]
    assert not np.array_equal(ItemView.read_if_present(out / "clean", first).image,
                              ItemView.read_if_present(out / "gaussian_noise_sev5", first).image)

    reference_predictions = tmp_path / "nnunet_predict"
    # -npp 0 -nps 0: nnU-Net's sequential mode, the same predictions without worker processes to start
    run_cli(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(reference_predictions), "-d",
             str(DATASET_ID), "-c", CONFIGURATION, "-tr", TRAINER, "-f", "0", "-device", "cpu", "--disable_tta",
             "-npp", "0", "-nps", "0"], env)
    ours, theirs = _arrays(out / "clean"), _arrays(reference_predictions)
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name])
    clean_dice = _mean_dice(raw / "labelsTs", out / "clean")
    assert clean_dice == _mean_dice(raw / "labelsTs", reference_predictions)
    assert clean_dice > 0.8, "the model should be known-good before we read anything into degradation"
    # nnU-Net training is not bit-reproducible, and a 100-iteration model on this easy task can score the
    # same or higher under noise (issue: undertrained models read as robust), so the Dice under noise is
    # not asserted. What is deterministic: every noise condition changes the predictions, and what the
    # model saw (its normalised input) changed more under the stronger speckle than under the milder one.
    noisy = ["gaussian_noise_sev5", "salt_pepper_noise_sev5", "seed-study_harder", "seed-study_hardest"]
    clean_predictions = _arrays(out / "clean")
    for name in noisy:
        predictions = _arrays(out / name)
        assert any(not np.array_equal(predictions[c], clean_predictions[c]) for c in clean_predictions), name
    for case in (p.name[: -len(".nii.gz")] for p in (raw / "labelsTs").glob("*.nii.gz")):
        harder = InputChange.read(out / "seed-study_harder" / f"{case}.input.json")
        hardest = InputChange.read(out / "seed-study_hardest" / f"{case}.input.json")
        assert 0 < harder.relative_l2 < hardest.relative_l2 and hardest.ssim < harder.ssim < 1


@pytest.mark.e2e
def test_interrupted_run_resumes_to_the_same_outputs_and_shards_merge(trained, runner, tmp_path, monkeypatch):
    raw = trained["raw"]
    cases = list_cases(raw / "imagesTs", ".nii.gz", 1)
    conditions = resolve_conditions(["gaussian_noise:3", "seed-study:easier", "spike:2"])
    common = dict(seed=7, reference_folder=raw / "labelsTs", progress=False)

    full = tmp_path / "full"
    stats = runner.run(cases, conditions, full, **common)
    assert stats.predicted == stats.items == len(cases) * len(conditions)

    interrupted, k = tmp_path / "interrupted", 5
    original = runner.predictor.predict_single_npy_array
    calls = {"n": 0}

    def dies_after_k(*args, **kwargs):
        if calls["n"] == k:
            raise KeyboardInterrupt
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(runner.predictor, "predict_single_npy_array", dies_after_k)
    with pytest.raises(KeyboardInterrupt):
        runner.run(cases, conditions, interrupted, **common)
    monkeypatch.setattr(runner.predictor, "predict_single_npy_array", original)
    assert len(_arrays(interrupted)) == k
    assert not list(interrupted.rglob("*.tmp*")), "no temporary files left behind"
    resumed = runner.run(cases, conditions, interrupted, **common)
    assert (resumed.skipped, resumed.predicted) == (k, stats.items - k)

    sharded = tmp_path / "sharded"
    for part in (0, 1):
        runner.run(cases, conditions, sharded, num_parts=2, part_id=part, **common)

    expected = _arrays(full)
    from nnunet_robustness.evaluation import evaluate

    def table(folder):
        result = evaluate({"model": folder}, raw / "labelsTs", raw / "dataset.json", n_bootstrap=50, progress=False)
        return result.per_case.drop(columns=["prediction_file"])

    expected_table = table(full)
    for folder in (interrupted, sharded):
        assert table(folder).equals(expected_table)
        got = _arrays(folder)
        assert got.keys() == expected.keys()
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name])
        assert json.loads((folder / MANIFEST_NAME).read_text()) == json.loads((full / MANIFEST_NAME).read_text())


@pytest.mark.e2e
def test_run_refuses_to_mix_runs_and_adds_conditions(trained, runner, tmp_path):
    cases = list_cases(trained["raw"] / "imagesTs", ".nii.gz", 1)
    out = tmp_path / "robust"
    runner.run(cases, resolve_conditions(["brightness:1"]), out, seed=0, progress=False)
    with pytest.raises(UserInputError, match="holds a different run \\(seed: 0 here, 1 requested\\)"):
        runner.run(cases, resolve_conditions(["brightness:1"]), out, seed=1, progress=False)
    stats = runner.run(cases, resolve_conditions(["brightness:2"]), out, seed=0, progress=False)
    assert stats.skipped == len(cases)  # clean was done already
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert [c["name"] for c in manifest["conditions"]] == ["clean", "brightness_sev1", "brightness_sev2"]
    with pytest.raises(UserInputError, match="need the reference labels"):
        runner.run(cases, resolve_conditions(["seed-study:easier"]), out, seed=0, progress=False)


@pytest.mark.e2e
def test_save_probabilities_like_nnunet(trained, runner, tmp_path):
    cases = dict(list(list_cases(trained["raw"] / "imagesTs", ".nii.gz", 1).items())[:1])
    out = tmp_path / "robust"
    runner.run(cases, [CLEAN], out, save_probabilities=True, progress=False)
    (case,) = cases
    probabilities = np.load(out / "clean" / f"{case}.npz")["probabilities"]
    segmentation = _arrays(out)[f"clean/{case}.nii.gz"]
    assert probabilities.shape[0] == 2 and probabilities.shape[1:] == (1, *segmentation.shape)
    np.testing.assert_allclose(probabilities.sum(0), 1, atol=1e-3)
    assert (probabilities.argmax(0)[0] == segmentation).mean() > 0.999
    assert (out / "clean" / f"{case}.pkl").is_file()


@pytest.mark.e2e
def test_attacks_run_as_conditions_and_beat_their_random_control(trained, runner, tmp_path):
    """adv_* conditions go through the same runner, records and outputs as corruptions; at the same norm
    FGSM moves the model's answer further from its clean prediction than random signs do."""
    raw = trained["raw"]
    cases = list_cases(raw / "imagesTs", ".nii.gz", 1)
    out = tmp_path / "adversarial"
    runner.run(cases, resolve_conditions(["adv_fgsm:5", "adv_random_sign:5"]), out, seed=0, progress=False)
    clean = _arrays(out / "clean")
    changed = {}
    for name in ("adv_fgsm_sev5", "adv_random_sign_sev5"):
        predictions = _arrays(out / name)
        changed[name] = sum(int((predictions[c] != clean[c]).sum()) for c in clean)
        for case in cases:  # what the model saw, recorded like every condition
            assert (out / name / f"{case}.input.json").is_file()
    assert changed["adv_fgsm_sev5"] > changed["adv_random_sign_sev5"], changed


@pytest.mark.e2e
def test_attacks_aim_at_the_reference_when_it_is_given(trained, runner, tmp_path):
    """With --reference, PGD pushes away from what Dice is scored against (issue #29: aimed at the model's own
    prediction it raised Dice on an over-segmenting model): it lowers Dice against the reference more than
    random signs of the same budget, and run.json records the objective per condition."""
    raw = trained["raw"]
    cases = list_cases(raw / "imagesTs", ".nii.gz", 1)
    out = tmp_path / "aimed"
    runner.run(cases, resolve_conditions(["adv_pgd_linf:5", "adv_random_sign:5"]), out, seed=0, progress=False,
               reference_folder=raw / "labelsTs")
    parameters = RunManifest.read(out).parameters
    assert parameters["adv_pgd_linf_sev5"]["objective"] == "reference"
    assert "objective" not in parameters["adv_random_sign_sev5"]  # the control aims at nothing
    attacked = _mean_dice(raw / "labelsTs", out / "adv_pgd_linf_sev5")
    assert attacked < _mean_dice(raw / "labelsTs", out / "adv_random_sign_sev5")
    assert attacked < _mean_dice(raw / "labelsTs", out / "clean")
    # the done items keep their objective: a resume aimed elsewhere is refused
    other = RobustnessRunner(PredictionSettings(**{**runner.settings.__dict__, "attack_objective": "prediction"}))
    with pytest.raises(UserInputError, match="attacked with the reference as objective"):
        other.run(cases, resolve_conditions(["adv_pgd_linf:5"]), out, seed=0, progress=False,
                  reference_folder=raw / "labelsTs")


@pytest.mark.e2e
def test_calibrated_severities_are_recorded_and_reached(trained, runner, tmp_path):
    raw = trained["raw"]
    cases = list_cases(raw / "imagesTs", ".nii.gz", 1)
    out = tmp_path / "calibrated"
    runner.run(cases, resolve_conditions(["gaussian_noise:1,3"]), out, seed=0, progress=False,
               severity_scale="calibrated", calibration_cases=len(cases))
    manifest = RunManifest.read(out)
    assert [c.name for c in manifest.conditions] == ["clean", "gaussian_noise_cal1", "gaussian_noise_cal3"]
    assert 0 < manifest.conditions[1].calibrated_severity < manifest.conditions[2].calibrated_severity
    for name, target in (("gaussian_noise_cal1", 0.95), ("gaussian_noise_cal3", 0.80)):
        ssim = np.mean([InputChange.read(out / name / f"{case}.input.json").ssim for case in cases])
        assert ssim == pytest.approx(target, abs=0.01), name
        # run.json records what the level reached on the calibration cases (here: all of them)
        record = manifest.parameters[name]["calibration"]
        assert record["target_ssim"] == target and record["calibration_cases"] == len(cases)
        assert record["reached_ssim_mean"] == pytest.approx(ssim, abs=1e-3) and record["reachable"] is True


# ------------------------------------------------------------------ threads and devices


def test_devices_are_parsed_and_workers_take_their_shards():
    from nnunet_robustness.runner.devices import parse_devices, worker_jobs
    from nnunet_robustness.runner.worker import RunJob

    assert parse_devices("cpu, cpu") == ["cpu", "cpu"]
    for bad, message in (("", "give CUDA device indices"), ("gpu0", "give CUDA device indices"),
                         ("0,0", "named twice"), ("7", "torch sees")):
        with pytest.raises(UserInputError, match=message):
            parse_devices(bad)
    job = RunJob(PredictionSettings(Path("model"), folds=(0, "all"), device="cuda"), Path("in"), Path("out"),
                 tuple(resolve_conditions(["gaussian_noise:3", "context:0.3"])), seed=4, num_parts=2, part_id=1,
                 reference=Path("labels"), modality_forced={"ct_metal": "why"})
    jobs = worker_jobs(job, ["cpu", "3"])
    # node shard 1 of 2 with two devices: worker shards 2 and 3 of 4, each on its device, without a bar
    assert [(j.num_parts, j.part_id, j.settings.device, j.progress) for j, _ in jobs] == [
        (4, 2, "cpu", False), (4, 3, "cuda", False)]
    assert jobs[1][1]["CUDA_VISIBLE_DEVICES"] == "3"
    assert jobs[0][1].get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
    # what the worker reads back from its standard input is the job it was given
    for worker_job, _ in jobs:
        assert RunJob.from_json(json.loads(json.dumps(worker_job.to_json()))) == worker_job
    assert [c.kind for c in jobs[0][0].conditions] == [c.kind for c in job.conditions]


@pytest.mark.e2e
def test_parallel_preparation_and_device_workers_give_the_sequential_outputs(trained, runner, tmp_path, monkeypatch):
    """Threads that prepare items ahead (as on a GPU machine) and one worker process per device must give
    the outputs of one item after another, bit for bit."""
    raw = trained["raw"]
    cases = list_cases(raw / "imagesTs", ".nii.gz", 1)
    conditions = resolve_conditions(["gaussian_noise:3", "bias_field:2", "seed-study:easier"])
    common = dict(seed=3, reference_folder=raw / "labelsTs", progress=False)
    one = tmp_path / "one"
    runner.run(cases, conditions, one, **common)
    monkeypatch.setattr(runner, "prepare_workers", 3)
    threads = tmp_path / "threads"
    stats = runner.run(cases, conditions, threads, **common)
    assert stats.predicted == len(cases) * len(conditions)

    devices = tmp_path / "devices"
    run_cli(["nnunet-robust", "run", "-i", str(raw / "imagesTs"), "-o", str(devices), "-m", str(trained["model"]),
             "-f", "0", "--disable_tta", "--reference", str(raw / "labelsTs"), "--seed", "3", "--devices", "cpu,cpu",
             "--conditions", "gaussian_noise:3", "bias_field:2", "seed-study:easier"], trained["env"])
    segmentations = _arrays(one)
    names = [p.name[: -len(".nii.gz")] for p in sorted((raw / "labelsTs").glob("*.nii.gz"))]
    for folder in (threads, devices):
        got = _arrays(folder)
        assert got.keys() == segmentations.keys()
        for name in segmentations:
            np.testing.assert_array_equal(got[name], segmentations[name])
        for condition in conditions:  # what the model saw and the pictures, item by item
            for case in names:
                assert InputChange.read_if_present(folder / condition.name, case) == InputChange.read_if_present(
                    one / condition.name, case)
                np.testing.assert_array_equal(ItemView.read_if_present(folder / condition.name, case).image,
                                              ItemView.read_if_present(one / condition.name, case).image)
    assert len(list((devices / ".worker1.log").read_text().splitlines())) >= 1
    assert json.loads((devices / MANIFEST_NAME).read_text())["cases"] == json.loads(
        (one / MANIFEST_NAME).read_text())["cases"]

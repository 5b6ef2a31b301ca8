"""The robustness card: built from an eval output folder whose truth is known, valid against the schema
shipped in the package, and the same sections and keys for every model."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from nnunet_robustness.analysis.card import build_cards, card_files, schema
from nnunet_robustness.cli import main
from nnunet_robustness.conditions import Condition
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.records.run_manifest import RunManifest
from tests.helpers.plans import default_plans
from tests.helpers.prediction_folders import SPACING, degrade, reference_case, write_dataset_json, write_label

CONDITIONS = [Condition("clean", None, 0), Condition("noise_sev1", "noise", 1), Condition("noise_sev2", "noise", 2),
              Condition("blur_sev1", "blur", 1), Condition("blur_sev2", "blur", 2), Condition("spike", "spike", None)]
# voxels of erosion/shift per model and condition: A is untouched by blur and by noise at severity 1 and falls
# at noise 2; B falls by one voxel under every condition
STRENGTH = {"A": {"clean": 0, "noise_sev1": 0, "noise_sev2": 3, "blur_sev1": 0, "blur_sev2": 0, "spike": 2},
            "B": {"clean": 0, "noise_sev1": 1, "noise_sev2": 1, "blur_sev1": 1, "blur_sev2": 1, "spike": 1}}


def _model_folder(root, model):
    folder = root / f"Dataset900_Card/nnUNetTrainer_{model}__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(default_plans()))
    (folder / "fold_0" / "debug.json").write_text(json.dumps({"num_epochs": 50, "num_iterations_per_epoch": 250}))
    return folder


def write_card_study(root, cards="cards"):
    """Predictions of models A and B (``STRENGTH``) with run.json and model folders, evaluated by eval with a
    metadata grouping (site) and carded by card: ``root/eval``, ``root/<cards>``."""
    rng = np.random.default_rng(5)
    cases = [f"case_{i:03d}" for i in range(12)]
    references = {c: reference_case(rng) for c in cases}
    for case, label in references.items():
        write_label(root / "labelsTs" / f"{case}.nii.gz", label, SPACING)
    write_dataset_json(root / "dataset.json", {"background": 0, "organ": 1, "tumour": 2})
    argv = ["eval", "-ref", str(root / "labelsTs"), "-djfile", str(root / "dataset.json"), "-o", str(root / "eval"),
            "--n-bootstrap", "200", "-np", "1", "--metadata", str(root / "cases.csv"), "--by", "site"]
    for model, strengths in STRENGTH.items():
        predictions = root / f"pred_{model}"
        for condition in CONDITIONS:
            for case in cases:
                write_label(predictions / condition.name / f"{case}.nii.gz",
                            degrade(references[case], rng, strengths[condition.name]), SPACING)
        folder = _model_folder(root, model)
        RunManifest(model={"model_folder": str(folder), "folds": [0], "folds_used": [0], "checkpoint":
                           "checkpoint_final.pth", "tta": True, "dataset": "Dataset900_Card",
                           "results_subfolder": folder.name},
                    seed=0, save_probabilities=False, file_ending=".nii.gz", conditions=tuple(CONDITIONS),
                    cases=tuple(cases)).write(predictions)
        argv += ["--model", f"{model}={predictions}"]
    (root / "cases.csv").write_text("case,site\n" + "".join(f"{c},{'north' if i < 8 else 'south'}\n"
                                                            for i, c in enumerate(cases)))
    assert main(argv) == 0
    assert main(["card", str(root / "eval"), "-o", str(root / cards)]) == 0


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    write_card_study(root)
    return root


def _card(evaluation, model):
    return json.loads(card_files(evaluation / "cards", model)["json"].read_text())


def test_the_cards_validate_against_the_shipped_schema_and_a_broken_card_does_not(evaluation):
    validator = jsonschema.Draft202012Validator(schema())
    jsonschema.Draft202012Validator.check_schema(schema())
    for model in STRENGTH:
        validator.validate(_card(evaluation, model))
    card = _card(evaluation, "A")
    for broken in ({k: v for k, v in card.items() if k != "operating_envelope"},
                   {**card, "training": {**card["training"], "iterations": "many"}},
                   {**card, "surprise": 1}):
        assert not validator.is_valid(broken)


def test_the_card_says_what_the_evaluation_and_the_model_folder_hold(evaluation):
    card = _card(evaluation, "A")
    model = card["model_summary"]
    plans = default_plans()["configurations"]["3d_fullres"]
    assert (model["trainer"], model["plans"], model["configuration"]) == ("nnUNetTrainer_A", "nnUNetPlans", "3d_fullres")
    assert model["patch_size"] == plans["patch_size"] and model["model_folder_found"]
    assert model["network_class"] == plans["architecture"]["network_class_name"]
    assert card["training"]["iterations"] == 50 * 250 and card["training"]["share_of_nnunet_default"] == 0.05
    assert card["training"]["short_schedule"] and card["training"]["sanity_gate"]["passed"]
    assert card["clean_scores"]["metrics"]["dice"]["mean"] == 1.0 and card["clean_scores"]["n"] == 12
    assert card["evaluation"]["eval_command"].startswith("nnunet-robust eval -ref ")
    assert "--by site" in card["evaluation"]["eval_command"]
    assert card["evaluation"]["card_command"].startswith("nnunet-robust card ")
    assert card["versions"]["eval"]["nnunet-robustness"] and card["rood_mri"]


def test_the_operating_envelope_follows_the_known_degradation(evaluation):
    """A: noise tolerated up to severity 1 (untouched there) and not at 2; blur within everywhere; B (one voxel
    off under everything, about 0.15 Dice) tolerates no severity of either family."""
    envelope = {f["family"]: f for f in _card(evaluation, "A")["operating_envelope"]["families"]}
    assert (envelope["noise"]["largest_tolerated_severity"], envelope["noise"]["status"]) == (1, "exceeds")
    assert (envelope["blur"]["largest_tolerated_severity"], envelope["blur"]["status"]) == (2, "within")
    assert [s["within"] for s in envelope["noise"]["severities"]] == [True, False]
    card_b = _card(evaluation, "B")
    assert {f["family"]: f["status"] for f in card_b["operating_envelope"]["families"]} == {
        "noise": "none tolerated", "blur": "none tolerated"}
    worst = _card(evaluation, "A")["worst_families"]
    assert [w["family"] for w in worst] == ["noise", "blur"]
    # a single-level condition is listed on its own, outside the envelope
    (spike,) = _card(evaluation, "A")["other_conditions"]
    assert spike["condition"] == "spike" and not spike["within"] and spike["ci_low"] > 0.05
    # a looser tolerance widens the envelope
    loose = build_cards(evaluation / "eval", tolerance=0.9, models=["A"])["A"]
    assert {f["family"]: f["status"] for f in loose["operating_envelope"]["families"]} == {
        "noise": "within", "blur": "within"}


def test_subgroups_are_on_the_card(evaluation):
    groups = {g["group"]: g for g in _card(evaluation, "B")["subgroups"]}
    assert set(groups) == {"site=north", "site=south"}
    assert (groups["site=north"]["cases"], groups["site=north"]["small"]) == (8, True)
    assert groups["site=south"]["cases"] == 4 and groups["site=south"]["conditions_beyond_tolerance"] == 5
    assert groups["site=north"]["grouping"] == "site"


def test_two_cards_have_the_same_sections_keys_and_lines(evaluation):
    a, b = _card(evaluation, "A"), _card(evaluation, "B")

    def shape(value):
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        return type(value).__name__ if not isinstance(value, list) else "list"

    assert list(a) == list(b) and shape(a["model_summary"]) == shape(b["model_summary"])
    assert list(a["operating_envelope"]) == list(b["operating_envelope"])
    files_a, files_b = card_files(evaluation / "cards", "A"), card_files(evaluation / "cards", "B")
    lines_a, lines_b = files_a["md"].read_text().splitlines(), files_b["md"].read_text().splitlines()
    assert len(lines_a) == len(lines_b)
    headings = [line for line in lines_a if line.startswith("## ")]
    assert headings == [line for line in lines_b if line.startswith("## ")] and len(headings) == 13
    # the rows of the tables are named the same, line by line
    assert [line.split("|")[1] for line in lines_a if line.startswith("| ")][:20] == \
        [line.split("|")[1] for line in lines_b if line.startswith("| ")][:20]
    assert "<h2>Operating envelope (tolerance 0.050 Dice)</h2>" in files_a["html"].read_text()


def test_card_refuses_what_is_not_an_eval_folder(tmp_path, evaluation, capsys):
    with pytest.raises(UserInputError, match="no model C"):
        build_cards(evaluation / "eval", models=["C"])
    with pytest.raises(UserInputError, match="--tolerance"):
        build_cards(evaluation / "eval", tolerance=0)
    (tmp_path / "summary.json").write_text(json.dumps({"metrics": {}}))
    assert main(["card", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "summary.json" in error and "not written by nnunet-robust eval" in error

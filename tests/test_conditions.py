"""The Condition type: one kind per condition, read from its fields, kept through run.json and folder names."""

from __future__ import annotations

import pytest

from nnunet_robustness.conditions import CLEAN, Condition, ConditionKind, context_condition, family_condition
from nnunet_robustness.conditions.parsing import corrupt_conditions, parse_condition_spec, preset_condition
from nnunet_robustness.errors import UserInputError


@pytest.mark.parametrize("spec, kind", [
    ("clean", ConditionKind.CLEAN), ("gaussian_noise:3", ConditionKind.CORRUPTION),
    ("seed-study:harder", ConditionKind.PRESET), ("context:0.3", ConditionKind.CONTEXT),
    ("adv_pgd:2", ConditionKind.ATTACK), ("adv_random_sign:1", ConditionKind.ATTACK),
])
def test_every_parsed_condition_has_its_kind_and_keeps_it_through_run_json(spec, kind):
    (condition,) = parse_condition_spec(spec)
    assert condition.kind is kind
    data = condition.to_json()
    assert "kind" not in data  # run.json keeps its form
    assert Condition.from_json(data) == condition and Condition.from_json(data).kind is kind


def test_folder_names_give_the_kind_they_say():
    assert Condition.from_folder_name("clean") is CLEAN and CLEAN.is_clean
    assert Condition.from_folder_name("gaussian_noise_sev3") == family_condition("gaussian_noise", 3)
    assert Condition.from_folder_name("adv_fgsm_sev2").kind is ConditionKind.ATTACK
    assert Condition.from_folder_name("my_predictions").kind is ConditionKind.UNKNOWN
    assert context_condition(0.3).kind is ConditionKind.CONTEXT
    assert preset_condition("seed-study:easier").kind is ConditionKind.PRESET


def test_corrupt_options_give_the_conditions_run_parses():
    assert corrupt_conditions(["gaussian_noise"], [1, 3], ["seed-study:harder"]) == [
        *parse_condition_spec("gaussian_noise:1,3"), *parse_condition_spec("seed-study:harder")]
    for family in ("context", "adv_fgsm"):  # need the model or the reference: run only, in one line
        with pytest.raises(UserInputError, match="of `run` only"):
            corrupt_conditions([family], [1], [])
    with pytest.raises(UserInputError, match="did you mean 'gaussian_noise'"):
        corrupt_conditions(["gausian_noise"], None, [])

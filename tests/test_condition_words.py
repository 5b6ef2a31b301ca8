"""Conditions in plain words and the families' effect groups (nnunet_robustness.condition_words)."""

from __future__ import annotations

import pytest

from nnunet_robustness.condition_words import EFFECT_GROUPS, FAMILY_WORDS, describe, family_effect


def test_every_catalogue_family_has_words_and_a_known_effect_group():
    from nnunet_robustness.corruptions import CORRUPTIONS

    assert set(FAMILY_WORDS) == set(CORRUPTIONS)
    for family, cls in CORRUPTIONS.items():
        assert cls.effect in EFFECT_GROUPS and cls.plain == FAMILY_WORDS[family].plain


def test_a_family_without_words_cannot_register():
    from nnunet_robustness.corruptions._core import Corruption, register

    class Unnamed(Corruption):
        family = "no_words_family"

    with pytest.raises(ValueError, match="no_words_family.*FAMILY_WORDS"):
        register(Unnamed)


def test_effect_groups_follow_what_a_family_does_not_its_modality():
    assert family_effect("defocus_blur") == family_effect("gaussian_blur") == "blur"
    assert family_effect("ct_low_dose") == family_effect("gaussian_noise") == "noise"
    assert family_effect("motion") != family_effect("gaussian_blur")
    assert family_effect("adv_fgsm") is None and family_effect(None) is None


def test_seed_study_presets_say_how_their_names_read_and_background_blur_needs_the_label():
    easiest = describe("seed-study_easiest", "background_blur", None, "seed-study:easiest",
                       '{"sigma": 7.0, "unit": "voxel"}')
    assert "sigma 7, unit voxel" in easiest and "'easiest'" in easiest
    assert "not by how much damage it does" in easiest
    assert "cannot be used on unlabelled images" in easiest
    assert "cannot be used on unlabelled images" in describe("background_blur_sev3", "background_blur", 3)
    assert "unlabelled" not in describe("gaussian_blur_sev3", "gaussian_blur", 3)


def test_context_attack_and_unknown_conditions_have_sentences():
    assert "fills 30% of the view" in describe("context_fbr0.30", "context", None, None, {"target_fbr": 0.3})
    attack = describe("adv_fgsm_sev5", "adv_fgsm", 5, None, {"eps": 16 / 255})
    assert attack.startswith("A worst-case test") and "very strong, severity 5 of 5" in attack
    assert "no description" in describe("noise_sev1", "noise", 1)
    assert describe("gaussian_noise_sev2.5", "gaussian_noise", 2.5).endswith("severity 2.5 of 5.")

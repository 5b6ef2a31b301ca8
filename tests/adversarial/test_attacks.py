"""Attack specs, the severity table, losses and projections (no model; fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnunet_robustness.adversarial import AttackSpec, get_attack, parse_attack_spec, random_sign_case, severity_eps
from nnunet_robustness.adversarial.attacks import (
    ATTACKS,
    ascent_step,
    attack_objective,
    norms,
    project,
    random_start,
    voxel_cross_entropy,
)
from nnunet_robustness.conditions import ADVERSARIAL_FAMILIES, ATTACK_ALIASES, is_attack_family
from nnunet_robustness.errors import UserInputError


def test_severity_table_doubles_from_one_255th():
    assert [severity_eps(s) for s in range(1, 6)] == pytest.approx([1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255])
    assert severity_eps(2.5) == pytest.approx(2 ** 1.5 / 255)
    for bad in (0, 5.5, -1, True):
        with pytest.raises(UserInputError, match="out of range"):
            severity_eps(bad)


def test_the_torch_free_attack_names_are_the_attacks():
    """Spec parsing tells attacks from corruptions by the names in ``conditions`` (without torch): they must
    be exactly the attacks defined here, and every alias must point to one."""
    assert list(ADVERSARIAL_FAMILIES) == list(ATTACKS)
    assert set(ATTACK_ALIASES.values()) <= set(ATTACKS)
    assert all(is_attack_family(name) for name in [*ATTACKS, *ATTACK_ALIASES, "adv_pgd:2", " adv_fgsm :1"])
    assert not any(is_attack_family(name) for name in ("gaussian_noise", "adv", "context:0.5", "adv_pgd_linf_sev3"))


def test_spec_strings_names_and_sweeps():
    assert [s.name for s in parse_attack_spec("adv_pgd_linf:1,3")] == ["adv_pgd_linf_sev1", "adv_pgd_linf_sev3"]
    assert [s.severity for s in parse_attack_spec("adv_fgsm")] == [1, 2, 3, 4, 5]
    assert [s.severity for s in parse_attack_spec("adv_segpgd:2-4")] == [2, 3, 4]
    assert parse_attack_spec("adv_pgd:2")[0].family == "adv_pgd_linf"  # the alias
    sweep = parse_attack_spec("adv_pgd_l2:eps=0.01,0.02;steps=5,10")
    assert [s.name for s in sweep] == ["adv_pgd_l2_eps0.01_steps5", "adv_pgd_l2_eps0.01_steps10",
                                       "adv_pgd_l2_eps0.02_steps5", "adv_pgd_l2_eps0.02_steps10"]
    assert parse_attack_spec("adv_fgsm:eps_raw=4")[0].name == "adv_fgsm_epsraw4_steps1"
    assert parse_attack_spec("adv_random_sign:eps=0.1")[0].name == "adv_random_sign_eps0.1"
    spec = get_attack("adv_cospgd", eps=0.02, steps=20, step=0.1)
    assert AttackSpec.from_json(spec.to_json()) == spec
    assert spec.n_steps == 20 and spec.step_fraction == 0.1
    assert get_attack("adv_pgd_linf", 3).step_fraction == pytest.approx(0.25)  # 2.5 eps / 10 steps


def test_channel_eps_in_raw_units_and_fractions():
    assert get_attack("adv_pgd_linf", 4).channel_eps([255.0, 510.0]) == pytest.approx([8.0, 16.0])
    assert get_attack("adv_pgd_linf", eps=0.1).channel_eps([50.0]) == pytest.approx([5.0])
    assert get_attack("adv_pgd_linf", eps_raw=3).channel_eps([50.0, 1000.0]) == [3.0, 3.0]


@pytest.mark.parametrize("spec,message", [
    ("adv_pgd_lin:3", "unknown attack"), ("adv_pgd_linf:7", "out of range"), ("adv_pgd_linf:eps=2", "<= 1"),
    ("adv_pgd_linf:eps=-1", "positive"), ("adv_pgd_linf:steps=0;eps=0.1", "positive integer"),
    ("adv_fgsm:eps=0.1;steps=3", "fixed"), ("adv_pgd_linf:epsilon=0.1", "expected key=value"),
    ("adv_pgd_linf:steps=5", "exactly one"), ("adv_pgd_linf:eps=a", "cannot read"),
    ("adv_pgd_linf:eps=0.1;eps=0.2", "given twice"),
])
def test_bad_specs_are_user_errors(spec, message):
    with pytest.raises(UserInputError, match=message):
        parse_attack_spec(spec)


def test_projection_steps_and_random_start_respect_the_ball():
    generator = torch.Generator().manual_seed(0)
    mask = torch.ones((2, 8, 9, 10), dtype=torch.bool)
    mask[:, 0] = False
    eps = torch.tensor([0.5, 2.0])
    for norm in ("linf", "l2"):
        delta = random_start(norm, eps, mask, generator)
        for _ in range(3):
            delta = project(ascent_step(delta, torch.randn(mask.shape, generator=generator), norm, eps, mask),
                            norm, eps, mask)
            linf, rms = norms(delta, mask)
            bound = linf if norm == "linf" else rms
            assert all(b <= e * (1 + 1e-6) for b, e in zip(bound, eps.tolist()))
            assert not delta[:, 0].any()  # masked voxels never move
    # an L-inf sign step from zero reaches the corner of the ball
    step = ascent_step(torch.zeros(mask.shape), torch.randn(mask.shape, generator=generator), "linf", eps, mask)
    assert norms(step, mask)[0] == pytest.approx([0.5, 2.0])


def test_losses_on_logits():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])  # 2 classes, 3 voxels
    target = torch.tensor([0, 0, 1])
    valid = torch.ones(3, dtype=torch.bool)
    ce = voxel_cross_entropy(logits, target)
    expected_ce = [math.log1p(math.exp(-2)), math.log1p(math.exp(1)), math.log1p(math.exp(-4))]
    assert ce.tolist() == pytest.approx(expected_ce, rel=1e-5)
    assert float(attack_objective("ce", logits, target, valid, 0, 10)) == pytest.approx(float(ce.sum()))
    # SegPGD at t = 0 ignores the wrongly classified voxel 1; later it weighs it lam = t / 2T
    assert float(attack_objective("segpgd", logits, target, valid, 0, 10)) == pytest.approx(float(ce[0] + ce[2]))
    lam = 5 / 20
    expected = (1 - lam) * (ce[0] + ce[2]) + lam * ce[1]
    assert float(attack_objective("segpgd", logits, target, valid, 5, 10)) == pytest.approx(float(expected))
    # CosPGD weighs voxels by the cosine of softmax and one-hot: confident-correct voxels most
    p = torch.softmax(logits, 0)
    cos = p.gather(0, target[None])[0] / p.norm(dim=0)
    assert float(attack_objective("cospgd", logits, target, valid, 0, 10)) == pytest.approx(float((cos * ce).sum()))
    assert cos[1] < cos[0]


def test_random_sign_control_has_the_exact_norm_and_skips_zero_voxels():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, size=(2, 1, 16, 20)).astype(np.float32)
    image[:, :, :3] = 0  # background nnU-Net would crop
    result = random_sign_case(image, get_attack("adv_random_sign", eps_raw=2.5), seed=3)
    delta = result.image.astype(np.float64) - image
    assert result.image.dtype == np.float32 and result.image.shape == image.shape
    assert not delta[:, :, :3].any()
    assert np.abs(delta[:, :, 3:]) == pytest.approx(2.5, abs=1e-4)
    assert result.linf_raw == pytest.approx([2.5, 2.5], abs=1e-4)
    assert result.rms_raw == pytest.approx([2.5, 2.5], abs=1e-4)
    again = random_sign_case(image, get_attack("adv_random_sign", eps_raw=2.5), seed=3)
    np.testing.assert_array_equal(again.image, result.image)

"""Adversarial robustness through nnU-Net's whole inference pipeline (white-box, the user's own model).

FGSM, PGD (L-inf, L2), SegPGD and CosPGD on the whole image through nnU-Net's normalisation and its
Gaussian-weighted sliding window, with gradients accumulated tile by tile; budgets in the raw
image's intensity units or as a fraction of its robust intensity range; a random-sign control of
the same norm. See ``docs/adversarial.md``. Example::

    from nnunet_robustness.adversarial import perturb_case
    adversarial = perturb_case(predictor, image, properties, "adv_pgd_linf:3", seed=0)
    segmentation = predictor.predict_single_npy_array(adversarial, deepcopy(properties), None, None, False)
"""

from nnunet_robustness.adversarial.attacks import (
    ATTACKS,
    MAX_SEVERITY,
    AttackSpec,
    get_attack,
    parse_attack_spec,
    severity_eps,
)
from nnunet_robustness.adversarial.pipeline import (
    AttackResult,
    SlidingWindow,
    attack_case,
    perturb_case,
    preprocess_case,
    random_sign_case,
    resolve_attack,
)
from nnunet_robustness.conditions import is_attack_family

__all__ = [
    "ATTACKS", "MAX_SEVERITY", "AttackResult", "AttackSpec", "SlidingWindow", "attack_case", "get_attack",
    "is_attack_family", "parse_attack_spec", "perturb_case", "preprocess_case", "random_sign_case",
    "resolve_attack", "severity_eps",
]

"""Attack definitions: families, the severity -> epsilon table, parameter specs, losses and PGD steps.

This module is pure torch and knows nothing about nnU-Net; ``pipeline.py`` runs these rules through
nnU-Net's preprocessing and sliding-window aggregation.

Families (condition names of ``nnunet-robust run``)
---------------------------------------------------
========================  =====  ===========  ==============================================================
family                    norm   loss         method
========================  =====  ===========  ==============================================================
``adv_fgsm``              L-inf  CE           one step ``delta = eps * sign(grad)`` (Goodfellow et al. 2015)
``adv_pgd_linf``          L-inf  CE           projected gradient ascent, random start (Madry et al. 2018)
``adv_pgd_l2``            L2     CE           the same with normalised-gradient steps in an L2 ball
``adv_segpgd``            L-inf  SegPGD       PGD whose loss moves from correctly to wrongly classified
                                              voxels over the iterations (Gu et al. 2022)
``adv_cospgd``            L-inf  CosPGD       PGD whose per-voxel loss is weighted by the cosine similarity
                                              of the prediction to the target (Agnihotri et al. 2023)
``adv_random_sign``       L-inf  --           control: ``eps * random sign`` per voxel, no model involved
========================  =====  ===========  ==============================================================

``adv_pgd`` is accepted as an alias of ``adv_pgd_linf``.

Epsilon
-------
Every budget is per channel and **in the raw image's own intensity units** (what the scanner wrote,
HU for CT, arbitrary units for MR), because that is where a perturbation would be injected. It is
given either directly (``eps_raw=5``: 5 raw units in every channel) or as a fraction of the
channel's robust intensity range ``span`` (``eps=0.01``: 1 % of the 0.5-99.5th percentile range of
the foreground, ``nnunet_robustness.corruptions.intensity_reference``), which means the same on
HU, MR and 0-255 images. Severities 1..5 use the vision literature's grid of fractions of the
dynamic range, doubling per level (continuous for fractional severities):

    eps(severity) = 2 ** (severity - 1) / 255   ->   1/255, 2/255, 4/255, 8/255, 16/255 of ``span``

i.e. 0.39 %, 0.78 %, 1.6 %, 3.1 % and 6.3 % of the robust range (8/255 is the common ImageNet/CIFAR
L-inf budget; Madry et al. 2018, Croce & Hein 2020).

Norms. L-inf: ``max |delta_c| <= eps_c``. L2 is measured as a root-mean-square over the voxels the
attack may change (the voxels that are non-zero in some channel, see ``pipeline.py``):
``||delta_c||_2 <= eps_c * sqrt(n)``, so an L2 epsilon has the same units and scale as an L-inf one
and does not grow with the image size. The random-sign control at ``eps`` has L-inf norm **and**
RMS exactly ``eps``, so it is at least as large as any attack of the same ``eps`` in both norms.

Steps. Iterative attacks default to 10 steps (FGSM: 1) of size ``2.5 * eps / steps`` (the rule of
thumb of Madry et al.'s ``robustness`` library: enough to cross the ball and come back); override
with ``steps=`` and ``step=`` (step size as a fraction of eps).

Spec strings (``--conditions``)
-------------------------------
``adv_pgd_linf`` (severities 1..5), ``adv_pgd_linf:3``, ``adv_pgd_linf:1,3,5``, ``adv_pgd_linf:1-5``,
``adv_pgd_linf:eps=0.01,0.02;steps=10`` (a sweep: every combination), ``adv_fgsm:eps_raw=4``.
Names: ``adv_pgd_linf_sev3`` (severity form, the same ``FAMILY_sevS`` convention as corruptions) or
``adv_pgd_linf_eps0.01_steps10`` / ``adv_fgsm_epsraw4_steps1`` (parameter form).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nnunet_robustness.conditions import ADVERSARIAL_FAMILIES, ATTACK_ALIASES, MAX_SEVERITY
from nnunet_robustness.errors import UserInputError

FAMILY_PREFIX = "adv_"


@dataclasses.dataclass(frozen=True)
class AttackKind:
    norm: str  # "linf" | "l2"
    loss: str | None  # "ce" | "segpgd" | "cospgd"; None: no model (random-sign control)
    default_steps: int
    random_start: bool
    fixed_steps: bool = False  # FGSM is one step by definition
    meaning: str = ""


# names and words from the torch-free list that run --help and corrupt --list show
ATTACKS: dict[str, AttackKind] = {
    "adv_fgsm": AttackKind("linf", "ce", 1, False, True, ADVERSARIAL_FAMILIES["adv_fgsm"]),
    "adv_pgd_linf": AttackKind("linf", "ce", 10, True, meaning=ADVERSARIAL_FAMILIES["adv_pgd_linf"]),
    "adv_pgd_l2": AttackKind("l2", "ce", 10, True, meaning=ADVERSARIAL_FAMILIES["adv_pgd_l2"]),
    "adv_segpgd": AttackKind("linf", "segpgd", 10, True, meaning=ADVERSARIAL_FAMILIES["adv_segpgd"]),
    "adv_cospgd": AttackKind("linf", "cospgd", 10, True, meaning=ADVERSARIAL_FAMILIES["adv_cospgd"]),
    "adv_random_sign": AttackKind("linf", None, 0, False, True, ADVERSARIAL_FAMILIES["adv_random_sign"]),
    # runs every member at the same budget and keeps, per case, the one with the highest final loss on the
    # objective (pipeline.attack_case): a robustness figure from one attack is an upper bound
    "adv_ensemble": AttackKind("linf", "ensemble", 0, False, True, ADVERSARIAL_FAMILIES["adv_ensemble"]),
}
ENSEMBLE_MEMBERS = ("adv_fgsm", "adv_pgd_linf", "adv_segpgd", "adv_cospgd")


def severity_eps(severity: float) -> float:
    """Epsilon as a fraction of the robust intensity range for a severity in (0, 5]."""
    if isinstance(severity, bool) or not isinstance(severity, (int, float)) or not 0 < severity <= MAX_SEVERITY:
        raise UserInputError(f"attack severity {severity!r} is out of range (0, {MAX_SEVERITY}]")
    return 2.0 ** (float(severity) - 1.0) / 255.0


def pgd_step_fraction(steps: int) -> float:
    """PGD's default step size as a fraction of eps: 2.5 / steps, so that the walk can cross the ball
    (Madry et al., ICLR 2018)."""
    return 2.5 / steps


def _label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack condition. Exactly one of ``severity``, ``eps`` (fraction of the robust range) and
    ``eps_raw`` (raw intensity units) sets the budget; ``steps``/``step`` override the defaults."""

    family: str
    severity: float | None = None
    eps: float | None = None
    eps_raw: float | None = None
    steps: int | None = None
    step: float | None = None  # step size as a fraction of eps

    def __post_init__(self) -> None:
        family = ATTACK_ALIASES.get(self.family, self.family)
        object.__setattr__(self, "family", family)
        if family not in ATTACKS:
            raise UserInputError(f"unknown attack {self.family!r}; known: {', '.join(ATTACKS)}")
        budgets = [v for v in (self.severity, self.eps, self.eps_raw) if v is not None]
        if len(budgets) != 1:
            raise UserInputError(f"{family}: give exactly one of a severity, eps= (fraction of the intensity "
                                 f"range) or eps_raw= (raw units); got {len(budgets)}")
        if self.severity is not None:
            severity_eps(self.severity)  # validates
        for key in ("eps", "eps_raw"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UserInputError(f"{family}: {key}={value!r} must be a positive number")
        if self.eps is not None and self.eps > 1:
            raise UserInputError(f"{family}: eps={self.eps:g} is a fraction of the intensity range and must be "
                                 f"<= 1; use eps_raw= for raw units")
        if self.steps is not None:
            if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
                raise UserInputError(f"{family}: steps={self.steps!r} must be a positive integer")
            if self.kind.fixed_steps and self.steps != self.kind.default_steps:
                raise UserInputError(f"{family}: the number of steps is fixed ({self.kind.default_steps})")
        if self.step is not None and not (isinstance(self.step, (int, float)) and 0 < self.step <= 2):
            raise UserInputError(f"{family}: step={self.step!r} (step size as a fraction of eps) must be in (0, 2]")

    @property
    def kind(self) -> AttackKind:
        return ATTACKS[self.family]

    @property
    def n_steps(self) -> int:
        return self.steps if self.steps is not None else self.kind.default_steps

    @property
    def step_fraction(self) -> float:
        """Step size as a fraction of eps: ``step``, else 1 for FGSM and 2.5/steps for PGD."""
        if self.step is not None:
            return float(self.step)
        return 1.0 if self.kind.fixed_steps else pgd_step_fraction(self.n_steps)

    def channel_eps(self, spans: Sequence[float]) -> list[float]:
        """Per-channel epsilon in raw intensity units, given each channel's robust range ``span``."""
        if self.eps_raw is not None:
            return [float(self.eps_raw)] * len(spans)
        fraction = self.eps if self.eps is not None else severity_eps(self.severity)
        return [fraction * float(s) for s in spans]

    @property
    def name(self) -> str:
        """Condition/folder name: ``adv_pgd_linf_sev3`` or ``adv_pgd_linf_eps0.01_steps10[_step0.5]``."""
        if self.severity is not None:
            return f"{self.family}_sev{_label(self.severity)}"
        budget = f"eps{self.eps:g}" if self.eps is not None else f"epsraw{self.eps_raw:g}"
        name = f"{self.family}_{budget}"
        if self.family not in ("adv_random_sign", "adv_ensemble"):
            name += f"_steps{self.n_steps}"
        if self.step is not None:
            name += f"_step{self.step:g}"
        return name

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttackSpec:
        return cls(**data)


def get_attack(family: str, severity: float | None = None, **parameters: Any) -> AttackSpec:
    """``get_attack("adv_pgd_linf", 3)`` or ``get_attack("adv_pgd_l2", eps=0.02, steps=20)``."""
    unknown = set(parameters) - {"eps", "eps_raw", "steps", "step"}
    if unknown:
        raise UserInputError(f"{family}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                             "known: eps, eps_raw, steps, step")
    return AttackSpec(family, severity=severity, **parameters)


_PARAM_TYPES = {"eps": float, "eps_raw": float, "steps": int, "step": float}


def _parse_number(kind: type, text: str, spec: str) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise UserInputError(f"attack {spec!r}: cannot read {text!r} as {'an integer' if kind is int else 'a number'}")
    return value


def parse_attack_spec(spec: str) -> list[AttackSpec]:
    """Parse ``FAMILY``, ``FAMILY:3``, ``FAMILY:1,3,5``, ``FAMILY:1-5`` or
    ``FAMILY:key=v1,v2;key=v`` (a sweep over every combination) into attack conditions."""
    family, _, rest = spec.strip().partition(":")
    family = ATTACK_ALIASES.get(family.strip(), family.strip())
    if family not in ATTACKS:
        raise UserInputError(f"unknown attack {family!r} in {spec!r}; known: {', '.join(ATTACKS)}")
    rest = rest.strip()
    if not rest:
        return [AttackSpec(family, severity=s) for s in range(1, MAX_SEVERITY + 1)]
    if "=" not in rest:
        severities: list[float] = []
        for part in rest.split(","):
            part = part.strip()
            if "-" in part.strip("-"):
                low, high = (_parse_number(int, p, spec) for p in part.split("-", 1))
                severities.extend(range(low, high + 1))
            else:
                severities.append(_parse_number(float, part, spec))
        return [AttackSpec(family, severity=int(s) if float(s).is_integer() else s) for s in severities]
    grid: dict[str, list] = {}
    for item in rest.split(";"):
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or key not in _PARAM_TYPES:
            raise UserInputError(f"attack {spec!r}: expected key=value with keys {', '.join(_PARAM_TYPES)}; "
                                 f"got {item!r}")
        if key in grid:
            raise UserInputError(f"attack {spec!r}: {key} given twice")
        grid[key] = [_parse_number(_PARAM_TYPES[key], v.strip(), spec) for v in values.split(",") if v.strip()]
        if not grid[key]:
            raise UserInputError(f"attack {spec!r}: no value for {key}")
    keys = list(grid)
    return [AttackSpec(family, **dict(zip(keys, combo))) for combo in itertools.product(*(grid[k] for k in keys))]


# --- losses on the aggregated logits ------------------------------------------------------------------

def as_class_logits(logits: torch.Tensor, target: torch.Tensor, regions: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring region-based (sigmoid) outputs to the softmax form: each region channel r is a two-class
    problem with logits ``(0, l_r)`` (``sigmoid(l) = softmax((0, l))[1]``), so every loss below is
    written once for softmax logits ``(K, *S)`` and an integer target ``(*S)``."""
    if not regions:
        return logits, target
    return torch.stack([torch.zeros_like(logits), logits]), target.long()


def voxel_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-voxel cross entropy ``logsumexp(l) - l_y`` of logits ``(K, *S)`` against target ``(*S)``."""
    return torch.logsumexp(logits, dim=0) - logits.gather(0, target.unsqueeze(0)).squeeze(0)


def attack_objective(loss: str, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                     iteration: int, total: int) -> torch.Tensor:
    """The quantity an attack step ascends, summed over valid voxels (the sum, not the mean, keeps
    the per-voxel logit gradients O(1); every step normalises the gradient, so the scale is moot).

    - ``ce``: cross entropy (FGSM, PGD).
    - ``segpgd`` (Gu et al., ECCV 2022): ``(1 - lam) * CE(correct voxels) + lam * CE(wrong voxels)``
      with ``lam = t / (2 T)`` at iteration ``t = 0..T-1``: the first steps push voxels that are still
      classified as the target, later ones keep pushing those already flipped, so a flipped voxel is
      neither abandoned nor allowed to dominate.
    - ``cospgd`` (Agnihotri, Jung & Keuper, arXiv 2302.02213, 2023; ICML 2024):
      ``sum_v cos(softmax(l_v), onehot(y_v)) * CE_v``
      with the cosine weight detached: voxels the network still predicts confidently as the target
      weigh most, voxels already pushed away weigh little.
    """
    ce = voxel_cross_entropy(logits, target)
    if loss == "ce":
        weights = None
    elif loss == "segpgd":
        lam = iteration / (2.0 * max(total, 1))
        correct = logits.argmax(0) == target
        weights = torch.where(correct, 1.0 - lam, lam)
    elif loss == "cospgd":
        with torch.no_grad():
            probabilities = torch.softmax(logits, dim=0)
            target_probability = probabilities.gather(0, target.unsqueeze(0)).squeeze(0)
            weights = target_probability / probabilities.norm(dim=0).clamp_min(1e-12)
    else:
        raise ValueError(f"unknown attack loss {loss!r}")
    if weights is not None:
        ce = ce * weights
    return ce[valid].sum()


def mean_cross_entropy(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean cross entropy over the valid voxels: the loss the tests and reports quote."""
    with torch.no_grad():
        return float(voxel_cross_entropy(logits, target)[valid].mean())


def flipped_fraction(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float:
    """Share of valid voxels whose predicted class differs from the target."""
    with torch.no_grad():
        return float((logits.argmax(0) != target)[valid].float().mean())


# --- steps and projections (delta in raw units, per channel) ------------------------------------------

def _channel_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.ndim - 1)))


def _channel_counts(mask: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape[0], -1).sum(1).clamp_min(1).to(torch.float32)


def random_start(norm: str, eps: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Madry et al.'s random start: uniform in the L-inf ball, or a Gaussian direction scaled to a
    uniformly drawn RMS in ``[0, eps]`` for L2. ``mask`` (C, *S) marks the voxels that may change."""
    shape = tuple(mask.shape)
    if norm == "linf":
        delta = (torch.rand(shape, generator=generator) * 2 - 1) * _channel_view(eps, mask)
        return delta * mask
    direction = torch.randn(shape, generator=generator) * mask
    radius = torch.rand((shape[0],), generator=generator) * eps
    return project(direction, norm, radius, mask, exact_l2=True)


def ascent_step(delta: torch.Tensor, gradient: torch.Tensor, norm: str, step: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """One steepest-ascent step of size ``step`` (per channel, raw units) for the norm: the sign of the
    gradient for L-inf (Goodfellow et al. 2015), the per-channel normalised gradient scaled to an RMS
    of ``step`` for L2."""
    gradient = gradient * mask
    if norm == "linf":
        return delta + _channel_view(step, delta) * gradient.sign()
    norms = gradient.reshape(gradient.shape[0], -1).norm(dim=1).clamp_min(1e-30)
    scale = step * _channel_counts(mask).sqrt() / norms
    return delta + _channel_view(scale, delta) * gradient


def project(delta: torch.Tensor, norm: str, eps: torch.Tensor, mask: torch.Tensor,
            exact_l2: bool = False) -> torch.Tensor:
    """Euclidean projection onto the per-channel ball: clamp to ``[-eps, eps]`` (L-inf) or rescale
    channels whose RMS over ``mask`` exceeds ``eps`` (L2; ``exact_l2`` rescales every channel to RMS
    ``eps``). Voxels outside ``mask`` are set to zero."""
    delta = delta * mask
    if norm == "linf":
        bound = _channel_view(eps, delta)
        return torch.maximum(torch.minimum(delta, bound), -bound)
    rms = delta.reshape(delta.shape[0], -1).norm(dim=1) / _channel_counts(mask).sqrt()
    if exact_l2:
        factor = eps / rms.clamp_min(1e-30)
    else:
        factor = torch.where(rms > eps, eps / rms.clamp_min(1e-30), torch.ones_like(rms))
    return delta * _channel_view(factor, delta)


def norms(delta: torch.Tensor, mask: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel L-inf norm and RMS over ``mask`` of ``delta`` (C, *S)."""
    flat = (delta * mask).reshape(delta.shape[0], -1).double()
    linf = flat.abs().amax(dim=1)
    rms = flat.norm(dim=1) / _channel_counts(mask).double().sqrt()
    return [float(v) for v in linf], [float(v) for v in rms]

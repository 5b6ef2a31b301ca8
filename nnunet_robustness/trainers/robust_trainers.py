"""Trainers that learn robustness: corruption augmentation and adversarial training inside nnU-Net.

**Corruption augmentation** applies families of our corruption catalogue to training samples, as a
batchgeneratorsv2 transform placed *first* in nnU-Net's training pipeline: before the spatial
transform and nnU-Net's own intensity augmentations, because an acquisition artefact happens in the
scanner, before anything else touches the image. Per sample, with probability ``probability``, one
family is drawn from ``families`` and a severity uniformly from ``severity`` (the catalogue's graded
scale, fractional levels interpolated), and the family is applied with a seed drawn from NumPy's
global generator, which nnU-Net seeds per data-augmentation worker (so runs are reproducible the way
nnU-Net's own augmentation is, and workers do not repeat each other).

*Intensity space.* nnU-Net trains on preprocessed, normalised data (z-score for MR channels), so the
raw intensities are gone. Our families are defined relative to the image's robust intensity range and
so are unchanged by a scaling of the intensities; what a normalisation removes that matters is the
offset, because multiplicative physics (bias field, Rician magnitude noise) acts on intensities whose
zero is the scanner's zero. Each sample is therefore shifted so that its per-channel minimum is 0 —
the raw MR background — corrupted, and shifted back. (CT's HU-based families are not offered: their
physics needs absolute HU.)

*Device.* nnU-Net runs its augmentation in CPU worker processes, in parallel with the training step,
so the transform runs there on the CPU; it costs training time only when the workers fall behind
(``benchmarks/bench_robust_training.py`` measures the iteration time with and without it).

**Held-out families.** The families a model trained with are recorded next to its checkpoints
(``<model folder>/robust_training_record.json``), and ``eval`` reads that record to report the degradation
on *seen* and *unseen* families separately (``docs/robust_training.md``). The default trains on noise,
bias field and blur and leaves the k-space and resolution families unseen.

**Adversarial training** (Madry et al., "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018; FGSM: Goodfellow et al., ICLR 2015) replaces a share of each batch by PGD
perturbations of the (normalised) patches within an L-infinity ball of radius ``epsilon`` in
normalised intensity units, maximising nnU-Net's own training loss; ``steps = 1`` with no random
start is FGSM.

**Options** come from ``$nnUNet_preprocessed/DatasetXXX/robust_training.json`` when present::

    {"corruption_augmentation": {"families": ["gaussian_noise", "bias_field"], "severity": [1, 4],
                                 "probability": 0.3},
     "adversarial": {"epsilon": 0.1, "steps": 3, "share": 0.5}}

Missing keys take the defaults below; unknown keys, families or out-of-range values are refused with a
message naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import ImageOnlyTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from nnunet_robustness.errors import UserInputError

OPTIONS_FILE = "robust_training.json"
# noise, bias field and blur: what a heterogeneous scanner fleet varies most; k-space artefacts and
# resolution stay unseen, so the before/after report can tell seen from unseen robustness
DEFAULT_FAMILIES = ("gaussian_noise", "rician_noise", "bias_field", "gaussian_blur")


def _trainable_families() -> dict[str, str]:
    """family -> why it cannot be trained with ('' when it can)."""
    from nnunet_robustness.corruptions import CORRUPTIONS
    from nnunet_robustness.corruptions.catalogue import GENERAL_GROUPS

    reasons = {}
    for name, cls in CORRUPTIONS.items():
        if cls.group not in GENERAL_GROUPS:
            reasons[name] = f"its physics needs absolute intensities of its modality ({cls.group})"
        elif cls.requires_label:
            reasons[name] = "it needs the reference label"
        else:
            reasons[name] = ""
    return reasons


@dataclass(frozen=True)
class CorruptionAugmentation:
    """Which families, how strong, how often."""

    families: tuple[str, ...] = DEFAULT_FAMILIES
    severity: tuple[float, float] = (1.0, 3.0)
    probability: float = 0.3

    def __post_init__(self) -> None:
        from nnunet_robustness.corruptions import MAX_SEVERITY

        reasons = _trainable_families()
        if not self.families:
            raise UserInputError("corruption_augmentation: families is empty")
        for family in self.families:
            if family not in reasons:
                raise UserInputError(f"corruption_augmentation: unknown family {family!r} "
                                     "(`nnunet-robust corrupt --list`)")
            if reasons[family]:
                raise UserInputError(f"corruption_augmentation: {family} cannot be trained with: {reasons[family]}")
        low, high = self.severity
        if not 0 < low <= high <= MAX_SEVERITY:
            raise UserInputError(f"corruption_augmentation: severity [{low:g}, {high:g}] must satisfy "
                                 f"0 < low <= high <= {MAX_SEVERITY}")
        if not 0 <= self.probability <= 1:
            raise UserInputError(f"corruption_augmentation: probability {self.probability:g} must be in [0, 1]")


@dataclass(frozen=True)
class AdversarialTraining:
    """PGD (FGSM when steps == 1) on a share of each batch; epsilon in normalised intensity units."""

    epsilon: float = 0.1
    steps: int = 3
    share: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise UserInputError(f"adversarial: epsilon {self.epsilon:g} must be > 0")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise UserInputError(f"adversarial: steps {self.steps!r} must be an int >= 1")
        if not 0 < self.share <= 1:
            raise UserInputError(f"adversarial: share {self.share:g} must be in (0, 1]")

    @property
    def step_size(self) -> float:
        """FGSM's one full step for one step, else PGD's default step (the attacks' own rule)."""
        from nnunet_robustness.adversarial.attacks import pgd_step_fraction

        return self.epsilon if self.steps == 1 else self.epsilon * pgd_step_fraction(self.steps)


@dataclass(frozen=True)
class RobustTrainingOptions:
    """The options file (``robust_training.json``): one dataclass owns its format."""

    corruption_augmentation: CorruptionAugmentation = field(default_factory=CorruptionAugmentation)
    adversarial: AdversarialTraining = field(default_factory=AdversarialTraining)

    @classmethod
    def read(cls, path: Path) -> "RobustTrainingOptions":
        """The options in ``path``, or the defaults when it does not exist."""
        path = Path(path)
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UserInputError(f"{path}: not readable JSON ({e})") from None
        try:
            return cls.from_json(data)
        except UserInputError as e:
            raise UserInputError(f"{path}: {e}") from None

    @classmethod
    def from_json(cls, data: Any) -> "RobustTrainingOptions":
        if not isinstance(data, dict) or set(data) - {"corruption_augmentation", "adversarial"}:
            raise UserInputError("expected an object with corruption_augmentation and/or adversarial")
        sections = {"corruption_augmentation": (CorruptionAugmentation, {"families", "severity", "probability"}),
                    "adversarial": (AdversarialTraining, {"epsilon", "steps", "share"})}
        built = {}
        for key, (kind, allowed) in sections.items():
            values = data.get(key, {})
            if not isinstance(values, dict) or set(values) - allowed:
                raise UserInputError(f"{key}: expected an object with keys among {sorted(allowed)}")
            values = dict(values)
            if "families" in values:
                values["families"] = tuple(values["families"])
            if "severity" in values:
                severity = values["severity"]
                if not (isinstance(severity, list) and len(severity) == 2):
                    raise UserInputError(f"{key}: severity must be [low, high]")
                values["severity"] = (float(severity[0]), float(severity[1]))
            built[key] = kind(**values)
        return cls(**built)

    def to_json(self) -> dict[str, Any]:
        augmentation = asdict(self.corruption_augmentation)
        return {"corruption_augmentation": {**augmentation, "families": list(augmentation["families"]),
                                            "severity": list(augmentation["severity"])},
                "adversarial": asdict(self.adversarial)}


# --- the transform ----------------------------------------------------------------------------------

class CorruptionAugmentationTransform(ImageOnlyTransform):
    """batchgeneratorsv2 transform: one catalogue family per sample, with probability ``probability``.

    ``spacing``: the configuration's voxel spacing (mm) of the samples this transform sees, as the
    families with a physical scale (blur, resolution, motion) need it.
    """

    def __init__(self, augmentation: CorruptionAugmentation, spacing: tuple[float, ...]) -> None:
        super().__init__()
        self.augmentation = augmentation
        self.spacing = tuple(float(s) for s in spacing)

    def get_parameters(self, **data_dict) -> dict:
        if np.random.uniform() >= self.augmentation.probability:
            return {"family": None}
        low, high = self.augmentation.severity
        return {"family": self.augmentation.families[np.random.randint(len(self.augmentation.families))],
                "severity": float(np.random.uniform(low, high)), "seed": int(np.random.randint(2 ** 31))}

    def _apply_to_image(self, img: torch.Tensor, family: str | None = None, severity: float = 0.0,
                        seed: int = 0) -> torch.Tensor:
        if family is None:
            return img
        from nnunet_robustness.corruptions import get_corruption

        if len(self.spacing) != img.ndim - 1:
            raise UserInputError(f"corruption augmentation: {img.ndim - 1}D samples but a {len(self.spacing)}D "
                                 "spacing")
        # the sample's minimum stands in for the scanner's zero (module docstring, "Intensity space")
        zero = img.reshape(img.shape[0], -1).amin(dim=1).view(-1, *([1] * (img.ndim - 1)))
        corrupted = get_corruption(family, severity=severity)(img - zero, self.spacing, seed=seed)
        return corrupted + zero


# --- trainers' behaviour ------------------------------------------------------------------------------

class RobustTrainingMixin:
    """Reads the options file of the dataset, and records it next to the checkpoints."""

    @property
    def robust_training_options(self) -> RobustTrainingOptions:
        if getattr(self, "_robust_training_options", None) is None:
            base = self.preprocessed_dataset_folder_base
            self._robust_training_options = RobustTrainingOptions.read(Path(base) / OPTIONS_FILE) if base else \
                RobustTrainingOptions()
        return self._robust_training_options

    def _record_robust_training(self, used: dict[str, Any]) -> None:
        """Write what this training used next to the checkpoints (``TrainingRecord``; eval reads it)."""
        from nnunet_robustness.records.training_record import TrainingRecord

        if self.local_rank == 0 and self.output_folder_base is not None:
            TrainingRecord(type(self).__name__, used).write(Path(self.output_folder_base))
        self.print_to_log_file(f"robust training: {json.dumps(used)}")


class CorruptionAugmentationMixin(RobustTrainingMixin):
    """Prepends :class:`CorruptionAugmentationTransform` to nnU-Net's training transforms."""

    def on_train_start(self) -> None:
        augmentation = self.robust_training_options.to_json()["corruption_augmentation"]
        self._record_robust_training({"corruption_augmentation": augmentation})
        super().on_train_start()

    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, **kwargs):
        base = super().get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                               do_dummy_2d_data_aug, **kwargs)
        transform = CorruptionAugmentationTransform(self.robust_training_options.corruption_augmentation,
                                                    tuple(self.configuration_manager.spacing))
        return ComposeTransforms([transform, *base.transforms])


class AdversarialTrainingMixin(RobustTrainingMixin):
    """Replaces the first ``share`` of each batch by PGD perturbations that maximise the training loss."""

    def on_train_start(self) -> None:
        self._record_robust_training({"adversarial": self.robust_training_options.to_json()["adversarial"]})
        super().on_train_start()

    def train_step(self, batch: dict) -> dict:
        options = self.robust_training_options.adversarial
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) else \
            target.to(self.device, non_blocking=True)
        n = int(round(options.share * data.shape[0]))
        if n:
            adversarial = self.adversarial_examples(data[:n], [t[:n] for t in target] if isinstance(target, list)
                                                    else target[:n], options)
            data = torch.cat([adversarial, data[n:]])
        return super().train_step({**batch, "data": data, "target": target})

    def adversarial_examples(self, data: torch.Tensor, target: Any, options: AdversarialTraining) -> torch.Tensor:
        """PGD in the L-infinity ball around ``data`` (random start; FGSM when steps == 1)."""
        epsilon, step = options.epsilon, options.step_size
        delta = torch.zeros_like(data) if options.steps == 1 else torch.empty_like(data).uniform_(-epsilon, epsilon)
        for _ in range(options.steps):
            delta.requires_grad_(True)
            with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
                loss = self.loss(self.network(data + delta), target)
            grad, = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + step * grad.sign()).clamp_(-epsilon, epsilon)
        return (data + delta).detach()

"""Our nnU-Net trainers: the hand-written bases, and the tables their variants are generated from.

Read like nnU-Net's own ``variants/``: each trainer changes one or two things of its base. The
schedule and sampling variants (``<base>_<suffix>``, e.g. ``nnUNetTrainerNoSkip_5epochs``) are literal
classes in :mod:`nnunet_robustness.trainers.generated`, written from the tables below by
``python -m nnunet_robustness.trainers.generate``; each is a subclass of its base and of
:class:`TrainerVariant` that sets, as class attributes, the hyper-parameters it changes.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_robustness.trainers.builders import skip_selective_builder
from nnunet_robustness.trainers.learned_skip import LearnedSkipGatesMixin
from nnunet_robustness.trainers.progress import TrainingProgressMixin
from nnunet_robustness.trainers.robust_trainers import AdversarialTrainingMixin, CorruptionAugmentationMixin


class nnUNetTrainerNoSkip(nnUNetTrainer):
    """U-Net without skip connections: the decoder sees only the bottleneck features."""

    build_network_architecture = staticmethod(skip_selective_builder(skip_levels="none"))


class nnUNetTrainerAttentionGate(nnUNetTrainer):
    """U-Net with an additive attention gate (Oktay et al. 2018) on every skip connection."""

    build_network_architecture = staticmethod(skip_selective_builder(attention_gates=True))


class nnUNetTrainerLearnedSkip(LearnedSkipGatesMixin, nnUNetTrainer):
    """U-Net with a learnable scalar sigmoid gate on every skip connection (initialised open), an
    optional L1 penalty on the gates, and the gate values logged per epoch (learned_gates.json/.png)."""

    build_network_architecture = staticmethod(skip_selective_builder(learned_gates="scalar"))


class nnUNetTrainerLearnedSkipL1(nnUNetTrainerLearnedSkip):
    """nnUNetTrainerLearnedSkip with an L1 penalty of weight 0.01 on the gate values.

    The penalty pushes the skips the segmentation loss does not need towards closed."""

    gate_sparsity_weight = 0.01


ARCHITECTURE_TRAINERS: tuple[type, ...] = (nnUNetTrainerNoSkip, nnUNetTrainerAttentionGate, nnUNetTrainerLearnedSkip)


class nnUNetTrainerCorruptionAug(CorruptionAugmentationMixin, nnUNetTrainer):
    """nnU-Net's U-Net trained with corruption augmentation (catalogue families first in the pipeline;
    options: robust_training.json next to the preprocessed dataset)."""


class nnUNetTrainerNoSkipCorruptionAug(CorruptionAugmentationMixin, nnUNetTrainerNoSkip):
    """No-Skip U-Net trained with corruption augmentation."""


class nnUNetTrainerAttentionGateCorruptionAug(CorruptionAugmentationMixin, nnUNetTrainerAttentionGate):
    """Attention-gated U-Net trained with corruption augmentation."""


class nnUNetTrainerAdversarial(AdversarialTrainingMixin, nnUNetTrainer):
    """nnU-Net's U-Net with adversarial training (PGD on a share of each batch; options:
    robust_training.json next to the preprocessed dataset)."""


class nnUNetTrainerNoSkipAdversarial(AdversarialTrainingMixin, nnUNetTrainerNoSkip):
    """No-Skip U-Net with adversarial training."""


class nnUNetTrainerAttentionGateAdversarial(AdversarialTrainingMixin, nnUNetTrainerAttentionGate):
    """Attention-gated U-Net with adversarial training."""


ROBUST_TRAINERS: tuple[type, ...] = (
    nnUNetTrainerCorruptionAug, nnUNetTrainerNoSkipCorruptionAug, nnUNetTrainerAttentionGateCorruptionAug,
    nnUNetTrainerAdversarial, nnUNetTrainerNoSkipAdversarial, nnUNetTrainerAttentionGateAdversarial)

# suffix -> hyper-parameters set after nnUNetTrainer.__init__ (where nnU-Net sets its defaults).
# The epoch counts mirror nnU-Net's variants/training_length. Two CPU schedules are new: "tiny" is a
# smoke test that trains, validates and writes checkpoint_final.pth in seconds; "short" (100
# iterations) is enough for an easy synthetic task to reach a usable Dice (tests, demo).
SCHEDULES: dict[str, dict[str, int]] = {
    "1epoch": {"num_epochs": 1},
    **{f"{n}epochs": {"num_epochs": n} for n in (5, 10, 20, 50, 100, 250, 500, 750, 2000, 4000, 8000)},
    "tiny": {"num_epochs": 1, "num_iterations_per_epoch": 10, "num_val_iterations_per_epoch": 2},
    "short": {"num_epochs": 2, "num_iterations_per_epoch": 50, "num_val_iterations_per_epoch": 5},
}
# The bases that get every schedule. The L1 variant of the learned gates gets the schedules only: it is
# an experiment on the gates, not an architecture for the sampling studies.
SCHEDULE_BASES: tuple[type, ...] = (*ARCHITECTURE_TRAINERS, nnUNetTrainerLearnedSkipL1, *ROBUST_TRAINERS)

CPU_SCHEDULES = ("tiny", "short")
# The fg variants also come with the schedules the studies' cpu scale trains (``nnunet-robust study``):
# nnUNetTrainer_fg033_20epochs is nnU-Net's default sampling, logged, for 5000 iterations (the cpu
# scale's replicate runs); _50epochs is the cpu scale's No-Skip arm (at 5000 iterations two of its three
# runs still rose 0.002 Dice per epoch); _10epochs is the first wave's schedule (robust training, learned gates).
FG_SCHEDULES = (*CPU_SCHEDULES, "10epochs", "20epochs", "50epochs")

# suffix -> oversample_foreground_percent: the share of each batch whose patch is centred on a
# foreground voxel (nnU-Net's default is 0.33). nnU-Net rounds per batch: the last
# ``batch_size - round(batch_size * (1 - p))`` samples are forced, so with batch size 2, fg033 and
# fg066 both force one of the two patches. fg variants also log the realised foreground fraction of
# their training patches (FBRLoggingMixin), so fg033 is "nnU-Net's default sampling, measured".
FOREGROUND_OVERSAMPLING: dict[str, float] = {"fg000": 0.0, "fg033": 0.33, "fg066": 0.66, "fg100": 1.0}

# The bases the fg variants are generated for: nnU-Net's U-Net, our architectures and the robust
# trainers (so that a robust model trains with the same sampling and schedule as its baseline).
FG_BASES: tuple[type, ...] = (nnUNetTrainer, *ARCHITECTURE_TRAINERS, *ROBUST_TRAINERS)

# The nnUNetTrainer attributes a variant may set (nnUNetTrainer.__init__ assigns all of them).
HYPERPARAMETERS = frozenset({
    "num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch", "initial_lr", "weight_decay",
    "oversample_foreground_percent", "save_every",
})


class TrainerVariant(TrainingProgressMixin):
    """Base of every schedule and sampling variant (``class nnUNetTrainerNoSkip_20epochs(TrainerVariant,
    nnUNetTrainerNoSkip)`` with ``num_epochs = 20``).

    A variant states its hyper-parameters as class attributes; nnUNetTrainer.__init__ assigns nnU-Net's
    defaults to the instance, which would hide them, so they are copied onto the instance afterwards
    (the nearest class wins: ``nnUNetTrainer_fg100_tiny`` keeps fg100's sampling and sets tiny's
    schedule). Every variant also writes its iterations for the pipeline's progress lines.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # the same parameter names as nnUNetTrainer's: it records them for its checkpoints
        super().__init__(plans, configuration, fold, dataset_json, device)
        for name, value in variant_settings(type(self)).items():
            setattr(self, name, value)


def variant_settings(cls: type) -> dict:
    """The hyper-parameters the variant classes in ``cls``'s bases set, the nearest class winning."""
    settings = {}
    for klass in reversed(cls.__mro__):
        if issubclass(klass, TrainerVariant):
            settings.update({k: v for k, v in vars(klass).items() if k in HYPERPARAMETERS})
    return settings


def variant_bases(base: type, mixins: tuple[type, ...] = ()) -> tuple[type, ...]:
    """The bases of the variant ``<base>_<suffix>``: ``mixins`` (behaviour added on top of the base, e.g.
    FBR logging; they must not define ``__init__``), TrainerVariant once, then ``base``."""
    return (*mixins, *(() if issubclass(base, TrainerVariant) else (TrainerVariant,)), base)


def variant_doc(base_name: str, settings: dict) -> str:
    return f"{base_name} with {', '.join(f'{k}={v}' for k, v in settings.items())}."


def make_variant(base: type, suffix: str, mixins: tuple[type, ...] = (), **hyperparameters) -> type:
    """Subclass ``base`` as ``<base>_<suffix>``, overriding nnUNetTrainer hyper-parameters, at run time.

    The variants we ship are written out in :mod:`nnunet_robustness.trainers.generated` instead; this is
    for other lengths. nnU-Net's predictor looks the class up by name again (checkpoints store only the
    name), so it must be importable through nnU-Net's trainer search.
    """
    unknown = [k for k in hyperparameters if k not in HYPERPARAMETERS]
    if unknown:
        raise ValueError(f"not nnUNetTrainer hyper-parameters: {unknown}; known: {sorted(HYPERPARAMETERS)}")
    name = f"{base.__name__}_{suffix}"
    return type(name, variant_bases(base, mixins), {
        **hyperparameters,
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": variant_doc(base.__name__, hyperparameters),
    })

"""Our nnU-Net trainers: architecture variants and the schedule variants generated from them.

Read like nnU-Net's own ``variants/``: each trainer changes one or two things of its base.
Generated names follow nnU-Net's convention ``<base>_<suffix>``, e.g. ``nnUNetTrainerNoSkip_5epochs``.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_robustness.trainers.builders import skip_selective_builder
from nnunet_robustness.trainers.fbr import FBRLoggingMixin
from nnunet_robustness.trainers.learned_skip import LearnedSkipGatesMixin
from nnunet_robustness.trainers.progress import TrainingProgressMixin
from nnunet_robustness.trainers.robust_training import AdversarialTrainingMixin, CorruptionAugmentationMixin


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


CPU_SCHEDULES = ("tiny", "short")
# The fg variants also come with the schedules the studies' cpu scale trains (``nnunet-robust study``):
# nnUNetTrainer_fg033_20epochs is nnU-Net's default sampling, logged, for 5000 iterations (the cpu
# scale's replicate runs); _10epochs is the first wave's schedule (robust training, learned gates).
FG_SCHEDULES = (*CPU_SCHEDULES, "10epochs", "20epochs")

# suffix -> oversample_foreground_percent: the share of each batch whose patch is centred on a
# foreground voxel (nnU-Net's default is 0.33). nnU-Net rounds per batch: the last
# ``batch_size - round(batch_size * (1 - p))`` samples are forced, so with batch size 2, fg033 and
# fg066 both force one of the two patches. fg variants also log the realised foreground fraction of
# their training patches (FBRLoggingMixin), so fg033 is "nnU-Net's default sampling, measured".
FOREGROUND_OVERSAMPLING: dict[str, float] = {"fg000": 0.0, "fg033": 0.33, "fg066": 0.66, "fg100": 1.0}

# The bases the fg variants are generated for: nnU-Net's U-Net, our architectures and the robust
# trainers (so that a robust model trains with the same sampling and schedule as its baseline).
FG_BASES: tuple[type, ...] = (nnUNetTrainer, *ARCHITECTURE_TRAINERS, *ROBUST_TRAINERS)


def make_variant(base: type, suffix: str, mixins: tuple[type, ...] = (), **hyperparameters) -> type:
    """Subclass ``base`` as ``<base>_<suffix>``, overriding nnUNetTrainer hyper-parameters.

    ``mixins`` come before ``base`` in the new class's bases (behaviour added on top of the base,
    e.g. FBR logging); they must not define ``__init__``. Every variant writes its iterations for the
    pipeline's progress lines (``TrainingProgressMixin``, once in the bases).
    The new class lives in this module (checkpoints store the class name and the predictor looks it
    up again through nnU-Net's trainer search, which finds it via our shim module).
    """
    unknown = [k for k in hyperparameters if k not in _KNOWN_HYPERPARAMETERS]
    if unknown:
        raise ValueError(f"not nnUNetTrainer hyper-parameters: {unknown}; known: {sorted(_KNOWN_HYPERPARAMETERS)}")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        for name, value in hyperparameters.items():
            setattr(self, name, value)

    if not issubclass(base, TrainingProgressMixin):
        mixins = (*mixins, TrainingProgressMixin)
    name = f"{base.__name__}_{suffix}"
    settings = ", ".join(f"{k}={v}" for k, v in hyperparameters.items())
    return type(name, (*mixins, base), {
        "__init__": __init__,
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"{base.__name__} with {settings}.",
    })


_KNOWN_HYPERPARAMETERS = frozenset({
    "num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch", "initial_lr", "weight_decay",
    "oversample_foreground_percent", "save_every",
})


def _generate() -> dict[str, type]:
    generated = {}
    for base in (*ARCHITECTURE_TRAINERS, *ROBUST_TRAINERS):
        for suffix, hyperparameters in SCHEDULES.items():
            cls = make_variant(base, suffix, **hyperparameters)
            generated[cls.__name__] = cls
    # nnU-Net ships nnUNetTrainer_<N>epochs itself; only the CPU schedules are new for the stock U-Net.
    # (Redefining nnU-Net's names would shadow them, since our shim is found first.)
    for suffix in CPU_SCHEDULES:
        cls = make_variant(nnUNetTrainer, suffix, **SCHEDULES[suffix])
        generated[cls.__name__] = cls
    # Foreground oversampling: <base>_<fgXXX>, and <base>_<fgXXX>_<schedule> for FG_SCHEDULES
    # (sampling is the variant, the schedule how long it runs: nnUNetTrainer_fg100_tiny).
    for base in FG_BASES:
        for fg_suffix, percent in FOREGROUND_OVERSAMPLING.items():
            fg_cls = make_variant(base, fg_suffix, mixins=(FBRLoggingMixin,), oversample_foreground_percent=percent)
            generated[fg_cls.__name__] = fg_cls
            for suffix in FG_SCHEDULES:
                cls = make_variant(fg_cls, suffix, **SCHEDULES[suffix])
                generated[cls.__name__] = cls
    return generated


GENERATED_TRAINERS = _generate()
globals().update(GENERATED_TRAINERS)

TRAINERS: dict[str, type] = {
    **{cls.__name__: cls for cls in (*ARCHITECTURE_TRAINERS, *ROBUST_TRAINERS)},
    **GENERATED_TRAINERS,
}
__all__ = sorted(TRAINERS)


def trainer_listing() -> str:
    """Every trainer name with its one-line description, sorted: the text of ``nnunet-robust doctor
    --list-trainers`` and of the list in ``docs/trainers.md`` (the generated names made greppable)."""
    width = max(map(len, TRAINERS))
    return "\n".join(f"{name:<{width}}  {(TRAINERS[name].__doc__ or '').strip().splitlines()[0]}"
                     for name in sorted(TRAINERS))

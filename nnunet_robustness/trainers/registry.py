"""Every trainer we ship, by name: the hand-written ones in :mod:`nnunet_robustness.trainers.variants`
and the generated variants in :mod:`nnunet_robustness.trainers.generated`."""

from __future__ import annotations

from types import ModuleType

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_robustness.trainers import variants
from nnunet_robustness.trainers.generated import (
    adversarial_variants,
    corruption_aug_variants,
    learned_skip_variants,
    unet_variants,
)


def trainers_defined_in(module: ModuleType) -> dict[str, type]:
    """The nnUNetTrainer subclasses whose ``class`` statement is in ``module`` (not the imported bases)."""
    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, type) and issubclass(obj, nnUNetTrainer) and obj.__module__ == module.__name__}


GENERATED_TRAINERS: dict[str, type] = {
    name: cls for module in (unet_variants, learned_skip_variants, corruption_aug_variants, adversarial_variants)
    for name, cls in trainers_defined_in(module).items()
}
TRAINERS: dict[str, type] = {**trainers_defined_in(variants), **GENERATED_TRAINERS}


def trainer_listing() -> str:
    """Every trainer name with its one-line description, sorted: the text of ``nnunet-robust doctor
    --list-trainers`` and of the list in ``docs/trainers.md`` (the generated names made greppable)."""
    width = max(map(len, TRAINERS))
    return "\n".join(f"{name:<{width}}  {(TRAINERS[name].__doc__ or '').strip().splitlines()[0]}"
                     for name in sorted(TRAINERS))

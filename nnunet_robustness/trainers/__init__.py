"""nnU-Net trainers shipped by nnunet-robustness.

``nnUNetv2_train ... -tr nnUNetTrainerNoSkip`` finds these through a one-line shim module placed
in ``nnunetv2/training/nnUNetTrainer/`` (see :mod:`nnunet_robustness.shim`).
"""

from nnunet_robustness.trainers.variants import *  # noqa: F403  (the trainer classes)
from nnunet_robustness.trainers.variants import SCHEDULES, TRAINERS, make_variant  # noqa: F401  (API, not trainers)
from nnunet_robustness.trainers.variants import __all__ as _trainer_names

__all__ = list(_trainer_names)

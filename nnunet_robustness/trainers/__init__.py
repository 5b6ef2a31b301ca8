"""nnU-Net trainers shipped by nnunet-robustness.

``nnUNetv2_train ... -tr nnUNetTrainerNoSkip`` finds these through a one-line shim module placed
in ``nnunetv2/training/nnUNetTrainer/`` (see :mod:`nnunet_robustness.shim`), which star-imports this
package: every trainer of the registry is therefore a name here.
"""

from nnunet_robustness.trainers.registry import TRAINERS
from nnunet_robustness.trainers.variants import SCHEDULES, make_variant  # noqa: F401  (API, not trainers)

globals().update(TRAINERS)
__all__ = sorted(TRAINERS)

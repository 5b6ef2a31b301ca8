"""The seed studies by name (``nnunet-robust study NAME``)."""

from __future__ import annotations

from nnunet_robustness.studies.context_fbr import ContextFBR
from nnunet_robustness.studies.noise import Noise
from nnunet_robustness.studies.protocols import Study
from nnunet_robustness.studies.skip_complexity import SkipComplexity

STUDIES: dict[str, type[Study]] = {cls.name: cls for cls in (SkipComplexity, Noise, ContextFBR)}

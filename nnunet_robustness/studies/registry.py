"""The seed studies by name (``nnunet-robust study NAME``)."""

from __future__ import annotations

from nnunet_robustness.studies.f1_skip_complexity import SkipComplexity
from nnunet_robustness.studies.f2_noise import Noise
from nnunet_robustness.studies.f3_context_fbr import ContextFBR
from nnunet_robustness.studies.protocols import Study

STUDIES: dict[str, type[Study]] = {cls.name: cls for cls in (SkipComplexity, Noise, ContextFBR)}

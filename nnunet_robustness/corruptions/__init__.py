"""Catalogue of image corruptions at graded severities, for robustness evaluation.

Images use nnU-Net's layout: channels first, ``(C, X, Y)`` or ``(C, X, Y, Z)``, with one spacing
value (mm) per spatial axis. Example::

    from nnunet_robustness.corruptions import get_corruption
    corruption = get_corruption("gaussian_noise", severity=3)
    noisy = corruption(image, spacing=(1.0, 0.8, 0.8), seed=0)

Severity is an int 1..5 (the documented level table of each family) or a float in [0, 5] for sweeps
(linear interpolation between levels, 0 = unchanged). The same ``(image, family, severity, seed)``
gives bit-identical output on the same device; labels, shape, dtype and spacing are never changed.
For logging or replay, use the two steps separately::

    params = corruption.sample_parameters(image_float32, spacing, torch.Generator().manual_seed(seed))
    out = corruption.apply(image_float32, params, spacing, label=None)
"""

from __future__ import annotations

from typing import Any

from nnunet_robustness.corruptions._core import (
    CORRUPTIONS,
    MAX_SEVERITY,
    Corruption,
    IntensityReference,
    Params,
    SeverityTable,
    derive_seed,
    intensity_reference,
    list_families,
    unknown_name_error,
)

# isort: off
# Importing the family modules registers them; this order is the catalogue order.
from nnunet_robustness.corruptions import noise, blur, resolution, intensity, kspace  # noqa: F401
from nnunet_robustness.corruptions import ct, ultrasound, microscopy  # noqa: F401  (modality-specific)
# isort: on
from nnunet_robustness.corruptions.presets import PRESETS, Preset
from nnunet_robustness.errors import UserInputError


def get_corruption(name: str, severity: float | None = None, **parameters: Any) -> Corruption:
    """Build a corruption from a family name and severity, or from a preset name.

    ``get_corruption("gaussian_blur", severity=2)``; ``get_corruption("gaussian_blur", sigma_mm=1.2)``
    (explicit values instead of a severity); ``get_corruption("seed-study:harder")`` (a preset, whose
    parameters are fixed). Raises ``UserInputError`` for unknown names or invalid values.
    """
    if name in PRESETS:
        if severity is not None or parameters:
            raise UserInputError(f"preset {name!r} fixes its parameters; do not pass a severity or parameters")
        preset = PRESETS[name]
        return CORRUPTIONS[preset.family](**preset.parameters)
    if name not in CORRUPTIONS:
        raise unknown_name_error(name, [*CORRUPTIONS, *PRESETS])
    return CORRUPTIONS[name](severity, **parameters)


__all__ = [
    "CORRUPTIONS", "MAX_SEVERITY", "PRESETS", "Corruption", "IntensityReference", "Params", "Preset",
    "SeverityTable", "derive_seed", "get_corruption", "intensity_reference", "list_families",
]

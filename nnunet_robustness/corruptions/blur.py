"""Blur families: spacing-aware Gaussian blur and background-only blur."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from nnunet_robustness.corruptions._core import Corruption, Params, SeverityTable, register
from nnunet_robustness.corruptions._ops import gaussian_blur


@register
class GaussianBlur(Corruption):
    """Gaussian blur with an isotropic sigma in **mm**: a wider point-spread function (defocus,
    smoothing reconstruction kernels, patient motion within a frame). The sigma in voxels is
    ``sigma_mm / spacing`` per axis, so the same level blurs the same anatomy on any grid
    (FWHM = 2.355 sigma).

    Same operation as TorchIO's ``Blur`` (SciPy ``gaussian_filter``: kernel truncated at 4 sigma,
    mirror-reflected borders); matches it to float32 rounding.

    Reference: Gonzalez & Woods, Digital Image Processing, 4th ed., 2018, section 3.5 (smoothing filters).
    """

    family = "gaussian_blur"
    group = "blur"
    summary = "Gaussian blur with sigma in mm (spacing-aware point-spread function)"
    table = SeverityTable(
        identity={"sigma_mm": 0.0},
        levels=tuple({"sigma_mm": v} for v in (0.5, 1.0, 1.5, 2.0, 3.0)),
        meanings=(
            "sigma 0.5 mm (FWHM 1.2 mm): slightly soft, like a smooth CT kernel",
            "sigma 1 mm (FWHM 2.4 mm): visibly soft edges",
            "sigma 1.5 mm (FWHM 3.5 mm): thin structures (vessels, cortex) smeared",
            "sigma 2 mm (FWHM 4.7 mm): small lesions lose contrast",
            "sigma 3 mm (FWHM 7 mm): structures under ~1 cm blend together",
        ),
    )

    def validate(self) -> None:
        self._require(self.values["sigma_mm"] >= 0, f"sigma_mm must be >= 0, got {self.values['sigma_mm']}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        return {"sigma_voxels": [self.values["sigma_mm"] / s for s in spacing]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        return gaussian_blur(image, params["sigma_voxels"])


@register
class BackgroundBlur(Corruption):
    """Gaussian blur of the background only: voxels outside the reference foreground (label > 0)
    are replaced by the blurred image, the foreground is untouched. This is the "easier"/"easiest"
    condition of Kamath et al., "Do we really need that skip-connection? Understanding its
    interplay with task complexity", MICCAI 2023 (https://doi.org/10.1007/978-3-031-43901-8_29): removing
    background texture makes the task easier and shows how much a model relies on context.

    ``sigma`` is in mm by default; ``unit='voxel'`` gives it in voxels along every axis (the seed
    study's presets: 3 and 7 px). Needs ``label``.
    """

    family = "background_blur"
    group = "blur"
    summary = "Gaussian blur outside the reference foreground only (needs the label; context ablation)"
    table = SeverityTable(
        identity={"sigma": 0.0},
        levels=tuple({"sigma": v} for v in (1.0, 2.0, 3.0, 5.0, 7.0)),
        meanings=(
            "sigma 1 mm: background texture softened",
            "sigma 2 mm: fine background texture gone",
            "sigma 3 mm: background organs lose their edges (seed study 'easier' is 3 voxels)",
            "sigma 5 mm: background reduced to blobs",
            "sigma 7 mm: background almost uniform shading (seed study 'easiest' is 7 voxels)",
        ),
    )
    options = {"unit": "mm"}
    requires_label = True

    def validate(self) -> None:
        self._require(self.values["sigma"] >= 0, f"sigma must be >= 0, got {self.values['sigma']}")
        self._require(self.settings["unit"] in ("mm", "voxel"),
                      f"unit must be 'mm' or 'voxel', got {self.settings['unit']!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        sigma = self.values["sigma"]
        if self.settings["unit"] == "voxel":
            return {"sigma_voxels": [sigma] * len(spacing)}
        return {"sigma_voxels": [sigma / s for s in spacing]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        if label is None:
            raise ValueError(f"{self.family} needs the reference label")
        foreground = (label > 0).unsqueeze(0)
        return torch.where(foreground, image, gaussian_blur(image, params["sigma_voxels"]))

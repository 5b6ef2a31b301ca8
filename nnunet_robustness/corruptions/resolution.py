"""Resolution family: thick slices along one axis."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from nnunet_robustness.corruptions._core import Corruption, Params, SeverityTable, register
from nnunet_robustness.corruptions._ops import box_average_matrix, linear_interpolation_matrix, map_along
from nnunet_robustness.errors import UserInputError


@register
class Anisotropy(Corruption):
    """Thick slices: the image is re-acquired with thicker slices along one axis, then linearly
    interpolated back to the original grid, as when a model trained on thin-slice data meets a 5 mm
    clinical series. The grid keeps its shape and spacing.

    The slice thickness is ``thickness_factor`` times the image's coarsest native spacing, so a level
    means the same on 0.8 mm and on 3 mm data and is never a no-op (an absolute thickness in mm
    would leave a 3 mm series unchanged at 2 and 3 mm). ``slice_thickness_mm`` (an option) asks for
    an absolute thickness instead and is refused when it is not thicker than the image's spacing.
    The downsampling factor is the thickness over ``spacing[axis]``. Coarse slices are centred in the field of view, as in
    TorchIO's ``RandomAnisotropy`` and Billot et al., "Partial volume segmentation of brain MRI scans
    of any resolution and contrast", MICCAI 2020 (https://doi.org/10.1007/978-3-030-59728-3_18).

    ``slice_profile='box'`` (default) averages the tissue inside each thick slice (partial-volume
    effect, what a real thick-slice acquisition measures). ``'delta'`` picks the nearest thin slice
    instead, which is what TorchIO does (nearest-neighbour downsampling without antialiasing); it is
    kept for the parity test. Unlike TorchIO, the ends of the axis beyond the outermost coarse slice
    repeat that slice instead of becoming 0. ``axis=None`` uses the axis with the largest spacing
    (the first one on ties: axis 0, nnU-Net's through-plane axis, on isotropic images).
    """

    family = "anisotropy"
    group = "resolution"
    summary = "thick slices: down/up-sampling along one axis to a multiple of the native spacing (partial volume)"
    table = SeverityTable(
        identity={"thickness_factor": 1.0},
        levels=tuple({"thickness_factor": v} for v in (1.5, 2.0, 3.0, 4.0, 6.0)),
        meanings=(
            "slices 1.5x the coarsest native spacing (e.g. 1.5 mm on 1 mm data)",
            "2x: a thin-slice protocol read as a standard one",
            "3x: small structures partially volumed (e.g. 3 mm on 1 mm data)",
            "4x: thick clinical series, through-plane detail lost",
            "6x: very thick, lesions of a few voxels can vanish between slices",
        ),
    )
    options = {"axis": None, "slice_profile": "box", "slice_thickness_mm": None}

    def __init__(self, severity: float | None = None, **settings: Any) -> None:
        if severity is None and settings.get("slice_thickness_mm") is not None:
            settings.setdefault("thickness_factor", 1.0)  # an absolute thickness replaces the graded one
        super().__init__(severity, **settings)

    def validate(self) -> None:
        self._require(self.values["thickness_factor"] >= 1,
                      f"thickness_factor must be >= 1, got {self.values['thickness_factor']}")
        thickness = self.settings["slice_thickness_mm"]
        self._require(thickness is None or (isinstance(thickness, (int, float)) and not isinstance(thickness, bool)
                                            and thickness > 0),
                      f"slice_thickness_mm must be a positive number of mm, got {thickness!r}")
        axis = self.settings["axis"]
        self._require(axis is None or (isinstance(axis, int) and not isinstance(axis, bool) and axis >= 0),
                      f"axis must be None or a spatial axis index >= 0, got {axis!r}")
        self._require(self.settings["slice_profile"] in ("box", "delta"),
                      f"slice_profile must be 'box' or 'delta', got {self.settings['slice_profile']!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        axis = self.settings["axis"]
        if axis is None:
            axis = max(range(len(spacing)), key=lambda a: (spacing[a], -a))
        elif axis >= len(spacing):
            raise ValueError(f"{self.family}: axis {axis} does not exist in an image with {len(spacing)} spatial axes")
        thickness = self.settings["slice_thickness_mm"]
        if thickness is None:
            thickness = self.values["thickness_factor"] * max(spacing)
        elif thickness <= spacing[axis]:
            raise UserInputError(f"{self.family}: slices of {thickness:g} mm are not thicker than the image's "
                                 f"{spacing[axis]:g} mm spacing along axis {axis}; use thickness_factor (relative "
                                 "to the native spacing) or a larger slice_thickness_mm")
        factor = thickness / spacing[axis]
        return {"axis": int(axis), "factor": max(factor, 1.0), "slice_profile": self.settings["slice_profile"]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        factor = float(params["factor"])
        if factor <= 1.0:
            return image.clone()
        dim = int(params["axis"]) + 1
        size = image.shape[dim]
        num_slices = max(1, math.floor(size / factor))
        positions = (size - 1) / 2 + (torch.arange(num_slices, dtype=torch.float64) - (num_slices - 1) / 2) * factor
        if params["slice_profile"] == "delta":
            nearest = torch.floor(positions + 0.5).long().clamp(0, size - 1)
            downsample = torch.zeros(num_slices, size, dtype=torch.float64)
            downsample[torch.arange(num_slices), nearest] = 1.0
        else:
            downsample = box_average_matrix(size, positions - factor / 2, positions + factor / 2)
        # Back to the original grid: continuous index of each thin slice on the coarse axis.
        coarse_index = (torch.arange(size, dtype=torch.float64) - positions[0]) / factor
        upsample = linear_interpolation_matrix(num_slices, coarse_index)
        # Two matrix products along the axis (down to the coarse slices, then back) rather than their
        # (size x size) product: 2 * size / factor multiply-adds per voxel instead of size.
        return map_along(map_along(image, dim, downsample), dim, upsample)

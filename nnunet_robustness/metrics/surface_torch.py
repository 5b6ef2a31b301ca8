"""The surface distances of :mod:`.surface` in torch, on whatever device the masks are sent to.

``surface_distances_torch`` returns the same :class:`~.surface.SurfaceDistances` as
``surface.surface_distances``, element for element and bit for bit: the same corner surfaces and
marching-cubes areas (the table of ``surface.surfel_area_table``), points in the same (C) order, and
each distance from the same float64 expression ``sqrt((d0*s0)**2 + (d1*s1)**2 + (d2*s2)**2)`` that
scipy's distance transform and ``surface.py`` use. HD95, ASSD and NSD are then the host-side reductions
of ``surface.py`` over those arrays: sorting and summing a few hundred thousand surface elements takes
milliseconds, and a GPU's parallel sums round differently, which could move the 95th percentile to the
next element at an exact tie of the cumulative area. ``masks.compare_masks(..., device="cuda")`` applies
the empty-mask policy before any of this, for both paths alike.

Distances: an exact Euclidean distance transform of the other surface over the bounding box, separable
along the axes (Saito & Toriwaki 1994): along axis 0 the nearest surface corner of each line (a
cumulative max/min of indices), then along each further axis ``g'(i) = min_j g(j) + ((i - j) * s)**2``.
Rounding is monotone, so the result is exactly ``min`` over all surface corners of the expression above
summed in axis order, as on the CPU. We chose this over pairwise distances between the two surfaces
(``torch.cdist`` in chunks) because its cost is bounded by the box (voxels x axis length, cut short once
no farther offset can lower a distance), whatever the surfaces: pairs cost surface x surface, which a
prediction with many scattered false-positive islands in a 512 x 512 x 300 image makes enormous.
Memory is one float64 map of the box plus working slabs of at most ``max_elements`` elements (the box
is processed in slabs along another axis; the slab size changes no value). The min-plus step is
brute force over offsets rather than Felzenszwalb & Huttenlocher's lower envelope, whose per-line
sequential stack does not vectorise across lines.

Imported only on request (``eval -device cuda``): ``card`` and ``eval`` stay torch-free otherwise.
"""

from __future__ import annotations

import itertools
import sys
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from nnunet_robustness.metrics.surface import SurfaceDistances, check_pair, surfel_area_table

# working slab size (elements): a few float64/int64 buffers of this size, ~1 GB at most
DEFAULT_MAX_ELEMENTS = 2 ** 25
# the early stop of a min-plus pass costs a device-to-host synchronisation: test it every few offsets
_STOP_CHECK_EVERY = 8


def cuda_device(device: str | None) -> str | None:
    """The torch device for ``device`` ("cuda", "cuda:1") when torch sees CUDA, else None (the CPU code)."""
    if device is None or not str(device).startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        _warn_no_cuda(str(device))
        return None
    return str(device)


@lru_cache(maxsize=None)
def _warn_no_cuda(device: str) -> None:
    # once per process, not once per mask pair
    print(f"warning: -device {device}: torch sees no CUDA device; the metrics run on the CPU", file=sys.stderr)


def surface_distances_torch(reference: np.ndarray | torch.Tensor, prediction: np.ndarray | torch.Tensor,
                            spacing: Sequence[float], device: str | torch.device | None = None,
                            max_elements: int = DEFAULT_MAX_ELEMENTS) -> SurfaceDistances:
    """``surface.surface_distances`` computed with torch on ``device`` (default: the masks' own device,
    the CPU for NumPy arrays); the same errors for mismatched or empty masks."""
    reference = torch.as_tensor(reference, device=device).bool()
    prediction = torch.as_tensor(prediction, device=reference.device).bool()
    spacing = check_pair(reference.shape, prediction.shape, spacing)
    crop = _bounding_box(reference | prediction)
    if crop is None or not bool(reference.any()) or not bool(prediction.any()):
        raise ValueError("surface distances need two non-empty masks")
    table = torch.tensor(np.array(surfel_area_table(spacing)), device=reference.device)  # a writable copy
    reference_surface, reference_areas = _surface(reference[crop], table)
    prediction_surface, prediction_areas = _surface(prediction[crop], table)
    # one distance map alive at a time: the box's float64 map is the largest buffer
    to_prediction = _squared_distance_map(prediction_surface, spacing, max_elements)[reference_surface].sqrt_()
    to_reference = _squared_distance_map(reference_surface, spacing, max_elements)[prediction_surface].sqrt_()
    return SurfaceDistances(reference_to_prediction=to_prediction.cpu().numpy(),
                            reference_areas=reference_areas.cpu().numpy(),
                            prediction_to_reference=to_reference.cpu().numpy(),
                            prediction_areas=prediction_areas.cpu().numpy())


def _bounding_box(mask: torch.Tensor) -> tuple[slice, ...] | None:
    slices = []
    for axis in range(mask.ndim):
        projection = torch.any(mask, dim=tuple(a for a in range(mask.ndim) if a != axis))
        nonzero = torch.nonzero(projection).flatten()
        if nonzero.numel() == 0:
            return None
        slices.append(slice(int(nonzero[0]), int(nonzero[-1]) + 1))
    return tuple(slices)


def _surface(mask: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface corners of the mask (a grid one larger than the mask per axis) and their areas, in the
    order of ``surface._neighbourhood_codes`` and ``np.nonzero``."""
    padded = torch.nn.functional.pad(mask.to(torch.uint8), (1, 1) * mask.ndim)
    corners = tuple(n - 1 for n in padded.shape)
    codes = torch.zeros(corners, dtype=torch.uint8, device=mask.device)
    for bit, offset in enumerate(itertools.product((0, 1), repeat=mask.ndim)):
        window = tuple(slice(o, o + n) for o, n in zip(offset, corners))
        codes |= padded[window] << bit
    full = (1 << (2 ** mask.ndim)) - 1
    surface = (codes != 0) & (codes != full)
    return surface, table[codes[surface].long()]


def _squared_distance_map(surface: torch.Tensor, spacing: tuple[float, ...], max_elements: int) -> torch.Tensor:
    """Squared distance (mm^2, float64) of every corner to the nearest ``surface`` corner: exact, and
    summed in axis order as ``surface._nearest_distances`` sums it."""
    squared = torch.empty(surface.shape, dtype=torch.float64, device=surface.device)
    for start, stop in _slabs(surface.shape, 1, max_elements):
        squared[:, start:stop] = _nearest_along_axis0(surface[:, start:stop], spacing[0])
    for axis in range(1, surface.ndim):
        for start, stop in _slabs(surface.shape, 0, max_elements):
            squared[start:stop] = _min_plus(squared[start:stop], axis, spacing[axis])
    return squared


def _slabs(shape: Sequence[int], axis: int, max_elements: int) -> list[tuple[int, int]]:
    """Index ranges along ``axis`` of at most ``max_elements`` elements each (at least one index)."""
    per_index = int(np.prod(shape)) // shape[axis]
    step = max(1, max_elements // max(per_index, 1))
    return [(start, min(start + step, shape[axis])) for start in range(0, shape[axis], step)]


def _nearest_along_axis0(surface: torch.Tensor, spacing: float) -> torch.Tensor:
    """``(d * spacing)**2`` for the offset d to the nearest surface corner along axis 0; inf on lines
    without one."""
    n = surface.shape[0]
    index = torch.arange(n, device=surface.device).view(-1, *(1,) * (surface.ndim - 1))
    far = 2 * n + 1  # further than any index: the side without a surface corner never wins
    before = torch.cummax(torch.where(surface, index, -far), dim=0).values
    after = torch.cummin(torch.where(surface, index, far).flip(0), dim=0).values.flip(0)
    offset = torch.minimum(index - before, after - index)
    step = offset.to(torch.float64) * spacing
    squared = step * step
    return squared.masked_fill_(offset > n, float("inf"))


def _min_plus(values: torch.Tensor, axis: int, spacing: float) -> torch.Tensor:
    """``out[i] = min_j values[j] + ((i - j) * spacing)**2`` along ``axis``, over offsets until no
    farther one can lower any value on a line that has a finite one."""
    n = values.shape[axis]
    out = values.clone()
    reachable = torch.isfinite(values).any(dim=axis, keepdim=True)
    for d in range(1, n):
        step = d * spacing
        cost = step * step  # the same float64 rounding as NumPy's (d * s) ** 2
        if (d - 1) % _STOP_CHECK_EVERY == 0:
            # values only grow with the offset from here on: every candidate is >= cost
            bound = float(torch.where(reachable, out, 0.0).max())
            if cost >= bound:
                break
        later, earlier = out.narrow(axis, d, n - d), out.narrow(axis, 0, n - d)
        torch.minimum(later, values.narrow(axis, 0, n - d) + cost, out=later)
        torch.minimum(earlier, values.narrow(axis, d, n - d) + cost, out=earlier)
    return out

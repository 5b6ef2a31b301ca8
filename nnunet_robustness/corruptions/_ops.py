"""Tensor operations shared by several families. All work on float32 ``(C, *spatial)`` tensors on any
device and loop only over kernel taps, axes or movements, never over voxels."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def symmetric_indices(size: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices that pad an axis of ``size`` by ``pad`` on both sides, mirroring about the edge
    *including* the edge voxel (``d c b a | a b c d | d c b a``, SciPy's ``mode='reflect'``);
    repeated mirroring covers pads longer than the axis."""
    index = torch.arange(-pad, size + pad, device=device)
    index = torch.remainder(index, 2 * size)
    return torch.where(index < size, index, 2 * size - 1 - index)


def gaussian_kernel(sigma: float, device: torch.device, truncate: float = 4.0) -> torch.Tensor:
    # Same support and normalisation as scipy.ndimage.gaussian_filter, so results match TorchIO's Blur.
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).to(device=device, dtype=torch.float32)


def gaussian_blur(image: torch.Tensor, sigmas_voxels: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian blur of ``image`` (C, *spatial) with one sigma (in voxels) per spatial axis.

    Each axis is a sum of shifted views weighted by the kernel taps; on CPU this is several times
    faster than ``conv1d`` with a single input channel.
    """
    result = image
    for axis, sigma in enumerate(sigmas_voxels):
        if sigma <= 0:
            continue
        dim = axis + 1
        size = result.shape[dim]
        kernel = gaussian_kernel(float(sigma), result.device)
        radius = (kernel.numel() - 1) // 2
        padded = result.index_select(dim, symmetric_indices(size, radius, result.device))
        weights = kernel.tolist()
        blurred = padded.narrow(dim, 0, size) * weights[0]
        for tap in range(1, kernel.numel()):
            blurred.add_(padded.narrow(dim, tap, size), alpha=weights[tap])
        result = blurred
    return result if result is not image else image.clone()


def broadcast_along(vector: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    """Reshape 1D ``vector`` so it broadcasts along ``dim`` of an ``ndim``-dimensional tensor."""
    shape = [1] * ndim
    shape[dim] = vector.numel()
    return vector.view(shape)


def linear_sample_along(image: torch.Tensor, dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Linearly interpolate ``image`` along ``dim`` at continuous index ``positions`` (clamped to the
    axis, so values beyond the ends repeat the edge voxel)."""
    size = image.shape[dim]
    positions = positions.to(device=image.device, dtype=torch.float32).clamp(0, size - 1)
    if size == 1:
        return image.index_select(dim, torch.zeros_like(positions, dtype=torch.long))
    lower = positions.floor().long().clamp(max=size - 2)
    weight = broadcast_along(positions - lower, dim, image.ndim)
    return image.index_select(dim, lower) * (1 - weight) + image.index_select(dim, lower + 1) * weight


def box_average_along(image: torch.Tensor, dim: int, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Mean of ``image`` along ``dim`` over continuous windows ``[start, end)``, where voxel ``i``
    covers ``[i - 0.5, i + 0.5)``; partial voxels count with their overlap (partial-volume model).
    Windows are clipped to the image."""
    size = image.shape[dim]
    device = image.device
    # Integral of the piecewise-constant signal, F(b) for b in [0, size] measured from the first edge.
    zeros = torch.zeros_like(image.narrow(dim, 0, 1))
    cumulative = torch.cat([zeros, image.cumsum(dim)], dim)

    def integral(boundary: torch.Tensor) -> torch.Tensor:
        whole = boundary.floor().long().clamp(0, size - 1)
        fraction = broadcast_along((boundary - whole).to(torch.float32), dim, image.ndim)
        return cumulative.index_select(dim, whole) + image.index_select(dim, whole) * fraction

    lo = (starts + 0.5).clamp(0, size).to(device)
    hi = (ends + 0.5).clamp(0, size).to(device)
    width = broadcast_along((hi - lo).clamp(min=1e-6).to(torch.float32), dim, image.ndim)
    return (integral(hi) - integral(lo)) / width


def rotation_matrix(degrees: Sequence[float]) -> torch.Tensor:
    """Rotation in array coordinates, float64.

    2D: one angle in the plane of the two axes. 3D: angles about axes 0, 1, 2 composed as
    ``R2 @ R0 @ R1`` (ITK's Euler3DTransform "ZXY" order, so parameters translate one-to-one to
    TorchIO/SimpleITK; see the parity tests).
    """
    radians = [math.radians(d) for d in degrees]
    if len(radians) == 1:
        c, s = math.cos(radians[0]), math.sin(radians[0])
        return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    (c0, c1, c2), (s0, s1, s2) = [math.cos(r) for r in radians], [math.sin(r) for r in radians]
    r0 = torch.tensor([[1, 0, 0], [0, c0, -s0], [0, s0, c0]], dtype=torch.float64)
    r1 = torch.tensor([[c1, 0, s1], [0, 1, 0], [-s1, 0, c1]], dtype=torch.float64)
    r2 = torch.tensor([[c2, -s2, 0], [s2, c2, 0], [0, 0, 1]], dtype=torch.float64)
    return r2 @ r0 @ r1


def rigid_resample(image: torch.Tensor, spacing: Sequence[float], degrees: Sequence[float],
                   translation_mm: Sequence[float], fill: torch.Tensor) -> torch.Tensor:
    """Resample ``image`` (C, *spatial) so that output point ``q`` (mm, relative to the image centre)
    takes the input value at ``R q + t``: a rigid movement about the image centre. Linear
    interpolation; points more than half a voxel outside the input take ``fill`` (per channel), as
    in ITK's ResampleImageFilter.

    The source index along each axis is affine in the output index, so it is built from 1D terms:
    one full-volume add per axis, written straight into the sampling grid. The inside mask uses the
    same structure: along the last axis each line is inside on one interval, found in 2D.
    """
    ndim = image.ndim - 1
    device = image.device
    shape = tuple(image.shape[1:])
    rotation = rotation_matrix(degrees)
    centre = [(n - 1) / 2 for n in shape]
    last = ndim - 1
    grid = torch.empty((1, *shape, ndim), device=device, dtype=torch.float32)
    positions = [torch.arange(n, dtype=torch.float64) for n in shape]
    last_index = positions[last].to(device)
    lower = torch.full(shape[:-1], -math.inf, dtype=torch.float64)
    upper = torch.full(shape[:-1], math.inf, dtype=torch.float64)
    for d in range(ndim):
        # index_d = const + sum_e slope_e * (i_e - centre_e), in input voxels along axis d
        slopes = [float(rotation[d, e]) * spacing[e] / spacing[d] for e in range(ndim)]
        head = torch.full(shape[:-1], centre[d] + float(translation_mm[d]) / spacing[d], dtype=torch.float64)
        for e in range(last):
            head = head + broadcast_along((positions[e] - centre[e]) * slopes[e], e, last)
        head = head - centre[last] * slopes[last]  # index_d = head[...] + slopes[last] * k
        scale = 2.0 / (shape[d] - 1)
        torch.add((head * scale - 1.0).to(device=device, dtype=torch.float32).unsqueeze(-1),
                  (last_index * (slopes[last] * scale)).to(torch.float32),
                  out=grid[0, ..., last - d])  # grid_sample wants (x, y[, z]) = the last axis first
        # Inside along axis d: -0.5 <= head + slope * k <= n - 0.5, an interval of k.
        slope = slopes[last]
        if abs(slope) < 1e-12:
            outside = (head < -0.5) | (head > shape[d] - 0.5)
            lower = torch.where(outside, math.inf, lower)
        else:
            first, second = (-0.5 - head) / slope, (shape[d] - 0.5 - head) / slope
            lower = torch.maximum(lower, torch.minimum(first, second))
            upper = torch.minimum(upper, torch.maximum(first, second))
    inside = ((last_index >= lower.to(device).unsqueeze(-1) - 1e-9)
              & (last_index <= upper.to(device).unsqueeze(-1) + 1e-9))
    moved = F.grid_sample(image.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    return torch.where(inside, moved, fill)

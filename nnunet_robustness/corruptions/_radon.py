"""Parallel-beam CT projection and filtered back-projection in PyTorch, batched over slices.

Used by the CT families (``ct.py``) to move a corruption between image and sinogram. Units are pixels:
a slice is a square ``(N, N)`` grid of attenuation values (per pixel), detector bins are one pixel
wide, and the line integral of a ray is the sum of the values it crosses times the step (in pixels),
so ``fbp(radon(x)) ~= x``. Physical line integrals are ``pixel_mm * radon(mu_per_mm)``.

Geometry (that of ``skimage.transform.radon`` / ``iradon`` with ``circle=False`` on odd-sized slices;
checked in ``tests/corruptions/test_ct.py``): the rotation centre is the slice centre, angles lie in
[0, pi), and pixel ``(row, col)`` projects at angle ``theta`` onto detector coordinate
``t = x cos(theta) + y sin(theta)`` with ``x = col - c`` and ``y = c - row``.

Why ``embedding_bag``: every slice of a volume shares the geometry, so both operators are one sparse
pattern applied to many slices. With the slices as the fast axis, back-projection is "for each
pixel, sum one detector value per angle" and projection is "for each ray, sum the pixels along it":
exactly ``torch.nn.functional.embedding_bag`` (rows of a table summed per bag), a tuned,
multi-threaded gather. On a 2-core machine this back-projects 100 slices of 512^2 from 360 views
about 14x faster than ``grid_sample`` (measured). Both use nearest-neighbour lookups on finely
sampled grids: the filtered projections are linearly upsampled 4x along the detector (the classic
FBP interpolation shortcut, error < 1/8 bin) and rays are sampled every half pixel.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import torch.nn.functional as F

_UPSAMPLE = 4  # detector upsampling for nearest-neighbour back-projection
_RAY_STEP = 0.5  # pixels between samples along a ray
_INDEX_BUDGET = 2**23  # back-projection indices built at a time (64 MiB of int64)


def default_views(size: int) -> int:
    """Projection angles over 180 degrees for a ``size``-pixel slice: ``pi/2 * size`` (the angular
    sampling that avoids view aliasing inside the field of view; Kak & Slaney, ch. 5), capped at 360
    so that a 512-pixel slice stays cheap (faint view-aliasing only far from the centre)."""
    return int(min(360, max(16, math.ceil(math.pi / 2 * size))))


def detector_count(size: int) -> int:
    """Detector bins covering the slice's diagonal (no truncation), odd so that one bin is centred."""
    count = int(math.ceil(size * math.sqrt(2.0))) + 2
    return count + (1 - count % 2)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A square ``size`` x ``size`` slice seen from ``views`` angles by ``detectors`` bins."""

    size: int
    views: int
    detectors: int

    @classmethod
    def for_size(cls, size: int, views: int | None = None) -> "Geometry":
        return cls(size, views or default_views(size), detector_count(size))

    @property
    def theta(self) -> torch.Tensor:
        """Projection angles in [0, pi), float64 radians."""
        return torch.arange(self.views, dtype=torch.float64) * (math.pi / self.views)


def _pixel_offsets(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    centre = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return centre.view(1, 1, -1), -centre.view(1, -1, 1)  # x (columns), y (rows grow downwards)


@functools.lru_cache(maxsize=2)
def _ray_indices(geometry: Geometry) -> torch.Tensor:
    """For every ray (view, detector), the pixel index of each sample along it (``size**2`` for
    samples outside the slice): int64 (views * detectors, steps). Cached: it depends only on the
    geometry, and the projection grid is small (at most 128^2 in the CT families)."""
    size, detectors = geometry.size, geometry.detectors
    t = torch.arange(detectors, dtype=torch.float32) - (detectors - 1) / 2
    steps = int(math.ceil(detectors / _RAY_STEP))
    s = (torch.arange(steps, dtype=torch.float32) - (steps - 1) / 2) * _RAY_STEP
    theta = geometry.theta.to(torch.float32).view(-1, 1, 1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    centre = (size - 1) / 2
    col = torch.round(t.view(1, -1, 1) * cos - s.view(1, 1, -1) * sin + centre)  # (views, detectors, steps)
    row = torch.round(centre - (t.view(1, -1, 1) * sin + s.view(1, 1, -1) * cos))
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    index = torch.where(inside, row * size + col, torch.full_like(col, size * size)).long()
    return index.view(-1, steps)


def radon(slices: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Line integrals of ``slices`` (B, N, N): returns (B, views, detectors). Zero outside the slice."""
    batch, size = slices.shape[0], geometry.size
    if tuple(slices.shape[1:]) != (size, size):
        raise ValueError(f"radon: slices of shape {tuple(slices.shape[1:])} do not match the geometry ({size})")
    # Table: one row per pixel with the slices as columns, plus a zero row for samples outside.
    table = torch.cat((slices.reshape(batch, size * size).T, slices.new_zeros(1, batch)))
    index = _ray_indices(geometry).to(slices.device)
    sinogram = F.embedding_bag(index, table, mode="sum") * _RAY_STEP  # (views * detectors, B)
    return sinogram.T.reshape(batch, geometry.views, geometry.detectors)


def ramp_filter(detectors: int, kernel: str = "ramp", device: torch.device | None = None) -> torch.Tensor:
    """Frequency response (for an ``rfft`` of length ``2 * (len - 1)``) of the FBP filter, built from
    the band-limited spatial ramp of Kak & Slaney (eq. 3.61, as scikit-image does), which avoids the
    DC offset of a sampled ``|f|``. ``kernel``: ``ramp`` (Ram-Lak), ``shepp-logan`` (ramp x sinc) or
    ``hann`` (ramp x Hann window): from sharp to smooth reconstructed noise."""
    padded = max(64, 2 ** int(math.ceil(math.log2(2 * detectors))))
    n = torch.cat((torch.arange(0, padded // 2 + 1), torch.arange(-(padded // 2) + 1, 0))).to(torch.float64)
    spatial = torch.zeros(padded, dtype=torch.float64)
    spatial[0] = 0.25
    odd = n.remainder(2) == 1
    spatial[odd] = -1.0 / (math.pi * n[odd]) ** 2
    response = torch.fft.rfft(spatial).real
    frequency = torch.fft.rfftfreq(padded, dtype=torch.float64)  # cycles per bin, 0..0.5
    if kernel == "shepp-logan":
        response = response * torch.sinc(frequency)  # torch.sinc is sin(pi f) / (pi f)
    elif kernel == "hann":
        response = response * (0.5 + 0.5 * torch.cos(2 * math.pi * frequency))
    elif kernel != "ramp":
        raise ValueError(f"unknown FBP kernel {kernel!r}; use 'ramp', 'shepp-logan' or 'hann'")
    return response.to(device=device, dtype=torch.float32)


def filter_sinogram(sinogram: torch.Tensor, kernel: str = "ramp") -> torch.Tensor:
    """Apply the FBP filter along the detector axis (last) of ``sinogram`` (B, views, detectors)."""
    detectors = sinogram.shape[-1]
    response = ramp_filter(detectors, kernel, sinogram.device)
    padded = 2 * (response.numel() - 1)
    spectrum = torch.fft.rfft(sinogram, n=padded, dim=-1)
    return torch.fft.irfft(spectrum * response, n=padded, dim=-1)[..., :detectors].contiguous()


_CACHED_BACKPROJECTION = 2**24  # cache back-projection indices up to this many (64 MiB as int32)


@functools.lru_cache(maxsize=4)
def _cached_pixel_indices(geometry: Geometry) -> torch.Tensor:
    return _pixel_indices(geometry, 0, geometry.views).to(torch.int32)


def _pixel_indices(geometry: Geometry, start: int, stop: int, relative: bool = False) -> torch.Tensor:
    """For every pixel, the row of the upsampled-sinogram table it reads at each view in
    ``[start, stop)`` (the zero row when it falls beyond the detector): int64 (size**2, stop - start).
    Rows count from view 0, or from view ``start`` if ``relative`` (a table of those views only)."""
    size, views, detectors = geometry.size, geometry.views, geometry.detectors
    fine = (detectors - 1) * _UPSAMPLE + 1
    centre = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    x, y = centre.view(1, 1, -1), -centre.view(1, -1, 1)
    angle = geometry.theta[start:stop].to(torch.float32).view(-1, 1, 1)
    position = torch.round((x * torch.cos(angle) + y * torch.sin(angle) + (detectors - 1) / 2) * _UPSAMPLE)
    inside = (position >= 0) & (position < fine)
    first = start if relative else 0
    offset = (torch.arange(start - first, stop - first, dtype=torch.float32) * fine).view(-1, 1, 1)
    zero_row = (stop - start if relative else views) * fine
    index = torch.where(inside, position + offset, torch.full_like(position, zero_row)).long()
    return index.view(stop - start, -1).T.contiguous()


def _upsampled_table(filtered: torch.Tensor) -> torch.Tensor:
    """(views * fine + 1, B): the filtered projections linearly upsampled along the detector, one row
    per (view, fine position) with the slices as columns, and a final zero row."""
    batch, views, detectors = filtered.shape
    fine = (detectors - 1) * _UPSAMPLE + 1
    upsampled = F.interpolate(filtered.reshape(batch * views, 1, detectors), size=fine, mode="linear",
                              align_corners=True)
    return torch.cat((upsampled.view(batch, views * fine).T, filtered.new_zeros(1, batch)))


def backproject(filtered: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Back-project (B, views, detectors) onto (B, N, N), scaled by pi / views (so that after
    ``filter_sinogram`` this is the FBP reconstruction)."""
    batch, views, detectors = filtered.shape
    if (views, detectors) != (geometry.views, geometry.detectors):
        raise ValueError(f"backproject: sinogram {(views, detectors)} does not match the geometry "
                         f"{(geometry.views, geometry.detectors)}")
    size, device = geometry.size, filtered.device
    if size * size * views <= _CACHED_BACKPROJECTION:
        image = F.embedding_bag(_cached_pixel_indices(geometry).to(device), _upsampled_table(filtered), mode="sum")
    else:
        # Large slices: a chunk of views at a time, each with its own small table, so that memory
        # stays bounded (the full upsampled table of 100 slices of 512^2 would be ~0.4 GB).
        image = torch.zeros((size * size, batch), dtype=filtered.dtype, device=device)
        chunk = max(1, _INDEX_BUDGET // (size * size))
        for start in range(0, views, chunk):
            stop = min(views, start + chunk)
            index = _pixel_indices(geometry, start, stop, relative=True).to(device)
            image += F.embedding_bag(index, _upsampled_table(filtered[:, start:stop].contiguous()), mode="sum")
    return (image * (math.pi / views)).T.reshape(batch, size, size)


def fbp(sinogram: torch.Tensor, geometry: Geometry, kernel: str = "ramp") -> torch.Tensor:
    """Filtered back-projection of (B, views, detectors) onto (B, N, N)."""
    return backproject(filter_sinogram(sinogram, kernel), geometry)

"""Ultrasound (B-mode) families: Rayleigh speckle, acoustic shadowing, depth-dependent gain (TGC)
error, and haze/reverberation clutter.

B-mode images are log-compressed echo amplitudes; these families act on the amplitude above each
channel's minimum (the echo-free level: black on the display), with strengths in units of the robust
range, so a level means the same on 0-255 PNGs and on float exports, and all four are
affine-equivariant. The beam runs
along ``beam_axis`` (default 0: image rows, the transducer at the top, as nnU-Net reads a B-mode PNG
with ``NaturalImage2DIO``), from index 0 (near field) to the end (far field). In 3D volumes the
other two axes are lateral/elevational.

Normalisation: nnU-Net uses ``ZScoreNormalization`` for non-CT channels (and RGB PNGs are usually
z-scored or rescaled per image). A per-image z-score removes only a global gain and offset, so it
cancels none of these families: speckle, shadows, depth-gain errors and clutter all vary in space.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from nnunet_robustness.corruptions._core import (
    Corruption,
    Params,
    SeverityTable,
    channel_view,
    draw_seed,
    field_generator,
    intensity_reference,
    register,
    uniform,
)
from nnunet_robustness.corruptions._ops import (
    broadcast_along,
    gaussian_blur,
    linear_interpolation_matrix,
    symmetric_indices,
)


class _Ultrasound(Corruption):
    group = "ultrasound"
    options: Mapping[str, Any] = {"beam_axis": 0}

    def validate(self) -> None:
        axis = self.settings["beam_axis"]
        self._require(isinstance(axis, int) and not isinstance(axis, bool) and axis >= 0,
                      f"beam_axis must be a spatial axis index >= 0, got {axis!r}")

    def _beam_axis(self, spacing: tuple[float, ...]) -> int:
        axis = self.settings["beam_axis"]
        if axis >= len(spacing):
            raise ValueError(f"{self.family}: beam_axis {axis} does not exist in an image with {len(spacing)} "
                             f"spatial axes")
        return axis


def clip_to_input_range(result: torch.Tensor, params: Mapping[str, Any]) -> torch.Tensor:
    """``result`` clipped per channel to the input's range ``[floor, ceiling]`` (its minimum and maximum).

    A B-mode display value is a log-compressed echo mapped into a fixed window: nothing is darker than
    the echo-free level and nothing brighter than saturation, and the input's own extremes are the best
    evidence of both (0-255 on most exports). Without the clip, gain, speckle and clutter wrote values
    above 255 that no scanner produces. A constant channel has no range and is left unclipped.
    """
    floor = channel_view(params["floor"], result)
    ceiling = channel_view(params["ceiling"], result)
    clipped = torch.minimum(torch.maximum(result, floor), ceiling)
    return torch.where(ceiling > floor, clipped, result)


@register
class UltrasoundSpeckle(_Ultrasound):
    """Fully developed speckle: many sub-resolution scatterers per resolution cell add up to a
    circular complex Gaussian echo, whose envelope is Rayleigh distributed (Goodman, "Some fundamental
    properties of speckle", JOSA 66(11), 1976, https://doi.org/10.1364/JOSA.66.001145; Wagner et al.,
    "Statistics of speckle in ultrasound B-scans", IEEE Trans. Sonics Ultrason. 30(3), 1983,
    https://doi.org/10.1109/T-SU.1983.31404).

    Two white Gaussian fields are smoothed to the resolution cell (``cell_voxels`` std along the beam,
    twice that laterally, as pulse length is shorter than beam width), and their magnitude gives a
    spatially correlated Rayleigh field ``R`` of mean 1. The amplitude above the echo-free level is
    multiplied by ``1 + strength * (R - 1)``: ``strength`` 1 is fully developed speckle (SNR 1.91),
    lower levels blend toward the clean image. One field per seed, scaled by every level.
    Unlike ``speckle_noise`` (skimage's Gaussian multiplicative noise, voxel-wise), this speckle has
    the Rayleigh envelope and the grain size of an ultrasound resolution cell.

    Normalisation: not cancelled by ZScore (random multiplicative texture); CT normalisation n/a.
    """

    family = "us_speckle"
    summary = "ultrasound speckle: spatially correlated Rayleigh envelope, multiplicative (Goodman 1976)"
    table = SeverityTable(
        identity={"strength": 0.0},
        levels=tuple({"strength": v} for v in (0.1, 0.2, 0.35, 0.55, 0.8)),
        meanings=(
            "10% of fully developed speckle: a fine grain on a smoothed/compounded image",
            "20%: visible grain, as with spatial compounding on",
            "35%: typical speckle of a modern scanner after speckle reduction",
            "55%: coarse speckle, weak boundaries break up",
            "80%: near fully developed speckle, as without any speckle reduction",
        ),
    )
    options = {"beam_axis": 0, "cell_voxels": 1.0}

    def validate(self) -> None:
        super().validate()
        strength = self.values["strength"]
        self._require(0 <= strength <= 1, f"strength must be in [0, 1], got {strength}")
        cell = self.settings["cell_voxels"]
        self._require(isinstance(cell, (int, float)) and not isinstance(cell, bool) and 0 < cell <= 20,
                      f"cell_voxels must be a number in (0, 20], got {cell!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        return {"strength": self.values["strength"], "low": reference.minimum, "floor": reference.minimum,
                "ceiling": reference.maximum, "beam_axis": self._beam_axis(spacing),
                "cell_voxels": float(self.settings["cell_voxels"]), "noise_seed": draw_seed(generator)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        strength = float(params["strength"])
        if strength == 0:
            return image.clone()
        generator = field_generator(params["noise_seed"], image.device)
        field = torch.randn((2 * image.shape[0], *image.shape[1:]), generator=generator, device=image.device,
                            dtype=image.dtype)
        cell = params["cell_voxels"]
        sigmas = [cell if axis == params["beam_axis"] else 2.0 * cell for axis in range(image.ndim - 1)]
        field = gaussian_blur(field, sigmas)
        real, imaginary = field[0::2], field[1::2]
        # Normalise each component to unit variance so that R^2 has mean 2, then R to mean 1.
        scale = torch.sqrt(0.5 * (real.pow(2).mean() + imaginary.pow(2).mean())).clamp(min=1e-12)
        rayleigh = torch.sqrt(real.pow(2) + imaginary.pow(2)) / (scale * math.sqrt(math.pi / 2))
        low = channel_view(params["low"], image)
        amplitude = (image - low).clamp(min=0.0)
        return clip_to_input_range(image + amplitude * (strength * (rayleigh - 1.0)), params)


@register
class AcousticShadowing(_Ultrasound):
    """Acoustic shadowing: a strongly reflecting or attenuating structure (bone, calculus, gas) passes
    little energy on, so everything distal to it along the beam is dark (Kremkau & Taylor, "Artifacts
    in ultrasound imaging", J. Ultrasound Med. 5(4), 1986, https://doi.org/10.7863/jum.1986.5.4.227).

    Reflectors are strong, compact echoes *relative to the local tissue*, not bright pixels: speckle
    makes a third or more of a B-mode image brighter than any fixed fraction of its range, so a global
    threshold shadows tissue everywhere. A voxel is a reflector when, after smoothing over a resolution
    cell (Gaussian, 1 voxel; single speckle grains average out):

    - its echo exceeds the local tissue level (the median of the smoothed image, without the echo-free
      background outside the scan sector, in blocks of about
      twice the largest reflector, so a reflector fills at most a quarter of its block in 2D and
      cannot move the median; interpolated between block centres) by ``contrast`` of the robust range (default
      0.25: about 64 grey levels on a 0-255 display), **and**
    - by ``speckle_sigmas`` (default 6) times the local speckle spread (1.4826 x the block's median
      absolute deviation: the standard deviation for Gaussian-like fluctuations), so the brightest
      grains of fully developed speckle do not qualify (Rayleigh's upper tail is long: the brightest
      smoothed grain of a 256 x 256 image of fully developed speckle lies 4.8 spreads above the median,
      the largest of 20 draws; a stone on a log-compressed display lies 7-15 above), **and**
    - its connected bright structure is compact: no longer than ``max_size`` of the image's depth
      (default 0.25: 10-40 mm on 4-16 cm B-mode fields of view, a gallstone or a rib's cross-section)
      along any axis. Larger bright regions
      are tissue (an organ, the near-field band), which does not shadow. Sizes are relative to the
      field of view because nnU-Net reads B-mode PNGs with 1 mm "pixels" whatever their true size.

    A reflector voxel's strength is its (unsmoothed) excess over the local tissue level, in units of
    the robust range; the transmitted energy falls as ``exp(-attenuation * sum of the strengths
    crossed so far, in mm)`` along the beam, and every voxel *beyond* a reflector voxel has its
    amplitude above the echo-free level multiplied by it (so a thick reflector's deeper part lies in
    the shadow of its leading surface, as behind the bright rim of a stone). Deterministic: shadows
    are where the reflectors are. Voxels proximal to every reflector, beams that meet none, and whole
    images without a reflector are unchanged. The output is clipped to the input's range.

    Normalisation: not cancelled by ZScore (a local loss of signal); CT normalisation n/a.
    """

    family = "us_shadowing"
    summary = "acoustic shadowing: amplitude decays distal to strong compact echoes (reflectors) along the beam"
    table = SeverityTable(
        identity={"attenuation": 0.0},
        levels=tuple({"attenuation": v} for v in (0.1, 0.25, 0.5, 1.0, 2.0)),
        meanings=(
            "faint shadowing: a 10 mm reflector 0.3 of the range above the tissue passes 74% of the energy",
            "partial shadow (47%) behind reflectors",
            "clear shadow (22%): soft tissue behind the reflector is dim",
            "dense shadow (5%): as behind a gallstone or rib",
            "complete shadow (<1%): nothing visible distal to reflectors",
        ),
    )
    options = {"beam_axis": 0, "contrast": 0.25, "speckle_sigmas": 6.0, "max_size": 0.25}
    _BLOCKS_PER_REFLECTOR = 2  # block side of the local median, in largest-reflector sizes
    _CELL_SIGMA = 1.0  # smoothing over a resolution cell, voxels

    def validate(self) -> None:
        super().validate()
        self._require(self.values["attenuation"] >= 0, f"attenuation must be >= 0, got {self.values['attenuation']}")
        for key, low, high in (("contrast", 0.0, 1.0), ("max_size", 0.0, 1.0), ("speckle_sigmas", 0.0, 100.0)):
            value = self.settings[key]
            self._require(isinstance(value, (int, float)) and not isinstance(value, bool) and low < value <= high,
                          f"{key} must be a number in ({low:g}, {high:g}], got {value!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        return {"attenuation": self.values["attenuation"], "floor": reference.minimum, "ceiling": reference.maximum,
                "span": reference.span, "beam_axis": self._beam_axis(spacing),
                **{key: float(self.settings[key]) for key in ("contrast", "speckle_sigmas", "max_size")}}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        attenuation = float(params["attenuation"])
        if attenuation == 0:
            return image.clone()
        dim = int(params["beam_axis"]) + 1
        strength = reflector_strength(image, params, spacing)
        if not bool(strength.any()):
            return image.clone()
        reflectivity = strength * spacing[dim - 1]
        # Exclusive cumulative sum: a reflector shadows what lies beyond it, not itself.
        crossed = torch.cumsum(reflectivity, dim=dim) - reflectivity
        transmission = torch.exp(-attenuation * crossed)
        floor = channel_view(params["floor"], image)
        return clip_to_input_range(floor + (image - floor) * transmission, params)


def reflector_strength(image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...]) -> torch.Tensor:
    """Per voxel, the excess echo of a reflector over the local tissue level in units of the robust range;
    0 outside reflectors (see :class:`AcousticShadowing`)."""
    ndim = image.ndim - 1
    beam = int(params["beam_axis"])
    floor = channel_view(params["floor"], image)
    span = channel_view(params["span"], image)
    amplitude = image - floor
    smooth = gaussian_blur(amplitude, [AcousticShadowing._CELL_SIGMA] * ndim)
    depth_mm = image.shape[beam + 1] * spacing[beam]
    largest = [max(1, round(params["max_size"] * depth_mm / s)) for s in spacing]  # voxels per axis
    block = [max(3, AcousticShadowing._BLOCKS_PER_REFLECTOR * n) for n in largest]
    # the echo-free background (black outside the scan sector, zero padding) is no tissue
    level, deviation = _block_median(smooth, block, amplitude > 0)
    excess = smooth - level
    strength = (amplitude - level) / span
    # smoothed: the structure stands out of the speckle; unsmoothed: the voxel itself is bright (the smoothing
    # would otherwise widen every reflector by a voxel on each side)
    candidate = ((excess > params["contrast"] * span) & (excess > params["speckle_sigmas"] * 1.4826 * deviation)
                 & (strength > params["contrast"]))
    if not bool(candidate.any()):
        return torch.zeros_like(image)
    compact = _compact_components(candidate, largest)
    return strength * compact


def _block_median(image: torch.Tensor, block: list[int], valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Local median and median absolute deviation of ``image`` (C, *spatial) over its ``valid`` voxels:
    per block of about ``block`` voxels (an axis is split into equal blocks, mirrored at its end), linearly
    interpolated between block centres. A structure filling under half of a block's valid voxels moves
    neither statistic. Blocks without a valid voxel take the channel's overall values."""
    import torch.nn.functional as F

    shape = image.shape[1:]
    counts = [max(1, round(n / b)) for n, b in zip(shape, block)]
    sizes = [math.ceil(n / c) for n, c in zip(shape, counts)]
    masked = torch.where(valid, image, torch.nan)
    for axis, (n, c, b) in enumerate(zip(shape, counts, sizes)):
        if c * b > n:
            masked = masked.index_select(axis + 1, symmetric_indices(n, c * b - n, image.device)[c * b - n:])
    ndim = len(shape)
    grid = masked.reshape(image.shape[0], *[v for c, b in zip(counts, sizes) for v in (c, b)])
    order = [0, *[1 + 2 * a for a in range(ndim)], *[2 + 2 * a for a in range(ndim)]]
    blocks = grid.permute(order).reshape(image.shape[0], *counts, -1)
    median = blocks.nanmedian(dim=-1).values
    deviation = (blocks - median.unsqueeze(-1)).abs().nanmedian(dim=-1).values
    flat = masked.reshape(image.shape[0], -1)
    overall = flat.nanmedian(dim=1).values
    overall_deviation = (flat - overall.unsqueeze(1)).abs().nanmedian(dim=1).values
    view = (-1, *[1] * ndim)
    median = torch.where(median.isnan(), overall.view(view), median).nan_to_num(0.0)
    deviation = torch.where(deviation.isnan(), overall_deviation.view(view), deviation).nan_to_num(0.0)
    mode = "bilinear" if ndim == 2 else "trilinear"

    def upsample(values: torch.Tensor) -> torch.Tensor:
        # block centres at (i + 0.5) * size: align_corners=False over the padded extent, then crop
        full = F.interpolate(values.unsqueeze(0), size=[c * b for c, b in zip(counts, sizes)], mode=mode,
                             align_corners=False)[0]
        return full[(slice(None), *[slice(0, n) for n in shape])]

    return upsample(median), upsample(deviation)


def _compact_components(mask: torch.Tensor, largest: list[int]) -> torch.Tensor:
    """``mask`` (C, *spatial) without its connected components (face connectivity) that extend over
    more than ``largest[axis]`` voxels along any axis, as float."""
    import numpy as np
    from scipy import ndimage

    kept = np.zeros(mask.shape, dtype=np.float32)
    array = mask.cpu().numpy()
    for channel in range(array.shape[0]):
        labels, count = ndimage.label(array[channel])
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            if all(s.stop - s.start <= n for s, n in zip(box, largest)):
                kept[channel][box] += labels[box] == index
    return torch.from_numpy(kept).to(device=mask.device, dtype=torch.float32)


@register
class TimeGainError(_Ultrasound):
    """Depth-dependent gain error: tissue attenuates ultrasound by ~0.5 dB/cm/MHz each way, and the
    scanner's time-gain compensation (TGC) undoes it with a gain that rises with depth, set by about 8
    sliders (Szabo, "Diagnostic Ultrasound Imaging: Inside Out", 2nd ed., Academic Press 2014, ch. 4
    and 10, ISBN 978-0-12-396542-4). A mismatch between the two leaves bands that are too bright or
    too dark at some depths.

    The error in dB along the beam is the mean of a linear ramp (wrong attenuation coefficient) and a
    piecewise-linear curve through 8 equally spaced slider errors; the ramp's sign and the slider
    values (uniform in [-1, 1]) are drawn once per seed and ``max_db`` scales them. The amplitude above
    the echo-free level is multiplied by ``10 ** (error_db / 20)``. Since B-mode PNGs are log-compressed,
    this is an approximation of the gain error on display intensities.

    Normalisation: ZScore absorbs only the mean gain, not its variation with depth; CT normalisation n/a.
    """

    family = "us_tgc"
    summary = "ultrasound depth-gain (TGC/attenuation) error: depth bands too bright or too dark"
    table = SeverityTable(
        identity={"max_db": 0.0},
        levels=tuple({"max_db": v} for v in (1.5, 3.0, 5.0, 8.0, 12.0)),
        meanings=(
            "up to 1.5 dB: barely visible depth banding",
            "up to 3 dB: noticeable brighter/darker depth bands",
            "up to 5 dB: clearly mis-set TGC sliders",
            "up to 8 dB: deep or shallow tissue strongly under- or over-exposed",
            "up to 12 dB: severe, parts of the depth range nearly black or saturated",
        ),
    )
    _SLIDERS = 8

    def validate(self) -> None:
        super().validate()
        self._require(self.values["max_db"] >= 0, f"max_db must be >= 0, got {self.values['max_db']}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        draws = uniform(generator, self._SLIDERS + 1)  # the ramp's direction, then the sliders
        return {"max_db": self.values["max_db"], "low": reference.minimum, "floor": reference.minimum,
                "ceiling": reference.maximum, "beam_axis": self._beam_axis(spacing),
                "ramp": 1.0 if float(draws[0]) >= 0 else -1.0, "sliders": draws[1:].tolist()}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        max_db = float(params["max_db"])
        if max_db == 0:
            return image.clone()
        dim = int(params["beam_axis"]) + 1
        depth = image.shape[dim]
        fraction = torch.linspace(0.0, 1.0, depth, dtype=torch.float64)
        sliders = torch.tensor(params["sliders"], dtype=torch.float64)
        curve = linear_interpolation_matrix(sliders.numel(), fraction * (sliders.numel() - 1)) @ sliders
        error_db = max_db * 0.5 * (params["ramp"] * (2.0 * fraction - 1.0) + curve)
        gain = broadcast_along((10.0 ** (error_db / 20.0)).to(device=image.device, dtype=image.dtype), dim, image.ndim)
        low = channel_view(params["low"], image)
        return clip_to_input_range(low + (image - low) * gain, params)


@register
class UltrasoundHaze(_Ultrasound):
    """Haze and reverberation clutter: echoes bouncing between the transducer and strong shallow
    interfaces (skin, fat, fascia) return late and are drawn deeper, as a diffuse haze that fades with
    depth and as faint replicas of the near field at multiples of the bounce depth (Lediju et al.,
    "Quantitative assessment of the magnitude, impact and spatial extent of ultrasonic clutter",
    Ultrason. Imaging 30(3), 2008, https://doi.org/10.1177/016173460803000303).

    Added to the image: ``level * span * haze(depth)`` with ``haze = exp(-depth / decay)``, and the
    near-field amplitude (above the echo-free level, weighted by ``haze``) shifted deeper by 1, 2 and 3
    bounce depths with weights 1, 1/2, 1/4, times ``level``. The decay (15-35% of the depth range) and
    the bounce depth (8-20%) are drawn once per seed; ``level`` scales both terms. Clutter lowers
    contrast most in dark (cystic, vessel) regions.

    Normalisation: ZScore absorbs only the mean added level, not its depth profile; CT normalisation n/a.
    """

    family = "us_haze"
    summary = "ultrasound haze/reverberation: near-field clutter and replicas added deeper in the image"
    table = SeverityTable(
        identity={"level": 0.0},
        levels=tuple({"level": v} for v in (0.04, 0.08, 0.15, 0.25, 0.4)),
        meanings=(
            "faint haze over the near field",
            "visible haze, dark structures look grey near the top",
            "clear clutter and reverberation bands, cyst contrast reduced",
            "strong haze, near-field replicas visible in the far field",
            "severe clutter: low-echo structures filled in",
        ),
    )

    def validate(self) -> None:
        super().validate()
        self._require(self.values["level"] >= 0, f"level must be >= 0, got {self.values['level']}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        decay, bounce = uniform(generator, 2, low=0.0, high=1.0).tolist()
        return {"level": self.values["level"], "low": reference.minimum, "floor": reference.minimum,
                "ceiling": reference.maximum, "span": reference.span,
                "beam_axis": self._beam_axis(spacing), "decay": 0.15 + 0.2 * decay, "bounce": 0.08 + 0.12 * bounce}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        level = float(params["level"])
        if level == 0:
            return image.clone()
        dim = int(params["beam_axis"]) + 1
        depth = image.shape[dim]
        fraction = torch.linspace(0.0, 1.0, depth, dtype=torch.float64)
        haze = broadcast_along(torch.exp(-fraction / params["decay"]).to(device=image.device, dtype=image.dtype),
                               dim, image.ndim)
        low = channel_view(params["low"], image)
        # Only shallow echoes reverberate: the replicated amplitude is weighted by the near-field profile.
        amplitude = (image - low).clamp(min=0.0) * haze
        clutter = haze * channel_view(params["span"], image)
        bounce = max(1, round(params["bounce"] * depth))
        for repeat, weight in ((1, 1.0), (2, 0.5), (3, 0.25)):
            shift = repeat * bounce
            if shift >= depth:
                break
            replica = torch.zeros_like(amplitude)
            replica.narrow(dim, shift, depth - shift).copy_(amplitude.narrow(dim, 0, depth - shift))
            clutter = clutter + weight * replica
        return clip_to_input_range(image + level * clutter, params)

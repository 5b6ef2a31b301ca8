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
from nnunet_robustness.corruptions._ops import broadcast_along, gaussian_blur, linear_interpolation_matrix


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
        return {"strength": self.values["strength"], "low": reference.minimum, "beam_axis": self._beam_axis(spacing),
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
        return image + amplitude * (strength * (rayleigh - 1.0))


@register
class AcousticShadowing(_Ultrasound):
    """Acoustic shadowing: a strongly reflecting or attenuating structure (bone, calculus, gas) passes
    little energy on, so everything distal to it along the beam is dark (Kremkau & Taylor, "Artifacts
    in ultrasound imaging", J. Ultrasound Med. 5(4), 1986, https://doi.org/10.7863/jum.1986.5.4.227).

    Each voxel brighter than ``threshold`` (fraction of the robust range above its low end) counts as a
    reflector with strength equal to its excess brightness; the transmitted energy falls as
    ``exp(-attenuation * sum of the strengths crossed so far, in mm)`` along the beam, and every voxel
    *beyond* a reflector voxel has its amplitude above the echo-free level multiplied by it (so a thick
    reflector's deeper part lies in the shadow of its leading surface, as behind the bright rim of a
    stone). Deterministic: shadows are where the bright structures are. Voxels proximal to every bright
    structure, and beams that meet none, are unchanged.

    Normalisation: not cancelled by ZScore (a local loss of signal); CT normalisation n/a.
    """

    family = "us_shadowing"
    summary = "acoustic shadowing: amplitude decays distal to bright reflectors along the beam"
    table = SeverityTable(
        identity={"attenuation": 0.0},
        levels=tuple({"attenuation": v} for v in (0.1, 0.25, 0.5, 1.0, 2.0)),
        meanings=(
            "faint shadowing: a 10 mm structure 0.3 above the threshold passes 74% of the energy",
            "partial shadow (47%) behind bright structures",
            "clear shadow (22%): soft tissue behind the structure is dim",
            "dense shadow (5%): as behind a gallstone or rib",
            "complete shadow (<1%): nothing visible distal to bright structures",
        ),
    )
    options = {"beam_axis": 0, "threshold": 0.6}

    def validate(self) -> None:
        super().validate()
        self._require(self.values["attenuation"] >= 0, f"attenuation must be >= 0, got {self.values['attenuation']}")
        threshold = self.settings["threshold"]
        self._require(isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 < threshold < 1,
                      f"threshold must be a fraction of the robust range in (0, 1), got {threshold!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        return {"attenuation": self.values["attenuation"], "floor": reference.minimum, "low": reference.low,
                "span": reference.span, "threshold": float(self.settings["threshold"]),
                "beam_axis": self._beam_axis(spacing)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        attenuation = float(params["attenuation"])
        if attenuation == 0:
            return image.clone()
        dim = int(params["beam_axis"]) + 1
        low = channel_view(params["low"], image)
        span = channel_view(params["span"], image)
        reflectivity = ((image - low) / span - params["threshold"]).clamp(min=0.0) * spacing[dim - 1]
        # Exclusive cumulative sum: a reflector shadows what lies beyond it, not itself.
        crossed = torch.cumsum(reflectivity, dim=dim) - reflectivity
        transmission = torch.exp(-attenuation * crossed)
        floor = channel_view(params["floor"], image)
        return floor + (image - floor) * transmission


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
        return {"max_db": self.values["max_db"], "low": reference.minimum, "beam_axis": self._beam_axis(spacing),
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
        return low + (image - low) * gain


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
        return {"level": self.values["level"], "low": reference.minimum, "span": reference.span,
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
        return image + level * clutter

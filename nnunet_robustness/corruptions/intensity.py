"""Intensity families: contrast, gamma, brightness and the multiplicative bias field.

Contrast, gamma and brightness are defined on the robust intensity range, so level 3 is the same
change on CT (HU), MR and 0-255 images. Direction (brighter/darker, gamma above/below 1) is drawn from
the generator; the magnitude is set by the severity.
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
    intensity_reference,
    random_sign,
    register,
    uniform,
)

# nnU-Net's z-score and min-max normalisations map a * x + b (a > 0) back onto x: a global affine
# intensity change never reaches the network under them (CTNormalization uses fixed HU statistics
# and does not cancel it).
AFFINE_INVARIANT_NORMALISATIONS = frozenset({"ZScoreNormalization", "RescaleTo01Normalization"})


@register
class Contrast(Corruption):
    """Contrast reduction about the foreground median: ``m + factor * (x - m)``. Models a flatter
    tissue contrast (different sequence parameters, lower kVp difference, a wrong window baked into
    exported images). Same form as ImageNet-C's contrast corruption (Hendrycks & Dietterich, ICLR
    2019, https://arxiv.org/abs/1903.12261), with the median of the foreground instead of the mean
    of the whole image so that large air/background regions do not move the pivot.
    """

    family = "contrast"
    group = "intensity"
    cancelled_by = AFFINE_INVARIANT_NORMALISATIONS
    summary = "contrast reduction about the foreground median (flatter tissue contrast)"
    table = SeverityTable(
        identity={"factor": 1.0},
        levels=tuple({"factor": v} for v in (0.85, 0.7, 0.55, 0.4, 0.25)),
        meanings=(
            "85% of the original contrast: barely noticeable",
            "70%: visibly flatter",
            "55%: subtle tissue boundaries weaken",
            "40%: low-contrast organs hard to separate",
            "25%: only strong edges (bone/air) remain clear",
        ),
    )

    def validate(self) -> None:
        self._require(self.values["factor"] > 0, f"factor must be > 0, got {self.values['factor']}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        return {"factor": self.values["factor"], "center": intensity_reference(image).median}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        center = channel_view(params["center"], image)
        return center + (image - center) * params["factor"]


@register
class WindowSaturation(Corruption):
    """Intensities saturated outside a display window around the foreground median: the image was
    exported (or reconstructed) with a window narrower than its tissue range, so everything brighter or
    darker than the window is clipped to its edge, as in DICOMs burnt in with a soft-tissue window or
    8-bit exports of MR. The window is ``width_fraction`` of the robust range, centred on the
    foreground median.

    Unlike ``contrast`` (a global affine map, which nnU-Net's z-score normalisation removes exactly),
    clipping is not affine: the structure lost in the saturated tissue stays lost after
    normalisation, so this is the intensity-range change that reaches the network under every
    normalisation scheme. Reference: Bushberg et al., The Essential Physics of Medical Imaging, 3rd
    ed., 2012, section 5.6 (window and level).
    """

    family = "window_saturation"
    group = "intensity"
    summary = "intensities clipped to a narrowed display window (saturated export); survives z-scoring"
    table = SeverityTable(
        identity={"width_fraction": 2.0},
        levels=tuple({"width_fraction": v} for v in (0.9, 0.75, 0.6, 0.45, 0.3)),
        meanings=(
            "window 90% of the robust range: the brightest and darkest tissue just saturate",
            "75%: bright structures (fat, contrast) clip",
            "60%: both tissue extremes lose their texture",
            "45%: a narrow soft-tissue window",
            "30%: only the median tissue keeps its contrast",
        ),
    )

    def validate(self) -> None:
        self._require(self.values["width_fraction"] > 0,
                      f"width_fraction must be > 0, got {self.values['width_fraction']}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        half = [self.values["width_fraction"] * span / 2 for span in reference.span]
        return {"low": [m - h for m, h in zip(reference.median, half)],
                "high": [m + h for m, h in zip(reference.median, half)]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        return torch.minimum(torch.maximum(image, channel_view(params["low"], image)), channel_view(params["high"], image))


@register
class Gamma(Corruption):
    """Gamma (non-linear intensity response) on the robust range: with ``y = (x - low) / span``
    clipped to [0, 1], ``x + span * (y**gamma - y)``, ``gamma = exp(+-log_gamma)`` (direction drawn
    at random). Values outside the robust range are shifted continuously, not clipped. Models
    scanner/reconstruction response curves and display-gamma mismatches; TorchIO's ``RandomGamma``
    applies ``x**gamma`` to raw intensities, which is undefined for negative HU.

    Reference: Perez-Garcia et al., "TorchIO", Comput. Methods Programs Biomed. 208:106236, 2021 (RandomGamma).
    """

    family = "gamma"
    group = "intensity"
    summary = "gamma curve on the robust intensity range (non-linear intensity response)"
    table = SeverityTable(
        identity={"log_gamma": 0.0},
        levels=tuple({"log_gamma": v} for v in (0.15, 0.3, 0.45, 0.65, 0.9)),
        meanings=(
            "gamma 1.16 or 0.86: slight change in mid-tone brightness",
            "gamma 1.35 or 0.74: noticeable mid-tone shift",
            "gamma 1.57 or 0.64: tissue contrast redistributed",
            "gamma 1.92 or 0.52: dark or bright tissues compressed",
            "gamma 2.46 or 0.41: strong non-linear distortion of tissue contrast",
        ),
    )

    def validate(self) -> None:
        self._require(self.values["log_gamma"] >= 0, f"log_gamma must be >= 0, got {self.values['log_gamma']}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        gamma = math.exp(random_sign(generator) * self.values["log_gamma"])
        return {"gamma": gamma, "low": reference.low, "span": reference.span}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        low = channel_view(params["low"], image)
        span = channel_view(params["span"], image)
        scaled = ((image - low) / span).clamp(0.0, 1.0)
        return image + span * (scaled.pow(params["gamma"]) - scaled)


@register
class Brightness(Corruption):
    """Global brightness shift, ``x +- shift_fraction * span`` (direction drawn at random): a
    calibration offset, such as CT number drift between scanners and kernels or the arbitrary
    scaling offsets of MR exports. The additive counterpart of ImageNet-C's brightness corruption
    (Hendrycks & Dietterich, ICLR 2019, https://arxiv.org/abs/1903.12261), applied to the raw
    intensities with the shift measured in robust-range units instead of in HSV space."""

    family = "brightness"
    group = "intensity"
    cancelled_by = AFFINE_INVARIANT_NORMALISATIONS
    summary = "global intensity offset as a fraction of the robust range (calibration drift)"
    table = SeverityTable(
        identity={"shift_fraction": 0.0},
        levels=tuple({"shift_fraction": v} for v in (0.05, 0.1, 0.15, 0.2, 0.3)),
        meanings=(
            "5% of the robust range (~50 HU on a soft-tissue/bone CT range)",
            "10%: visibly brighter/darker",
            "15%: tissue classes shift by a large part of their separation",
            "20%: strong offset",
            "30%: severe offset, intensity-based priors break",
        ),
    )

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        sign = random_sign(generator)
        return {"shift": [sign * self.values["shift_fraction"] * s for s in intensity_reference(image).span]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        return image + channel_view(params["shift"], image)


def polynomial_terms(order: int, ndim: int) -> list[tuple[int, ...]]:
    """Exponents of the polynomial basis, in TorchIO's order (x outermost, then y, then z)."""
    terms = []
    for x_order in range(order + 1):
        for y_order in range(order + 1 - x_order):
            if ndim == 2:
                terms.append((x_order, y_order))
                continue
            for z_order in range(order + 1 - (x_order + y_order)):
                terms.append((x_order, y_order, z_order))
    return terms


@register
class BiasField(Corruption):
    """Multiplicative low-frequency bias field of MR (B1 inhomogeneity, coil sensitivity):
    ``floor + (x - floor) * exp(sum_ijk c_ijk X^i Y^j Z^k)`` with polynomial terms up to ``order``
    in coordinates normalised to [-1, 1] over the field of view, coefficients ``c ~ U(-m, m)``.

    Van Leemput et al., "Automated model-based bias field correction of MR images of the brain",
    IEEE TMI 18(10):885-896, 1999; the same model as TorchIO's
    ``BiasField`` (identical given the same coefficients when the image minimum is 0). ``floor`` is
    the channel minimum: the field multiplies signal above the background, which keeps the
    corruption meaningful on CT where intensities are negative.
    """

    family = "bias_field"
    group = "intensity"
    summary = "multiplicative smooth polynomial bias field (MR coil inhomogeneity, Van Leemput 1999)"
    table = SeverityTable(
        identity={"coefficient_max": 0.0},
        levels=tuple({"coefficient_max": v} for v in (0.1, 0.2, 0.3, 0.4, 0.5)),
        meanings=(
            "coefficients up to 0.1: ~10-20% shading across the field of view",
            "0.2: clearly visible shading, typical uncorrected 3 T",
            "0.3: strong shading, one side markedly darker",
            "0.4: severe inhomogeneity, as with a surface coil",
            "0.5: TorchIO's default maximum; tissue intensities overlap across the image",
        ),
    )
    options = {"order": 3}

    def validate(self) -> None:
        self._require(self.values["coefficient_max"] >= 0,
                      f"coefficient_max must be >= 0, got {self.values['coefficient_max']}")
        order = self.settings["order"]
        self._require(isinstance(order, int) and not isinstance(order, bool) and 0 <= order <= 10,
                      f"order must be an int in 0..10, got {order!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        order = self.settings["order"]
        num_terms = len(polynomial_terms(order, image.ndim - 1))
        coefficients = uniform(generator, num_terms) * self.values["coefficient_max"]
        return {"coefficients": coefficients.tolist(), "order": order,
                "floor": [float(v) for v in image.reshape(image.shape[0], -1).amin(1)]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        field = bias_field(image.shape[1:], params["order"], params["coefficients"], image.device)
        floor = channel_view(params["floor"], image)
        return floor + (image - floor) * field


def bias_field(shape: tuple[int, ...], order: int, coefficients: list[float], device: torch.device) -> torch.Tensor:
    """``exp`` of the polynomial, built separably: one small power table per axis and an einsum."""
    ndim = len(shape)
    terms = polynomial_terms(order, ndim)
    if len(coefficients) != len(terms):
        raise ValueError(f"bias_field: {len(coefficients)} coefficients given, order {order} in {ndim}D needs {len(terms)}")
    powers = []
    for size in shape:
        half = (size - 1) / 2
        coordinate = (torch.arange(size, device=device, dtype=torch.float32) - half) / (half if half > 0 else 1.0)
        powers.append(torch.stack([coordinate**p for p in range(order + 1)], dim=1))  # (size, order + 1)
    table = torch.zeros((order + 1,) * ndim, device=device, dtype=torch.float32)
    for exponents, coefficient in zip(terms, coefficients):
        table[exponents] = coefficient
    if ndim == 2:
        log_field = torch.einsum("ai,bj,ij->ab", powers[0], powers[1], table)
    else:
        log_field = torch.einsum("ck,ijk->ijc", powers[2], table)  # contract z first: (i, j, Z)
        log_field = torch.einsum("bj,ijc->ibc", powers[1], log_field)
        log_field = torch.einsum("ai,ibc->abc", powers[0], log_field)
    return torch.exp(log_field)

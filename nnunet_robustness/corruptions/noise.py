"""Noise families: Gaussian, Rician, speckle, salt-and-pepper, Poisson.

Noise levels are fractions of the image's robust intensity range (see ``IntensityReference``), so a
level means the same visual signal-to-noise on CT (HU), MR (arbitrary units) and 0-255 images. The
noise field is drawn from a generator seeded by ``params["noise_seed"]`` on the image's device; with
the same seed, all severities share one noise realisation that is only scaled (common random
numbers), which is what makes sweeps smooth and severity strictly monotone.
"""

from __future__ import annotations

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
)

_NOISE_STD_MEANINGS = (
    "sigma 1% of the robust range: faint grain, below most scanners' noise floor",
    "sigma 2.5%: visible grain, typical low-dose CT / fast MR",
    "sigma 5%: strong grain, small low-contrast structures start to blur into it",
    "sigma 8%: heavy noise, low-contrast boundaries unreliable",
    "sigma 12%: severe noise, only high-contrast anatomy remains clear",
)


_NOISE_STD_TABLE = SeverityTable(
    identity={"std_fraction": 0.0},
    levels=tuple({"std_fraction": v} for v in (0.01, 0.025, 0.05, 0.08, 0.12)),
    meanings=_NOISE_STD_MEANINGS,
)


class _NoiseStdFraction(Corruption):
    """Shared by the additive noise families graded by ``std_fraction`` of the robust range."""

    table = _NOISE_STD_TABLE

    def validate(self) -> None:
        self._require(self.values["std_fraction"] >= 0, f"std_fraction must be >= 0, got {self.values['std_fraction']}")


@register
class GaussianNoise(_NoiseStdFraction):
    """Additive white Gaussian noise: electronic/thermal noise of the receiver, the usual model for
    CT and high-SNR MR. ``x + sigma * n``, ``n ~ N(0, 1)`` i.i.d. per voxel and channel, with
    ``sigma = std_fraction * robust range`` of each channel.

    Same model as TorchIO's ``Noise`` (mean 0); with ``noise_seed == seed`` the values are identical
    on CPU (see ``tests/corruptions/test_torchio_parity.py``).

    Reference: Hendrycks & Dietterich, "Benchmarking neural network robustness to common corruptions
    and perturbations", ICLR 2019 (Gaussian noise); Gudbjartsson & Patz, MRM 34:910, 1995 (MR noise).
    """

    family = "gaussian_noise"
    group = "noise"
    summary = "additive white Gaussian noise, sigma as a fraction of the robust intensity range"

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        return {"std": [self.values["std_fraction"] * s for s in reference.span], "noise_seed": draw_seed(generator)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        generator = field_generator(params["noise_seed"], image.device)
        noise = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        return noise.mul_(channel_view(params["std"], image)).add_(image)  # in place: one buffer, not three


@register
class RicianNoise(_NoiseStdFraction):
    """Rician noise of MR magnitude images: complex Gaussian noise added to the real and imaginary
    channels before the magnitude is taken, ``sqrt((m + sigma n1)^2 + (sigma n2)^2)``.

    Gudbjartsson & Patz, "The Rician distribution of noisy MRI data", MRM 34(6), 1995,
    https://doi.org/10.1002/mrm.1910340618. The magnitude ``m`` is the intensity above the channel
    minimum (MR background is ~0), so the background acquires the Rayleigh-distributed, positive
    noise floor seen on real scanners. TorchIO has no Rician transform.
    """

    family = "rician_noise"
    group = "noise"
    summary = "MR magnitude (Rician) noise: complex Gaussian noise before taking the magnitude"

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        return {"std": [self.values["std_fraction"] * s for s in reference.span],
                "floor": reference.minimum, "noise_seed": draw_seed(generator)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        generator = field_generator(params["noise_seed"], image.device)
        noise = torch.randn((2, *image.shape), generator=generator, device=image.device, dtype=image.dtype)
        std = channel_view(params["std"], image)
        floor = channel_view(params["floor"], image)
        magnitude = image - floor
        return floor + torch.sqrt((magnitude + std * noise[0]) ** 2 + (std * noise[1]) ** 2)


@register
class SpeckleNoise(Corruption):
    """Multiplicative speckle, as in ultrasound (coherent interference of scatterers):
    ``y + y * n`` with ``n ~ N(0, variance)`` on the image scaled to [0, 1].

    This is scikit-image's ``random_noise(mode='speckle', var=variance)``
    (https://scikit-image.org/docs/stable/api/skimage.util.html#skimage.util.random_noise), the
    corruption of the seed study. By default the [0, 1] scaling uses the robust range
    (``reference='robust'``), intensities below its low end get no speckle (no echo, no speckle), and
    nothing is clipped; the seed-study presets use ``reference='minmax'`` and ``clip=True``, exactly as
    skimage does on a min-max scaled image. TorchIO has no speckle transform.

    Reference: Burckhardt, "Speckle in ultrasound B-mode scans", IEEE Trans. Sonics Ultrason. 25:1, 1978;
    Hendrycks & Dietterich, ICLR 2019 (speckle noise).
    """

    family = "speckle_noise"
    group = "noise"
    summary = "multiplicative speckle (ultrasound), skimage random_noise(mode='speckle') semantics"
    table = SeverityTable(
        identity={"variance": 0.0},
        levels=tuple({"variance": v} for v in (0.01, 0.02, 0.04, 0.07, 0.1)),
        meanings=(
            "variance 0.01 (10% multiplicative std): mild speckle, texture still homogeneous",
            "variance 0.02 (14%): visible granular texture",
            "variance 0.04 (20%): coarse speckle, typical of a low-end probe",
            "variance 0.07 (26%): strong speckle, weak boundaries break up",
            "variance 0.1 (32%): the seed study's 'harder' setting, on the robust instead of min-max scale",
        ),
    )
    options = {"reference": "robust", "clip": False}

    def validate(self) -> None:
        self._require(self.values["variance"] >= 0, f"variance must be >= 0, got {self.values['variance']}")
        self._require(self.settings["reference"] in ("robust", "minmax"),
                      f"reference must be 'robust' or 'minmax', got {self.settings['reference']!r}")
        self._require(isinstance(self.settings["clip"], bool), f"clip must be True or False, got {self.settings['clip']!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        if self.settings["reference"] == "minmax":
            low = reference.minimum
            span = [max(hi - lo, 1e-12) for lo, hi in zip(reference.minimum, reference.maximum)]
        else:
            low, span = reference.low, reference.span
        return {"std": self.values["variance"] ** 0.5, "low": low, "span": span,
                "clip": self.settings["clip"], "noise_seed": draw_seed(generator)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        generator = field_generator(params["noise_seed"], image.device)
        noise = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        low = channel_view(params["low"], image)
        span = channel_view(params["span"], image)
        scaled = (image - low) / span
        speckled = scaled + scaled.clamp(min=0) * (noise * params["std"])
        if params["clip"]:
            speckled = speckled.clamp(0.0, 1.0)
        return low + speckled * span


@register
class SaltPepperNoise(Corruption):
    """Impulse noise: a fraction ``amount`` of voxels, chosen independently per channel, is replaced
    by the robust maximum ("salt") or minimum ("pepper") with equal probability. Models dead/hot
    detector elements and transmission bit errors; scikit-image ``random_noise(mode='s&p')``
    semantics with the robust range in place of [0, 1]. TorchIO has no impulse-noise transform.

    Reference: Gonzalez & Woods, Digital Image Processing, 4th ed., 2018, section 5.2 (impulse noise).
    """

    family = "salt_pepper_noise"
    group = "noise"
    summary = "impulse noise: a fraction of voxels set to the robust min or max (dead/hot detector elements)"
    table = SeverityTable(
        identity={"amount": 0.0},
        levels=tuple({"amount": v} for v in (0.001, 0.003, 0.01, 0.03, 0.06)),
        meanings=(
            "0.1% of voxels: a few isolated dead/hot pixels",
            "0.3%: scattered impulses visible on every slice",
            "1%: dense impulses, a median filter would still remove them",
            "3%: heavy corruption of fine structures",
            "6%: severe, impulses dominate small structures",
        ),
    )

    def validate(self) -> None:
        amount = self.values["amount"]
        self._require(0 <= amount <= 1, f"amount must be in [0, 1], got {amount}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        return {"amount": self.values["amount"], "low": reference.low, "high": reference.high,
                "noise_seed": draw_seed(generator)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        generator = field_generator(params["noise_seed"], image.device)
        # Two uniforms per voxel: which voxels (nested across amounts) and salt vs pepper.
        draws = torch.rand((2, *image.shape), generator=generator, device=image.device, dtype=image.dtype)
        replaced = draws[0] < params["amount"]
        impulses = torch.where(draws[1] < 0.5, channel_view(params["high"], image), channel_view(params["low"], image))
        return torch.where(replaced, impulses, image)


@register
class PoissonNoise(Corruption):
    """Photon-counting (shot) noise, as in X-ray, CT and nuclear imaging: the intensity above the
    robust minimum is read as an expected photon count ``lambda``, replaced by a Poisson draw
    ``k ~ Poisson(lambda)`` and mapped back, i.e. ``x + (k - lambda) / peak_counts * span``.

    Graded by ``noise_at_peak``, the relative noise std/mean at the robust maximum, which fixes the
    photon count there: ``peak_counts = 1 / noise_at_peak**2``. Darker tissue gets fewer photons and
    relatively more noise (std/mean = 1/sqrt(lambda)), unlike additive Gaussian noise.

    This is an image-domain model (like scikit-image's ``random_noise(mode='poisson')``), not a
    sinogram-domain low-dose CT simulation. TorchIO has no Poisson transform.

    Reference: Hendrycks & Dietterich, ICLR 2019 (shot noise); Hsieh, Computed Tomography, 3rd ed., 2015,
    chapter 5 (photon statistics).
    """

    family = "poisson_noise"
    group = "noise"
    summary = "photon-count (shot) noise: Poisson statistics, fewer photons in darker tissue"
    table = SeverityTable(
        identity={"noise_at_peak": 0.0},
        levels=tuple({"noise_at_peak": v} for v in (0.02, 0.04, 0.07, 0.11, 0.18)),
        meanings=(
            "2% relative noise at the robust max (2500 photons)",
            "4% (625 photons): grain visible in dark regions",
            "7% (204 photons): clearly grainy, low-dose look",
            "11% (83 photons): heavy noise in soft tissue",
            "18% (31 photons): very low dose, dark tissue barely resolved",
        ),
    )

    def validate(self) -> None:
        noise = self.values["noise_at_peak"]
        self._require(noise >= 0, f"noise_at_peak must be >= 0, got {noise}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        reference = intensity_reference(image)
        return {"noise_at_peak": self.values["noise_at_peak"], "low": reference.low, "span": reference.span,
                "noise_seed": draw_seed(generator)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        noise_at_peak = float(params["noise_at_peak"])
        if noise_at_peak == 0:
            return image.clone()
        peak = 1.0 / noise_at_peak**2
        generator = field_generator(params["noise_seed"], image.device)
        low = channel_view(params["low"], image)
        span = channel_view(params["span"], image)
        expected = ((image - low) / span).clamp(min=0) * peak
        counts = torch.poisson(expected, generator=generator)
        return image + (counts - expected) * (span / peak)

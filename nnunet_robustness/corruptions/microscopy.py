"""Microscopy / histology families: H&E stain variation, JPEG compression, defocus blur, uneven
illumination (vignetting), and bubbles/dust occlusions.

They work on nnU-Net's reading of RGB PNGs (``NaturalImage2DIO``: 3 channels, 2D, values 0-255) and
on fluorescence images (any number of channels). ``he_stain`` needs exactly 3 RGB channels. Lengths
are in pixels: nnU-Net gives natural 2D images a dummy spacing, and microscopy PNGs carry none. On 3D
stacks the in-plane families act on the last two spatial axes, the same way on every slice.

Intensity conventions: ``he_stain`` and ``jpeg_compression`` work on 8-bit scaled values (0-255, or
[0, 1] images, which are scaled by 255 and back); ``vignetting`` and ``dust_bubbles`` multiply the
light intensity, with 0 meaning no light. They are therefore not affine-equivariant, unlike the
MR/CT-agnostic families; ``defocus_blur`` is (a convolution).

Normalisation: nnU-Net z-scores RGB channels per image (``ZScoreNormalization``) or rescales them to
[0, 1] (``RGBTo01Normalization``). Both undo a global per-channel gain and offset only, so they cancel
none of these families fully; a per-channel z-score partly absorbs a global stain intensity change.
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from nnunet_robustness.corruptions._core import (
    Corruption,
    Params,
    SeverityTable,
    register,
    uniform,
)

_LOG_ADJUST = math.log(1e-6)  # scikit-image's optical-density scaling in rgb2hed / hed2rgb


def _stain_matrices() -> tuple[torch.Tensor, torch.Tensor]:
    """Ruifrok & Johnston's H&E-DAB colour-deconvolution matrices, as scikit-image ships them."""
    from skimage.color.colorconv import hed_from_rgb, rgb_from_hed

    return torch.from_numpy(np.asarray(hed_from_rgb, dtype=np.float64)), \
        torch.from_numpy(np.asarray(rgb_from_hed, dtype=np.float64))


def rgb_to_hed(rgb01: torch.Tensor) -> torch.Tensor:
    """Stain densities (3, *spatial) of an RGB image in [0, 1] (3, *spatial): scikit-image's ``rgb2hed``
    without its clipping of negative densities, so that ``hed_to_rgb`` inverts it exactly."""
    hed_from_rgb, _ = _stain_matrices()
    density = torch.log(rgb01.double().clamp(min=1e-6)) / _LOG_ADJUST
    return torch.einsum("c...,cd->d...", density, hed_from_rgb.to(density.device))


def hed_to_rgb(hed: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] from stain densities (scikit-image's ``hed2rgb``)."""
    _, rgb_from_hed = _stain_matrices()
    return torch.exp(torch.einsum("d...,dc->c...", hed.double(), rgb_from_hed.to(hed.device))
                     * _LOG_ADJUST).clamp(0.0, 1.0)


# Mean optical density (log10) above which a pixel is tissue rather than glass (Macenko et al. 2009's beta).
_TISSUE_OPTICAL_DENSITY = 0.15


def _eight_bit_scale(image: torch.Tensor) -> float:
    """255 for 0-255 images, 1 for images already in [0, 1]."""
    return 1.0 if float(image.amax()) <= 1.0 else 255.0


def _in_plane(image: torch.Tensor) -> torch.Tensor:
    """(C, *spatial) -> (C * slices, H, W): the last two spatial axes as the plane."""
    return image.reshape(-1, image.shape[-2], image.shape[-1])


class _Microscopy(Corruption):
    group = "microscopy"


@register
class StainVariation(_Microscopy):
    """H&E stain variation (staining protocol, reagent age, scanner): the image is unmixed into
    haematoxylin, eosin and DAB optical densities by colour deconvolution (Ruifrok & Johnston,
    "Quantification of histochemical staining by color deconvolution", Anal. Quant. Cytol. Histol.
    23(4), 2001; scikit-image's ``rgb2hed``), each density is scaled and shifted, ``d' = a d + b`` with
    ``a = 1 + sigma * u`` and ``b = sigma * v * q99(d) * t`` (``u, v`` uniform in [-1, 1] per stain, drawn
    once per seed; ``q99`` the stain's 99th percentile density), floored at zero density (a stain cannot be
    negative), and mixed back to RGB. ``t`` is the pixel's tissue weight, its mean optical density
    (log10) over the channels divided by 0.15 and capped at 1 (0.15: the usual glass/tissue threshold,
    Macenko et al., ISBI 2009, https://doi.org/10.1109/ISBI.2009.5193250): stain binds to tissue, so bare
    white glass is unchanged and faint background glass shifts at most by its share (Tellez et al.'s
    unweighted shift tinted white glass by up to 12.8 grey levels at level 5).
    This is the HED augmentation of Tellez et al., "Quantifying the effects of data augmentation and
    stain color normalization in convolutional neural networks for computational pathology", Med.
    Image Anal. 58, 2019, https://doi.org/10.1016/j.media.2019.101544. Stain maps keep their structure
    (an affine change per stain); only their strength and the colour balance change.
    Needs 3 channels (RGB, 0-255 or [0, 1]).

    Normalisation: a per-channel ZScore absorbs a global brightness/contrast change per RGB channel,
    not the non-linear stain remixing; ``RGBTo01Normalization`` cancels nothing.
    """

    family = "he_stain"
    channels = 3  # colour deconvolution of R, G, B
    summary = "H&E stain variation: haematoxylin/eosin densities scaled and shifted by colour deconvolution"
    intensity_scale = "rgb"
    table = SeverityTable(
        identity={"sigma": 0.0},
        levels=tuple({"sigma": v} for v in (0.03, 0.06, 0.1, 0.15, 0.22)),
        meanings=(
            "densities +-3%: batch-to-batch variation within one lab",
            "+-6%: different staining days / scanners",
            "+-10%: different labs (Tellez et al.'s 'HED light' range is +-5%)",
            "+-15%: strongly over/under-stained slides",
            "+-22%: extreme, close to 'HED strong' augmentation (+-20%)",
        ),
    )

    def validate(self) -> None:
        self._require(0 <= self.values["sigma"] < 1, f"sigma must be in [0, 1), got {self.values['sigma']}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        self._require(image.shape[0] == 3, f"needs an RGB image with 3 channels, got {image.shape[0]}")
        draws = uniform(generator, 2, 3)  # scale and bias draws per stain, whatever the severity
        scale = _eight_bit_scale(image)
        hed = rgb_to_hed(image / scale).reshape(3, -1)
        stride = max(1, hed.shape[1] // 65536)
        q99 = torch.quantile(hed[:, ::stride], 0.99, dim=1).clamp(min=0.0)
        return {"sigma": self.values["sigma"], "scale": scale, "u": draws[0].tolist(), "v": draws[1].tolist(),
                "q99": q99.tolist()}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        sigma = float(params["sigma"])
        if sigma == 0:
            return image.clone()
        self._require(image.shape[0] == 3, f"needs an RGB image with 3 channels, got {image.shape[0]}")
        scale = float(params["scale"])
        hed = rgb_to_hed(image / scale)
        view = (3, *([1] * (image.ndim - 1)))
        def per_stain(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float64, device=image.device).view(view)

        gain = 1.0 + sigma * per_stain(params["u"])
        # Glass stays glass: stain binds to tissue, so the shift is weighted by how much the pixel absorbs
        # (optical density up to the usual glass/tissue threshold, 0 on bare white glass).
        density = -torch.log10((image / scale).double().clamp(min=1e-6)).mean(dim=0, keepdim=True)
        tissue = (density / _TISSUE_OPTICAL_DENSITY).clamp(0.0, 1.0)
        bias = sigma * per_stain(params["v"]) * per_stain(params["q99"]) * tissue
        # A stain cannot have a negative density: shifted densities stop at 0 (or at the input's own
        # value where unmixing gave a negative one). Stain vectors are positive, so RGB stays <= 1.
        changed = hed_to_rgb(torch.maximum(hed * gain + bias, hed.clamp(max=0.0)))
        # Add the change rather than replacing: pixels the stain model cannot represent (pure black,
        # saturated) keep their value, and zero change gives the input exactly.
        return image + ((changed - hed_to_rgb(hed)) * scale).to(image.dtype)


@register
class JPEGCompression(_Microscopy):
    """JPEG compression, as in whole-slide image formats (Aperio SVS, most scanners) and image
    exports: 8x8 block DCT, quantisation by a quality-scaled table and 4:2:0 chroma subsampling for
    colour (Wallace, "The JPEG still picture compression standard", IEEE Trans. Consum. Electron.
    38(1), 1992, https://doi.org/10.1109/30.125072), via Pillow's libjpeg. Blocking, ringing at edges
    and colour bleeding grow as quality falls.

    Graded by ``quality_loss = 100 - quality`` so that 0 is the untouched image. RGB (3 channels) is
    encoded as colour, other channel counts per channel as greyscale; 3D stacks slice by slice.
    Images within [0, 255] are encoded as they are (rounded); others are mapped from their min-max
    range to 0-255 and back.

    Normalisation: not cancelled (blocking, ringing, chroma loss) by ZScore or ``RGBTo01Normalization``.
    """

    family = "jpeg_compression"
    summary = "JPEG compression at falling quality: 8x8 blocking, ringing, chroma subsampling (Pillow)"
    intensity_scale = "8bit"
    table = SeverityTable(
        identity={"quality_loss": 0.0},
        levels=tuple({"quality_loss": v} for v in (10.0, 30.0, 50.0, 75.0, 90.0)),
        meanings=(
            "quality 90: artefacts invisible at 1:1 (typical WSI setting)",
            "quality 70: faint blocking in smooth regions",
            "quality 50: visible blocking and ringing",
            "quality 25: strong blocking, colour bleeding at nuclei",
            "quality 10: severe, texture replaced by 8x8 blocks",
        ),
    )

    def validate(self) -> None:
        loss = self.values["quality_loss"]
        self._require(0 <= loss <= 99, f"quality_loss must be in [0, 99] (quality 100..1), got {loss}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        low, high = float(image.amin()), float(image.amax())
        if low >= 0.0 and high <= 255.0:
            low, high = 0.0, 255.0
        return {"quality": int(round(100 - self.values["quality_loss"])), "low": low, "span": max(high - low, 1e-12)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        from PIL import Image

        quality = int(params["quality"])
        if quality >= 100:
            return image.clone()
        low, span = float(params["low"]), float(params["span"])
        eight_bit = ((image - low) * (255.0 / span)).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        colour = image.shape[0] == 3
        # (C, ..., H, W) -> list of 2D planes, each (H, W, 3) for colour or (H, W) for greyscale.
        if colour:
            planes = np.moveaxis(eight_bit, 0, -1).reshape(-1, image.shape[-2], image.shape[-1], 3)
        else:
            planes = eight_bit.reshape(-1, image.shape[-2], image.shape[-1])
        decoded = np.empty_like(planes)
        for index, plane in enumerate(planes):
            buffer = io.BytesIO()
            Image.fromarray(plane).save(buffer, format="JPEG", quality=quality, subsampling=2)
            decoded[index] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
        if colour:
            restored = np.moveaxis(decoded.reshape(*image.shape[1:], 3), -1, 0)
        else:
            restored = decoded.reshape(image.shape)
        out = torch.from_numpy(np.ascontiguousarray(restored)).to(device=image.device, dtype=image.dtype)
        return out * (span / 255.0) + low


def _disk_kernel(radius: float, supersample: int = 8) -> torch.Tensor:
    """Pillbox PSF of ``radius`` pixels, anti-aliased by supersampling each pixel, summing to 1."""
    half = int(math.ceil(radius - 0.5)) if radius > 0.5 else 0
    fine = (torch.arange((2 * half + 1) * supersample, dtype=torch.float64) + 0.5) / supersample - (half + 0.5)
    inside = (fine.view(-1, 1) ** 2 + fine.view(1, -1) ** 2) <= radius**2
    kernel = inside.double().view(2 * half + 1, supersample, 2 * half + 1, supersample).mean(dim=(1, 3))
    return kernel / kernel.sum()


@register
class DefocusBlur(_Microscopy):
    """Defocus: a point out of the focal plane images as a disk (the geometric-optics circle of
    confusion; Hopkins, "The frequency response of a defocused optical system", Proc. R. Soc. A 231,
    1955, https://doi.org/10.1098/rspa.1955.0158), the dominant blur of whole-slide scanners where
    tissue is thicker than the depth of field (Campanella et al., "Towards machine learned quality
    control: a benchmark for sharpness quantification in digital pathology", Comput. Med. Imaging
    Graph. 65, 2018, https://doi.org/10.1016/j.compmedimag.2017.09.001).

    Convolution with an anti-aliased pillbox of ``radius`` pixels (reflected borders) in the image
    plane. Unlike a Gaussian blur, a disk's spectrum has zeros, so some frequencies are lost and
    edges show faint ringing. Deterministic.

    Normalisation: not cancelled (lost high frequencies) by ZScore or ``RGBTo01Normalization``.
    """

    family = "defocus_blur"
    summary = "microscope defocus: convolution with a disk (circle of confusion) of radius in pixels"
    table = SeverityTable(
        identity={"radius": 0.0},
        levels=tuple({"radius": v} for v in (1.0, 2.0, 3.0, 4.5, 6.5)),
        meanings=(
            "1 px circle of confusion: slightly soft nuclei edges",
            "2 px: chromatin texture lost",
            "3 px: nuclear borders blurred, typical out-of-focus WSI tile",
            "4.5 px: small nuclei merge",
            "6.5 px: severe, cell-level detail gone",
        ),
    )

    def validate(self) -> None:
        radius = self.values["radius"]
        self._require(0 <= radius <= 64, f"radius must be in [0, 64] pixels, got {radius}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        return {"radius": self.values["radius"]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        radius = float(params["radius"])
        if radius == 0:
            return image.clone()
        kernel = _disk_kernel(radius).to(device=image.device, dtype=image.dtype)
        half = kernel.shape[0] // 2
        planes = _in_plane(image).unsqueeze(1)
        if half == 0:  # a disk narrower than a pixel is a pixel: nothing to blur
            return image.clone()
        mode = "reflect" if min(planes.shape[-2:]) > half else "replicate"
        padded = F.pad(planes, (half, half, half, half), mode=mode)
        return F.conv2d(padded, kernel.view(1, 1, *kernel.shape)).view(image.shape)


@register
class Vignetting(_Microscopy):
    """Uneven illumination (vignetting / shading): the light reaching the camera falls off away from
    the optical axis (the cos^4 law and aperture vignetting), and the illumination of a microscope is
    rarely flat, so tiles are darker at their borders (Smith et al., "CIDRE: an illumination-correction
    method for optical microscopy", Nat. Methods 12(5), 2015, https://doi.org/10.1038/nmeth.3323).

    The intensity is multiplied by ``1 - falloff * (r / R)^2``, with ``r`` the distance from the
    optical axis, drawn once per seed within 20% of the image size from its centre, and ``R`` the
    distance from the axis to the farthest corner: that corner gets exactly ``1 - falloff`` of the
    light on the axis (0.55 at level 5), the others more. (``R`` used to be the centre-to-corner
    distance, so an off-centre axis left the far corner at down to 0.12 of the axis, not the stated
    share.) Light intensity is multiplied, so 0 stays 0 (dark
    fluorescence background) and a white bright-field background darkens.

    Normalisation: ZScore absorbs only the mean gain, not the spatial fall-off.
    """

    family = "vignetting"
    summary = "uneven illumination: multiplicative radial fall-off about an off-centre optical axis"
    intensity_scale = "light"
    table = SeverityTable(
        identity={"falloff": 0.0},
        levels=tuple({"falloff": v} for v in (0.05, 0.1, 0.2, 0.3, 0.45)),
        meanings=(
            "5% darker at the corners: typical flat-field residual",
            "10%: visible shading across a tile",
            "20%: clear vignetting, tile seams visible in a stitched slide",
            "30%: strong, corner colours shift",
            "45%: severe, the darkest corner at 0.55 of the axis' light",
        ),
    )

    def validate(self) -> None:
        falloff = self.values["falloff"]
        self._require(0 <= falloff <= 1, f"falloff must be in [0, 1], got {falloff}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        centre = uniform(generator, 2, low=-0.2, high=0.2)
        return {"falloff": self.values["falloff"], "centre": centre.tolist()}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        falloff = float(params["falloff"])
        if falloff == 0:
            return image.clone()
        height, width = image.shape[-2], image.shape[-1]
        rows = torch.arange(height, dtype=torch.float64) - ((height - 1) / 2 + params["centre"][0] * height)
        cols = torch.arange(width, dtype=torch.float64) - ((width - 1) / 2 + params["centre"][1] * width)
        # the farthest corner from the axis gets exactly 1 - falloff
        corner = math.sqrt(float(rows.abs().max() ** 2 + cols.abs().max() ** 2)) or 1.0
        radius2 = (rows.view(-1, 1) ** 2 + cols.view(1, -1) ** 2) / corner**2
        gain = (1.0 - falloff * radius2).clamp(min=0.0).to(device=image.device, dtype=image.dtype)
        return image * gain


@register
class DustBubbles(_Microscopy):
    """Occlusions by dust and air bubbles on the slide, coverslip or optics (common slide artefacts
    flagged by quality control tools: Janowczyk et al., "HistoQC: an open-source quality control tool
    for digital pathology slides", JCO Clin. Cancer Inform. 3, 2019, https://doi.org/10.1200/CCI.18.00157).

    Sixteen occluders are drawn once per seed (position, size, type, in a fixed order): dust is a
    small opaque blob (radius 0.5-2% of the image size) that absorbs light; a bubble is larger (3-8%)
    with a dark refractive rim and a slightly dimmer inside. The light intensity is multiplied by the
    product of their transmissions, each ``1 - opacity * profile``. Severity sets how many of the
    sixteen are present (the first ``count``, fractional counts fade the last one in) and their
    opacity, so a higher level adds occluders and darkens the existing ones.

    Normalisation: not cancelled (local occlusions).
    """

    family = "dust_bubbles"
    summary = "dust specks and air bubbles: multiplicative dark occluders on the image plane"
    intensity_scale = "light"
    table = SeverityTable(
        identity={"count": 0.0, "opacity": 0.0},
        levels=tuple({"count": c, "opacity": o} for c, o in ((2, 0.5), (4, 0.6), (7, 0.7), (11, 0.8), (16, 0.9))),
        meanings=(
            "2 faint occluders: a clean slide with a speck or two",
            "4 occluders at 60% opacity",
            "7 occluders: a dusty coverslip",
            "11 occluders at 80%: a slide QC would flag",
            "16 dense occluders: bubbles and debris over much of the tile",
        ),
    )
    _OCCLUDERS = 16

    def validate(self) -> None:
        count, opacity = self.values["count"], self.values["opacity"]
        self._require(0 <= count <= self._OCCLUDERS, f"count must be in [0, {self._OCCLUDERS}], got {count}")
        self._require(0 <= opacity <= 1, f"opacity must be in [0, 1], got {opacity}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        draws = uniform(generator, self._OCCLUDERS, 4, low=0.0, high=1.0)  # row, col, size, type
        return {"count": self.values["count"], "opacity": self.values["opacity"], "occluders": draws.tolist()}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        count, opacity = float(params["count"]), float(params["opacity"])
        if count == 0 or opacity == 0:
            return image.clone()
        height, width = image.shape[-2], image.shape[-1]
        size = math.sqrt(height * width)
        rows = torch.arange(height, dtype=torch.float64).view(-1, 1)
        cols = torch.arange(width, dtype=torch.float64).view(1, -1)
        transmission = torch.ones((height, width), dtype=torch.float64)
        for index, (row, col, extent, kind) in enumerate(params["occluders"]):
            presence = min(1.0, max(0.0, count - index))
            if presence == 0:
                break
            distance = torch.sqrt((rows - row * (height - 1)) ** 2 + (cols - col * (width - 1)) ** 2)
            if kind < 0.7:  # dust: a soft-edged opaque blob
                radius = (0.005 + 0.015 * extent) * size
                profile = (radius + 0.5 - distance).clamp(0.0, 1.0)
            else:  # bubble: dark rim, slightly dim inside
                radius = (0.03 + 0.05 * extent) * size
                rim = torch.exp(-0.5 * ((distance - radius) / max(0.08 * radius, 0.5)) ** 2)
                inside = (radius - distance).clamp(0.0, 1.0)
                profile = torch.maximum(rim, 0.15 * inside)
            transmission = transmission * (1.0 - opacity * presence * profile)
        return image * transmission.to(device=image.device, dtype=image.dtype)

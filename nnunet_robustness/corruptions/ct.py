"""CT families simulated in the projection (sinogram) domain: low-dose noise, metal streaks, beam
hardening (cupping) and ring artefacts.

Intensities are Hounsfield units, in and out (the image dtype is restored by the base class). HU are
converted to linear attenuation ``mu = mu_water * (1 + HU / 1000)`` (``mu_water`` = 0.0193 / mm, water
at ~70 keV effective energy; HU below -1000, e.g. scanner padding, count as air), each axial slice is
forward-projected with a parallel-beam Radon transform (``_radon.py``: torch, batched over slices),
the physical error is made in the sinogram, and only the *difference* is reconstructed by filtered
back-projection and added to the image. Reconstructing the difference rather than the whole slice is
the standard noise/artefact-insertion approach (Yu et al. 2012, Zeng et al. 2015, cited below): the
clean image keeps its own resolution and noise, and a zero error gives the clean image exactly.

Geometry: the axial plane is the two axes other than ``slice_axis`` (default: the axis with the
largest spacing, the first on ties, i.e. nnU-Net's (Z, Y, X) through-plane axis on isotropic data);
2D images are one axial slice. Slices are padded to a square, and the in-plane pixel size is the
geometric mean of the two in-plane spacings (CT pixels are square in practice). The body's line
integrals only set the photon statistics and the beam-hardening error, so they are computed on a
grid of at most 128^2 pixels and interpolated; differences are reconstructed on a grid of at most
``recon_size`` pixels (default 512, i.e. native for clinical CT) and linearly upsampled beyond that.

Normalisation: nnU-Net's ``CTNormalization`` clips to the training foreground's 0.5-99.5 percentiles
and z-scores with the *training set's* mean and std, so none of these artefacts is undone: noise,
streaks, cupping and rings pass through at their HU amplitude (clipping removes only the extreme
values of metal streaks). ``ZScoreNormalization`` (per image) would rescale them together with the
image but not remove them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from nnunet_robustness.corruptions import _radon
from nnunet_robustness.corruptions._core import (
    Corruption,
    Params,
    SeverityTable,
    draw_seed,
    field_generator,
    register,
    uniform,
)
from nnunet_robustness.corruptions._ops import linear_interpolation_matrix

MU_WATER_PER_MM = 0.0193  # linear attenuation of water at ~70 keV (NIST XCOM: 0.193 / cm)
_PROJECTION_GRID = 128  # body line integrals are smooth enough at this resolution
_MAX_LOG_STD = 1.0  # photon starvation: the log signal of a starved ray is bounded, not infinite
# nnU-Net's readers give a true 2D image the through-plane spacing 999 (natural images: (999, 1, 1)) or
# 999 x its largest in-plane spacing (SimpleITK); no real slice comes near 999 pixels thick
_NNUNET_2D_DUMMY_SPACING = 999.0
ASSUMED_2D_THICKNESS_MM = 1.0  # a true 2D image carries no slice thickness


def hu_to_mu(hu: torch.Tensor) -> torch.Tensor:
    """Linear attenuation per mm; HU below -1000 (padding) count as air."""
    return MU_WATER_PER_MM * (1.0 + hu / 1000.0).clamp(min=0.0)


def _check_common(corruption: Corruption) -> None:
    settings = corruption.settings
    axis = settings["slice_axis"]
    corruption._require(axis is None or (isinstance(axis, int) and not isinstance(axis, bool) and axis >= 0),
                        f"slice_axis must be None or a spatial axis index >= 0, got {axis!r}")
    views = settings["views"]
    corruption._require(views is None or (isinstance(views, int) and not isinstance(views, bool) and views >= 8),
                        f"views must be None (automatic) or an int >= 8, got {views!r}")
    size = settings["recon_size"]
    corruption._require(isinstance(size, int) and not isinstance(size, bool) and size >= 16,
                        f"recon_size must be an int >= 16, got {size!r}")
    corruption._require(settings["kernel"] in ("ramp", "shepp-logan", "hann"),
                        f"kernel must be 'ramp', 'shepp-logan' or 'hann', got {settings['kernel']!r}")


_COMMON_OPTIONS = {"slice_axis": None, "views": None, "recon_size": 512, "kernel": "shepp-logan"}


class _Slices:
    """A CT channel as a stack of square axial slices, and the way back.

    ``slices`` is (B, S, S) HU, padded with air; ``pixel_mm`` is the in-plane pixel size.
    ``geometry`` is the reconstruction geometry (``recon`` <= S pixels of ``recon_pixel_mm``).
    """

    def __init__(self, channel: torch.Tensor, spacing: tuple[float, ...], slice_axis: int | None,
                 recon_size: int, views: int | None, thickness_mm: float | None = None) -> None:
        ndim = channel.ndim
        if ndim == 2:
            axis = None
            stack = channel.unsqueeze(0)
            in_plane = spacing
        else:
            axis = slice_axis if slice_axis is not None else max(range(3), key=lambda a: (spacing[a], -a))
            stack = channel.movedim(axis, 0)
            in_plane = tuple(s for a, s in enumerate(spacing) if a != axis)
        self.axis = axis
        # a 2D slice's thickness comes from the caller (the axis prepare_image removed, see
        # slice_thickness_2d); it only scales the photon count
        self.thickness_mm = (float(spacing[axis]) if axis is not None else
                             ASSUMED_2D_THICKNESS_MM if thickness_mm is None else float(thickness_mm))
        self.height, self.width = stack.shape[1], stack.shape[2]
        self.size = max(self.height, self.width)
        self.top = (self.size - self.height) // 2
        self.left = (self.size - self.width) // 2
        padded = stack.new_full((stack.shape[0], self.size, self.size), -1000.0)
        padded[:, self.top:self.top + self.height, self.left:self.left + self.width] = stack
        self.slices = padded
        self.pixel_mm = math.sqrt(in_plane[0] * in_plane[1])
        self.recon = min(self.size, recon_size)
        self.recon_pixel_mm = self.pixel_mm * self.size / self.recon
        self.geometry = _radon.Geometry.for_size(self.recon, views)

    def body_line_integrals(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Physical line integrals (dimensionless) of the slices ``index`` (all if None) in the
        reconstruction geometry, projected on a grid of at most 128^2 pixels and interpolated."""
        slices = self.slices if index is None else self.slices[index]
        coarse = min(self.size, _PROJECTION_GRID)
        mu = hu_to_mu(slices)
        if coarse < self.size:
            mu = F.interpolate(mu.unsqueeze(1), size=(coarse, coarse), mode="area").squeeze(1)
        coarse_geometry = _radon.Geometry.for_size(coarse)
        coarse_pixel_mm = self.pixel_mm * self.size / coarse
        sinogram = _radon.radon(mu, coarse_geometry) * coarse_pixel_mm
        # Resample (views, detectors) onto the reconstruction geometry: same angles in [0, pi), and
        # detector positions in mm.
        target = self.geometry
        view_position = torch.arange(target.views, dtype=torch.float64) * (coarse_geometry.views / target.views)
        detector_mm = (torch.arange(target.detectors, dtype=torch.float64) - (target.detectors - 1) / 2) \
            * self.recon_pixel_mm
        detector_position = detector_mm / coarse_pixel_mm + (coarse_geometry.detectors - 1) / 2
        outside = (detector_position < 0) | (detector_position > coarse_geometry.detectors - 1)
        by_view = linear_interpolation_matrix(coarse_geometry.views, view_position).to(sinogram)
        by_detector = linear_interpolation_matrix(coarse_geometry.detectors, detector_position)
        by_detector[outside] = 0.0  # beyond the coarse detector: air
        return by_view @ sinogram @ by_detector.T.to(sinogram)

    def photons_per_ray(self, photons: float) -> float:
        """Incident photons per ray and view in this geometry for a flux of ``photons`` per mm^2 of
        detector (at the isocentre) per view of a 1000-view rotation: the same photons per rotation
        spread over our views and collected by bins of ``recon_pixel_mm`` x slice thickness. So the
        reconstructed noise does not depend on how many views we simulate, and it scales with pixel
        size and slice thickness as on a scanner (variance ~ 1 / (pixel^3 x thickness))."""
        return photons * (1000.0 / self.geometry.views) * self.recon_pixel_mm * self.thickness_mm

    def reconstruct_hu(self, delta_line_integrals: torch.Tensor, kernel: str) -> torch.Tensor:
        """FBP of a physical line-integral difference (B, views, detectors) -> HU difference (B, S, S)."""
        # Line integral = pixel_mm * sum(mu), so sum-of-mu units are line integral / pixel_mm.
        mu = _radon.fbp(delta_line_integrals / self.recon_pixel_mm, self.geometry, kernel)
        hu = mu * (1000.0 / MU_WATER_PER_MM)
        if self.recon < self.size:
            hu = F.interpolate(hu.unsqueeze(1), size=(self.size, self.size), mode="bilinear",
                               align_corners=False).squeeze(1)
        return hu

    def restore(self, slices: torch.Tensor) -> torch.Tensor:
        """Crop (B, S, S) back to the channel's shape and axis order."""
        stack = slices[:, self.top:self.top + self.height, self.left:self.left + self.width]
        if self.axis is None:
            return stack[0]
        return stack.movedim(0, self.axis)

    def recon_coordinates_mm(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x (columns) and y (up) of the padded slice's pixel centres in mm from the rotation centre."""
        centre = (torch.arange(self.size, dtype=torch.float64) - (self.size - 1) / 2) * self.pixel_mm
        return centre.view(1, -1), -centre.view(-1, 1)


def slice_thickness_2d(removed_mm: float, in_plane: tuple[float, ...]) -> float:
    """The thickness (mm) of a slice given in nnU-Net's 2D layout ``(C, 1, X, Y)`` whose singleton axis
    has spacing ``removed_mm``: that spacing when it is real (a one-slice volume: a CT slice stored with
    its thickness), 1 mm when it is nnU-Net's dummy for a true 2D image (999, or 999 x the largest in-plane
    spacing; anything from 999 x min(1 mm, largest in-plane spacing) on counts as the dummy)."""
    dummy_from = 0.999 * _NNUNET_2D_DUMMY_SPACING * min(1.0, max(in_plane))  # 0.999: float round-off
    return ASSUMED_2D_THICKNESS_MM if removed_mm >= dummy_from else float(removed_mm)


def _added_log_variance(line_integrals: torch.Tensor, photons: float, dose_fraction: float,
                        electronic: float) -> torch.Tensor:
    """Variance to add to the log signal so a full-dose measurement looks like ``dose_fraction`` of it.

    With ``N = I0 exp(-p)`` expected counts and electronic noise ``sigma_e`` (counts), the log signal
    has variance ``(N + sigma_e^2) / N^2`` (delta method). At dose ``a`` the counts are ``a N``, so the
    difference is ``(1/a - 1) / N + sigma_e^2 (1/a^2 - 1) / N^2`` (Zeng et al. 2015, eq. 8).
    """
    counts = photons * torch.exp(-line_integrals)
    inverse = 1.0 / dose_fraction
    return (inverse - 1.0) / counts + electronic**2 * (inverse**2 - 1.0) / counts**2


class _CTCorruption(Corruption):
    group = "ct"
    #: Intensities are read as HU: the family is not equivariant under a * x + b (documented for tests).
    intensity_scale = "hu"
    options = _COMMON_OPTIONS

    def validate(self) -> None:
        _check_common(self)

    def _slice_axis(self, spacing: tuple[float, ...]) -> int | None:
        axis = self.settings["slice_axis"]
        if axis is not None and axis >= len(spacing):
            raise ValueError(f"{self.family}: slice_axis {axis} does not exist in an image with {len(spacing)} "
                             f"spatial axes")
        return axis

    def _stacks(self, image: torch.Tensor, spacing: tuple[float, ...], params: Mapping[str, Any]) -> list[_Slices]:
        return [_Slices(image[c], spacing, params["slice_axis"], self.settings["recon_size"], self.settings["views"],
                        params.get("thickness_mm"))
                for c in range(image.shape[0])]


@register
class CTLowDose(_CTCorruption):
    """Low-dose CT noise, inserted in the projection domain (the standard approach of Yu et al.,
    "Development and validation of a practical lower-dose-simulation tool for optimizing computed
    tomography scan protocols", Med. Phys. 39(5), 2012, https://doi.org/10.1118/1.3700173, and Zeng
    et al., "A simple low-dose x-ray CT simulation from high-dose scan", IEEE TNS 62(5), 2015,
    https://doi.org/10.1109/TNS.2015.2467219).

    Each slice is forward-projected, the expected photon counts ``N = I0 exp(-p)`` follow from the
    incident flux ``photons`` (full-dose photons per mm^2 of detector at the isocentre per view of a
    1000-view rotation, spread over our views and detector bins; default 1e6, which gives ~16 HU of
    full-dose noise in a 30 cm water phantom at 0.7 mm pixels and 2.5 mm slices), and the sinogram receives
    zero-mean noise with the variance that turns full-dose statistics (Poisson counts plus electronic
    noise of ``electronic_noise`` counts) into those of ``dose_fraction`` of the dose; its FBP is
    added to the image. The Poisson and electronic noise are drawn in their Gaussian (delta-method)
    form, as Yu et al. do: one standard normal field per seed that every dose level scales (common
    random numbers), so a lower dose is always noisier. Starved rays (counts near zero) are capped at a
    log-signal std of 1. The added noise std is ``sqrt(1/a - 1)`` times the full-dose noise, so the
    total noise grows as ``1/sqrt(a)``; it is larger behind dense, long paths (shoulders, pelvis),
    where CT noise is anisotropic and streaky.

    Reference-noise assumption: the dose fractions are relative to a clean scan whose own noise is
    the full-dose noise of ``photons`` (about 16 HU in a 30 cm water phantom, above). The input's own
    noise is not measured: on a scan that is already noisier (a low-dose protocol, thin slices), level
    k adds the stated HU but the result is a lower dose fraction of the *true* dose than stated; on a
    smoother scan (iterative reconstruction, thick slices) a higher one. Set ``photons`` to match the
    scanner when it is known.

    Slice thickness: the photons a detector bin collects grow with the slice thickness, so at the same
    dose the added noise std goes as ``1/sqrt(thickness_mm)``. A 3D volume uses its through-plane
    spacing. An image in nnU-Net's 2D layout ``(C, 1, X, Y)`` uses the spacing of its singleton axis
    where that is real (a one-slice volume that kept its slice thickness); nnU-Net's dummy 999 of a true 2D
    image (a PNG, a 2D NIfTI) says nothing, and 1 mm is assumed then (``thickness_mm`` in the
    parameters): on a true 2D slice that was really 5 mm thick, the added noise is sqrt(5) = 2.2 times
    what a 5 mm slice would get. A bare ``(C, X, Y)`` array is treated the same way, as 1 mm.

    Normalisation: not cancelled by CT or ZScore normalisation (additive noise).
    """

    family = "ct_low_dose"
    summary = "low-dose CT: Poisson + electronic noise added in the sinogram at a dose fraction, FBP (Yu 2012)"
    table = SeverityTable(
        identity={"dose_fraction": 1.0},
        levels=tuple({"dose_fraction": v} for v in (1 / 2, 1 / 4, 1 / 6, 1 / 10, 1 / 16)),
        meanings=(
            "half dose: noise std x1.4, the usual dose-reduction study setting",
            "quarter dose: noise x2, the LDCT grand challenge's low-dose level",
            "1/6 dose: noise x2.4, grainy soft tissue",
            "1/10 dose: noise x3.2, low-contrast lesions fade, streaks behind dense paths",
            "1/16 dose: noise x4, ultra-low dose, photon starvation streaks",
        ),
    )
    options = {**_COMMON_OPTIONS, "photons": 1.0e6, "electronic_noise": 10.0}

    def validate(self) -> None:
        super().validate()
        dose = self.values["dose_fraction"]
        self._require(0 < dose <= 1, f"dose_fraction must be in (0, 1], got {dose}")
        photons = self.settings["photons"]
        self._require(isinstance(photons, (int, float)) and not isinstance(photons, bool) and photons > 0,
                      f"photons must be a positive number, got {photons!r}")
        electronic = self.settings["electronic_noise"]
        self._require(isinstance(electronic, (int, float)) and not isinstance(electronic, bool) and electronic >= 0,
                      f"electronic_noise must be a number >= 0 (counts), got {electronic!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        params = {"dose_fraction": self.values["dose_fraction"], "photons": float(self.settings["photons"]),
                  "electronic_noise": float(self.settings["electronic_noise"]),
                  "slice_axis": self._slice_axis(spacing), "noise_seed": draw_seed(generator)}
        if len(spacing) == 2:  # one slice: its thickness is not in the spacing (with_removed_axis may know it)
            params["thickness_mm"] = ASSUMED_2D_THICKNESS_MM
        return params

    def with_removed_axis(self, params: Params, removed_mm: float, spacing: tuple[float, ...]) -> Params:
        # the photon count per detector bin, and so the noise, depends on the slice thickness
        return {**params, "thickness_mm": slice_thickness_2d(removed_mm, spacing)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        dose = float(params["dose_fraction"])
        if dose >= 1.0:
            return image.clone()
        generator = field_generator(params["noise_seed"], image.device)
        channels = []
        for stack in self._stacks(image, spacing, params):
            integrals = stack.body_line_integrals()
            variance = _added_log_variance(integrals, stack.photons_per_ray(params["photons"]), dose,
                                           params["electronic_noise"])
            std = variance.sqrt().clamp(max=_MAX_LOG_STD)
            noise = torch.randn(integrals.shape, generator=generator, device=image.device, dtype=image.dtype)
            channels.append(stack.restore(stack.slices + stack.reconstruct_hu(noise * std, self.settings["kernel"])))
        return torch.stack(channels)


@register
class CTMetal(_CTCorruption):
    """Metal streak artefacts from a small high-attenuation insert (a clip, screw, dental filling or
    prosthesis), simulated as in De Man et al., "Metal streak artifacts in X-ray computed tomography:
    a simulation study", IEEE TNS 46(3), 1999, https://doi.org/10.1109/23.775600, and in the metal-
    insertion data of Zhang & Yu, "Convolutional neural network based metal artifact reduction in
    X-ray computed tomography", IEEE TMI 37(6), 2018, https://doi.org/10.1109/TMI.2018.2823083.

    A cylinder of radius 2-5 mm (a disk in 2D; in 3D it spans a random 20-60% of the slices) is placed
    at a random point inside the body (HU > -300) and painted into the image at ``metal_hu`` (as on
    scanners' extended HU scale; clip it yourself to emulate a 12-bit scale). ``metal_hu`` is the insert's
    true attenuation, not what it reads: the beam hardening of its own rays (below) is reconstructed
    inside it too, so the insert reads 30-60 % of ``metal_hu`` (measured on a 30 cm water cylinder,
    levels 1-5), as scanners under-read metal. Its rays carry two errors
    that FBP turns into streaks along lines through the insert: beam hardening, the polychromatic line
    integral falling short of the monochromatic one, ``-beam_hardening * p_metal * (p_metal + p_body)``
    (the metal's quadratic term and the cross term of a two-material polynomial: the hardened beam is
    attenuated less by the tissue behind the metal), which gives dark streaks along the longest body
    paths through the insert; and photon starvation, the extra Poisson noise of the few photons that
    pass (variance ``exp(p)/I0`` with the metal minus without it), which gives bright/dark streaks.
    Severity raises the insert's attenuation (dense bone to steel); its position, size and noise are
    drawn once per seed.

    Normalisation: not cancelled; CT normalisation clips the brightest streaks and the insert to the
    training foreground's 99.5th percentile, ZScore does not.
    """

    family = "ct_metal"
    summary = "metal insert with beam-hardening and photon-starvation streaks, reconstructed by FBP (De Man 1999)"
    table = SeverityTable(
        identity={"metal_hu": 0.0},
        levels=tuple({"metal_hu": v} for v in (2000.0, 4000.0, 7000.0, 12000.0, 20000.0)),
        meanings=(
            "2000 HU insert (dense cortical bone, ceramic): faint dark bands next to it",
            "4000 HU (amalgam-like mix, thin titanium): visible streaks",
            "7000 HU (titanium screw): clear dark/bright streaks through the insert",
            "12000 HU (cobalt-chrome): strong streaks across the slice",
            "20000 HU (stainless steel): severe, photon-starved streaks dominate the slice",
        ),
    )
    options = {**_COMMON_OPTIONS, "photons": 1.0e6, "beam_hardening": 0.08}

    def validate(self) -> None:
        super().validate()
        self._require(self.values["metal_hu"] >= 0, f"metal_hu must be >= 0, got {self.values['metal_hu']}")
        hardening = self.settings["beam_hardening"]
        self._require(isinstance(hardening, (int, float)) and not isinstance(hardening, bool) and hardening >= 0,
                      f"beam_hardening must be a number >= 0, got {hardening!r}")
        photons = self.settings["photons"]
        self._require(isinstance(photons, (int, float)) and not isinstance(photons, bool) and photons > 0,
                      f"photons must be a positive number, got {photons!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        slice_axis = self._slice_axis(spacing)
        # Fixed number of draws, in a fixed order, whatever the severity (shared across severities).
        where, radius, slab_start, slab_length = uniform(generator, 4, low=0.0, high=1.0).tolist()
        noise_seed = draw_seed(generator)
        stack = _Slices(image[0], spacing, slice_axis, self.settings["recon_size"], self.settings["views"])
        count = stack.slices.shape[0]
        length = max(1, round(count * (0.2 + 0.4 * slab_length)))
        first = min(count - length, int(slab_start * (count - length + 1)))
        middle = first + length // 2
        body = torch.nonzero(stack.slices[middle] > -300.0)
        if body.shape[0] == 0:  # no tissue: the centre
            row = col = (stack.size - 1) / 2
        else:
            row, col = (float(v) for v in body[min(body.shape[0] - 1, int(where * body.shape[0]))])
        centre = (stack.size - 1) / 2
        return {"metal_hu": self.values["metal_hu"], "photons": float(self.settings["photons"]),
                "beam_hardening": float(self.settings["beam_hardening"]), "slice_axis": slice_axis,
                "x_mm": (col - centre) * stack.pixel_mm, "y_mm": (centre - row) * stack.pixel_mm,
                "radius_mm": 2.0 + 3.0 * radius, "slices": [first, first + length], "noise_seed": noise_seed}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        metal_hu = float(params["metal_hu"])
        if metal_hu <= 0:
            return image.clone()
        first, stop = params["slices"]
        radius, x0, y0 = float(params["radius_mm"]), float(params["x_mm"]), float(params["y_mm"])
        generator = field_generator(params["noise_seed"], image.device)
        channels = []
        for stack in self._stacks(image, spacing, params):
            index = torch.arange(first, min(stop, stack.slices.shape[0]), device=image.device)
            geometry = stack.geometry
            theta = geometry.theta.view(-1, 1)
            t_mm = ((torch.arange(geometry.detectors, dtype=torch.float64) - (geometry.detectors - 1) / 2)
                    * stack.recon_pixel_mm).view(1, -1)
            offset = t_mm - (x0 * torch.cos(theta) + y0 * torch.sin(theta))
            chord_mm = 2.0 * (radius**2 - offset**2).clamp(min=0.0).sqrt()
            metal_integrals = (float(hu_to_mu(torch.tensor(metal_hu))) * chord_mm).to(device=image.device,
                                                                                    dtype=image.dtype)
            body = stack.body_line_integrals(index)
            photons = stack.photons_per_ray(params["photons"])
            starvation = (torch.exp(body + metal_integrals) - torch.exp(body)) / photons
            std = starvation.sqrt().clamp(max=_MAX_LOG_STD)
            noise = torch.randn(body.shape, generator=generator, device=image.device, dtype=image.dtype)
            # Beam hardening: the metal's own line integral falls short (quadratic term), and the beam
            # it hardens is attenuated less by the tissue behind it (cross term). The cross term
            # varies with the body path, so it is inconsistent between views: streaks.
            error = noise * std - params["beam_hardening"] * metal_integrals * (metal_integrals + body)
            streaks = stack.reconstruct_hu(error, self.settings["kernel"])
            # The insert itself, with a one-pixel soft edge (partial volume).
            x, y = stack.recon_coordinates_mm()
            distance = ((x - x0) ** 2 + (y - y0) ** 2).sqrt()
            coverage = ((radius - distance) / stack.pixel_mm + 0.5).clamp(0.0, 1.0).to(device=image.device,
                                                                                      dtype=image.dtype)
            slices = stack.slices.clone()
            inserted = slices[index]
            inserted = inserted + coverage * (metal_hu - inserted).clamp(min=0.0) + streaks
            slices[index] = inserted
            channels.append(stack.restore(slices))
        return torch.stack(channels)


@register
class CTBeamHardening(_CTCorruption):
    """Beam hardening (cupping): a polychromatic X-ray beam loses its soft photons first, so the
    measured line integral grows more slowly than the path length, ``p_poly = p - beam_hardening * p^2``
    (the quadratic term of the polynomial model of Herman, "Correction for beam hardening in computed
    tomography", Phys. Med. Biol. 24(1), 1979, https://doi.org/10.1088/0031-9155/24/1/008; physics in
    Brooks & Di Chiro, Phys. Med. Biol. 21(3), 1976, https://doi.org/10.1088/0031-9155/21/3/004).
    Reconstructed, this lowers the centre of a uniform object relative to its rim (cupping) and draws
    dark bands between dense structures (bones). The whole object reads lower too: in a 30 cm water
    cylinder the rim falls by about 0.8 times the cupping depth (the levels' meanings give both).
    Scanners correct the water part; the levels model residual or uncorrected hardening.
    Deterministic (no random parameters). The error is smooth, so it is reconstructed on at most 128^2
    pixels and upsampled.

    Normalisation: not cancelled: both CT and ZScore normalisation are global, cupping is spatially
    varying.
    """

    family = "ct_cupping"
    summary = "beam hardening: quadratic loss of line integrals, reconstructed as cupping and dark bands"
    table = SeverityTable(
        identity={"beam_hardening": 0.0},
        levels=tuple({"beam_hardening": v} for v in (0.002, 0.005, 0.01, 0.02, 0.035)),
        meanings=(  # measured on a 30 cm water cylinder (tests/corruptions/test_ct.py)
            "residual hardening: a 30 cm water cylinder's centre ~8 HU below its rim (centre at ~-15 HU)",
            "~20 HU cupping (centre ~-37 HU): visible with a narrow window",
            "~41 HU cupping (centre ~-74 HU), dark bands between bones: uncorrected soft-tissue scan",
            "~81 HU cupping (centre ~-147 HU): liver/spleen contrast shifts with position",
            "~142 HU cupping (centre ~-258 HU): severe, the centre of the abdomen reads darker than fat",
        ),
    )

    def validate(self) -> None:
        super().validate()
        value = self.values["beam_hardening"]
        self._require(value >= 0, f"beam_hardening must be >= 0, got {value}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        return {"beam_hardening": self.values["beam_hardening"], "slice_axis": self._slice_axis(spacing)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        hardening = float(params["beam_hardening"])
        if hardening <= 0:
            return image.clone()
        channels = []
        for channel in range(image.shape[0]):
            stack = _Slices(image[channel], spacing, params["slice_axis"], min(self.settings["recon_size"],
                            _PROJECTION_GRID), self.settings["views"])
            integrals = stack.body_line_integrals()
            cupping = stack.reconstruct_hu(-hardening * integrals**2, self.settings["kernel"])
            channels.append(stack.restore(stack.slices + cupping))
        return torch.stack(channels)


@register
class CTRings(_CTCorruption):
    """Ring artefacts from miscalibrated detector channels: a channel whose gain is off by a factor
    ``1 + g`` adds ``-log(1 + g)`` to every line integral it measures, at every angle, whatever the
    object. Back-projected, a constant offset of one detector bin is a ring centred on the rotation
    centre at that bin's radius (Sijbers & Postnov, "Reduction of ring artefacts in high resolution
    micro-CT reconstructions", Phys. Med. Biol. 49(14), 2004, https://doi.org/10.1088/0031-9155/49/14/N06).

    The gains are one draw per seed: every channel gets a small Gaussian error and 3% of them are
    faulty with about 3x larger errors; as in a 360-degree scan, a channel's error shows at both
    +t and -t (full rings); severity scales all errors (``gain_error`` is the std of ``g`` of a
    normal channel). Because the sinogram error does not depend on the object, one ring image is
    reconstructed and added to every slice (rings sit at the same place in every slice of a detector
    row). The rotation centre is the centre of the (square-padded) slice.

    Normalisation: not cancelled by CT or ZScore normalisation.
    """

    family = "ct_rings"
    summary = "ring artefacts: per-detector gain errors, concentric rings about the rotation centre"
    table = SeverityTable(
        identity={"gain_error": 0.0},
        levels=tuple({"gain_error": v} for v in (0.0002, 0.0005, 0.001, 0.002, 0.004)),
        meanings=(
            "0.02% gain std (faulty channels 0.08%): faint rings, within calibration tolerance",
            "0.05%: rings visible with a narrow window",
            "0.1%: clear rings, calibration overdue",
            "0.2%: strong rings over soft tissue",
            "0.4%: severe rings, small structures near the centre obscured",
        ),
    )

    def validate(self) -> None:
        super().validate()
        value = self.values["gain_error"]
        self._require(0 <= value < 0.1, f"gain_error must be in [0, 0.1), got {value}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        return {"gain_error": self.values["gain_error"], "slice_axis": self._slice_axis(spacing),
                "ring_seed": draw_seed(generator)}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        error = float(params["gain_error"])
        if error <= 0:
            return image.clone()
        generator = field_generator(params["ring_seed"], image.device)
        channels = []
        rings = None
        for stack in self._stacks(image, spacing, params):
            if rings is None:  # every channel is one reconstruction of the same detector
                geometry = stack.geometry
                draws = torch.randn((2, geometry.detectors), generator=generator, device=image.device,
                                    dtype=torch.float64)
                faulty = torch.rand(geometry.detectors, generator=generator, device=image.device,
                                    dtype=torch.float64) < 0.03
                pattern = draws[0] + 3.0 * faulty * draws[1]
                gains = (1.0 + error * pattern).clamp(min=0.5)
                # A 360-degree scan sees each channel at t and, half a turn later, at -t: rebinned to
                # 180 degrees of parallel views, the offset is the mean of both, so rings are full
                # circles (a 180-degree scan would give half rings).
                offsets = -torch.log(gains)
                offsets = 0.5 * (offsets + offsets.flip(0))
                offsets = offsets.to(image.dtype).view(1, 1, -1).expand(1, geometry.views, -1)
                rings = stack.reconstruct_hu(offsets.contiguous(), self.settings["kernel"])
            channels.append(stack.restore(stack.slices + rings))
        return torch.stack(channels)

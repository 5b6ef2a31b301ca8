"""MRI k-space families: rigid motion, ghosting, spike (herringbone) and Gibbs ringing.

All four are changes of the image's discrete Fourier transform. Where the change depends on only one
k-space axis (motion segments, ghost planes), the transform is taken along that axis alone: the
other axes' transforms cancel, so the result equals TorchIO's full ``fftn`` version at a fraction of
the cost. The spike is a single k-space sample, i.e. a plane wave, and is added in image space.
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
    register,
    uniform,
)
from nnunet_robustness.corruptions._ops import broadcast_along, rigid_resample


def _centred_frequency(size: int, device: torch.device) -> torch.Tensor:
    """For each bin of an unshifted FFT, its index in the ``fftshift``-ed spectrum that TorchIO works
    on (0..size-1, DC at size // 2)."""
    return torch.fft.ifftshift(torch.arange(size, device=device))


@register
class Motion(Corruption):
    """Rigid patient motion during an MR acquisition: k-space is filled line by line along the last
    axis (linear phase-encode order), the patient moves once — a rotation about the image centre (up to
    ``max_degrees`` per axis) and a translation (up to ``max_translation_mm`` per axis, in mm), drawn
    uniformly — and every line acquired after the movement comes from the moved anatomy. The severity
    is the share of k-space acquired after the movement, ``moved_fraction`` (0.05 .. 0.45: the patient
    moved near the end of the scan .. half-way through); the k-space centre always comes from the
    reference position.

    Why the share and not the size of the movement is graded: severities of a case share one draw
    (``item_seed``), and the change grows with the share by construction — the lines from the moved
    position only grow as the share grows, so the image-space change (Parseval, with the real-image
    symmetrisation below) can only grow. Grading the displacement instead saturates and oscillates:
    a shift d changes a frequency k by ``|2 sin(k d / 2)|``, so a larger movement can change a
    textured image *less* (measured: non-monotone above ~2 mm on 9 of 12 cases).

    Shaw et al., "MRI k-space motion artefact augmentation: model robustness and task-specific
    uncertainty", MIDL 2019, http://proceedings.mlr.press/v102/shaw19a.html; the mixing is TorchIO's
    ``Motion`` algorithm (``apply`` takes TorchIO's movements and times, several movements included).
    Deliberate difference: TorchIO converts each Euler transform to a matrix and loses its centre, so it
    rotates about the world origin (which may lie outside the image); here rotations are about the image
    centre. The parity test places the origin at the centre, where both agree.
    """

    family = "motion"
    group = "kspace"
    summary = "rigid MR motion: k-space lines after a movement from the moved anatomy (Shaw et al. 2019)"
    table = SeverityTable(
        identity={"moved_fraction": 0.0},
        levels=tuple({"moved_fraction": f} for f in (0.05, 0.1, 0.2, 0.3, 0.45)),
        meanings=(
            "the patient moved for the last 5% of the scan: faint edge ringing along the phase-encode axis",
            "moved for the last 10%: visible ringing",
            "moved for the last 20%: clear motion ghosts, a typical restless patient",
            "moved for the last 30%: strong ghosting and blurring, a repeat scan would be ordered",
            "moved half-way through (45%): severe, anatomy smeared and doubled",
        ),
    )
    options = {"max_degrees": 3.0, "max_translation_mm": 3.0}

    def validate(self) -> None:
        fraction = self.values["moved_fraction"]
        self._require(0 <= fraction < 0.5, f"moved_fraction must be in [0, 0.5) (the k-space centre stays), got "
                                           f"{fraction}")
        for key in ("max_degrees", "max_translation_mm"):
            value = self.settings[key]
            self._require(isinstance(value, (int, float)) and value >= 0, f"{key} must be >= 0, got {value!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        ndim = image.ndim - 1
        num_angles = 1 if ndim == 2 else 3  # 2D: in-plane rotation only
        # the movement is drawn the same at every severity; only when it happens depends on the severity
        degrees = uniform(generator, 1, num_angles) * self.settings["max_degrees"]
        translation = uniform(generator, 1, ndim) * self.settings["max_translation_mm"]
        return {"degrees": degrees.tolist(), "translation_mm": translation.tolist(),
                "times": [1.0 - self.values["moved_fraction"]],
                "fill": [float(v) for v in image.reshape(image.shape[0], -1).amin(1)]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        fill = channel_view(params["fill"], image)
        positions = [image] + [rigid_resample(image, spacing, degrees, translation, fill)
                               for degrees, translation in zip(params["degrees"], params["translation_mm"])]
        times = torch.tensor(params["times"], dtype=torch.float64)
        # The segment holding the k-space centre comes from the reference (unmoved) image.
        after_centre = torch.nonzero(times > 0.5)
        centre_segment = int(after_centre.min()) if after_centre.numel() else len(positions) - 1
        order = list(range(len(positions)))
        order[0], order[centre_segment] = order[centre_segment], order[0]

        dim = image.ndim - 1
        size = image.shape[dim]
        bounds = [0] + [int(size * t) for t in params["times"]] + [size]
        shifted_index = _centred_frequency(size, image.device)
        mirrored = torch.remainder(-torch.arange(size, device=image.device), size)
        half = size // 2 + 1
        spectrum = None
        for segment, source in enumerate(order):
            in_segment = ((shifted_index >= bounds[segment]) & (shifted_index < bounds[segment + 1])).float()
            if not bool(in_segment.any()):
                continue
            # Only the real part of the mixed image is kept, and for a real image that equals using
            # the mask's even part, (m(k) + m(-k)) / 2, so half-spectrum (r)FFTs suffice.
            even_mask = ((in_segment + in_segment[mirrored]) / 2)[:half]
            term = torch.fft.rfft(positions[source], dim=dim) * broadcast_along(even_mask, dim, image.ndim)
            spectrum = term if spectrum is None else spectrum.add_(term)
        return torch.fft.irfft(spectrum, n=size, dim=dim).contiguous()


@register
class Ghosting(Corruption):
    """Discrete ghosts along the phase-encode axis from periodic motion (breathing, cardiac or vessel
    pulsation): every ``num_ghosts``-th k-space plane along the axis is scaled by ``1 - intensity``
    (the central plane is kept), which superimposes shifted replicas of the anatomy at multiples of
    FOV / ``num_ghosts``.

    Mechanism: http://mriquestions.com/why-discrete-ghosts.html; same algorithm as TorchIO's
    ``Ghosting``. ``num_ghosts`` (2..8) and the axis are drawn; ``intensity`` is graded.

    Reference: Zaitsev, Maclaren & Herbst, "Motion artifacts in MRI: a complex problem with many partial
    solutions", J. Magn. Reson. Imaging 42:887, 2015.
    """

    family = "ghosting"
    group = "kspace"
    summary = "periodic phase-encode ghosts (breathing/pulsation): replicas at FOV/n"
    table = SeverityTable(
        identity={"intensity": 0.0},
        levels=tuple({"intensity": v} for v in (0.15, 0.3, 0.45, 0.6, 0.8)),
        meanings=(
            "15% of the modulated planes' signal: faint ghosts in the background",
            "30%: ghosts visible over tissue",
            "45%: ghosts compete with low-contrast anatomy",
            "60%: strong ghosts",
            "80%: ghosts nearly as bright as the anatomy",
        ),
    )
    options = {"restore": None, "axis": None}

    def validate(self) -> None:
        intensity = self.values["intensity"]
        self._require(0 <= intensity <= 1, f"intensity must be in [0, 1], got {intensity}")
        restore = self.settings["restore"]
        self._require(restore is None or (isinstance(restore, (int, float)) and 0 <= restore <= 1),
                      f"restore must be None or in [0, 1], got {restore!r}")
        axis = self.settings["axis"]
        self._require(axis is None or (isinstance(axis, int) and not isinstance(axis, bool) and axis >= 0),
                      f"axis must be None or a spatial axis index >= 0, got {axis!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        ndim = image.ndim - 1
        num_ghosts = int(torch.randint(2, 9, (1,), generator=generator))
        drawn_axis = int(torch.randint(0, ndim, (1,), generator=generator))
        axis = drawn_axis if self.settings["axis"] is None else self.settings["axis"]
        if axis >= ndim:
            raise ValueError(f"{self.family}: axis {axis} does not exist in an image with {ndim} spatial axes")
        return {"num_ghosts": num_ghosts, "axis": axis, "intensity": self.values["intensity"],
                "restore": self.settings["restore"]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        intensity = float(params["intensity"])
        if intensity == 0:
            return image.clone()
        dim = int(params["axis"]) + 1
        size = image.shape[dim]
        shifted_index = _centred_frequency(size, image.device)
        gain = torch.where(shifted_index % int(params["num_ghosts"]) == 0, 1.0 - intensity, 1.0)
        middle = size // 2
        restore = params["restore"]
        if restore is None:
            kept = shifted_index == middle
        else:
            half = int(round(restore * size)) // 2
            kept = (shifted_index >= middle - half) & (shifted_index < middle + half)
        gain = torch.where(kept, 1.0, gain).to(torch.complex64)
        spectrum = torch.fft.fft(image, dim=dim) * broadcast_along(gain, dim, image.ndim)
        return torch.fft.ifft(spectrum, dim=dim).real.contiguous()


@register
class Spike(Corruption):
    """Herringbone (spike, corduroy) artefact: one corrupted k-space sample from an electrostatic
    discharge or RF interference adds a plane-wave stripe pattern over the whole image.

    https://radiopaedia.org/articles/herringbone-artifact; same model as TorchIO's ``Spike``
    (a real spike at a uniformly drawn k-space position, real part of the inverse transform).
    Deliberate difference: the stripe amplitude is ``amplitude_fraction`` of the robust range instead
    of a multiple of the spectrum maximum (the DC term, which for CT depends on how much air is in
    the field of view and can be near zero). A spike at frequency ``f`` adds
    ``amplitude * cos(2 pi sum_d f_d n_d / N_d)``, which is computed directly in image space.

    Reference: Heiland, "From A as in aliasing to Z as in zipper: artifacts in MRI", Clin. Neuroradiol.
    18:25, 2008 (spike / herringbone artefact).
    """

    family = "spike"
    group = "kspace"
    summary = "herringbone stripes from a k-space spike (RF interference)"
    table = SeverityTable(
        identity={"amplitude_fraction": 0.0},
        levels=tuple({"amplitude_fraction": v} for v in (0.02, 0.04, 0.07, 0.1, 0.15)),
        meanings=(
            "stripes at 2% of the robust range: just visible in flat regions",
            "4%: visible over tissue",
            "7%: obvious herringbone pattern",
            "10%: stripes comparable to soft-tissue contrast",
            "15%: severe, stripes dominate low-contrast anatomy",
        ),
    )
    options = {"num_spikes": 1}

    def validate(self) -> None:
        self._require(self.values["amplitude_fraction"] >= 0,
                      f"amplitude_fraction must be >= 0, got {self.values['amplitude_fraction']}")
        spikes = self.settings["num_spikes"]
        self._require(isinstance(spikes, int) and not isinstance(spikes, bool) and spikes >= 1,
                      f"num_spikes must be an int >= 1, got {spikes!r}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        shape = image.shape[1:]
        positions = uniform(generator, self.settings["num_spikes"], len(shape), low=0.0, high=1.0)
        # Frequency (cycles per field of view) of the k-space sample the position falls on.
        frequencies = [[math.floor(p * n) - n // 2 for p, n in zip(row, shape)] for row in positions.tolist()]
        span = intensity_reference(image).span
        return {"frequencies": frequencies, "amplitude": [self.values["amplitude_fraction"] * s for s in span]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        ndim = image.ndim - 1
        stripes = torch.zeros(image.shape[1:], dtype=torch.float64, device=image.device)
        for frequency in params["frequencies"]:
            phase = torch.zeros((), dtype=torch.float64, device=image.device)
            for axis, (f, n) in enumerate(zip(frequency, image.shape[1:])):
                # float64 phase: exact periodicity even for high frequencies on large grids
                phase = phase + broadcast_along(torch.arange(n, dtype=torch.float64, device=image.device)
                                                * (2 * math.pi * f / n), axis, ndim)
            stripes += torch.cos(phase)
        return image + channel_view(params["amplitude"], image) * stripes.to(image.dtype)


@register
class GibbsRinging(Corruption):
    """Gibbs ringing / truncation artefact: only the central ``kept_fraction`` of k-space along each
    axis is acquired (a smaller acquisition matrix, zero-filled to the original grid), which blurs
    the image and adds oscillations parallel to sharp edges.

    https://mriquestions.com/gibbs-artifact.html; Gibbs phenomenon of the truncated Fourier series.
    TorchIO has no truncation transform.

    Reference: Kellner et al., "Gibbs-ringing artifact removal based on local subvoxel-shifts", Magn. Reson.
    Med. 76:1574, 2016.
    """

    family = "gibbs_ringing"
    group = "kspace"
    summary = "k-space truncation (reduced acquisition matrix): ringing parallel to edges"
    table = SeverityTable(
        identity={"kept_fraction": 1.0},
        # Graded by the change of a smooth image (a blurred disc, relative to its contrast): ~2%, 5%, 8%,
        # 13%, 22%. Keeping 65-80% of k-space changes such an image by under 0.6%, which no level should.
        levels=tuple({"kept_fraction": v} for v in (0.45, 0.35, 0.27, 0.2, 0.13)),
        meanings=(
            "45% of k-space per axis: visible ringing next to bright boundaries",
            "35%: clear ringing and softening",
            "27%: strong ringing, small structures blurred",
            "20%: severe truncation, thin structures duplicated",
            "13%: edges ring over several voxels, fine anatomy lost",
        ),
    )

    def validate(self) -> None:
        kept = self.values["kept_fraction"]
        self._require(0 < kept <= 1, f"kept_fraction must be in (0, 1], got {kept}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        return {"kept_fraction": self.values["kept_fraction"]}

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        kept = float(params["kept_fraction"])
        if kept >= 1:
            return image.clone()
        dims = tuple(range(1, image.ndim))
        spectrum = torch.fft.fftn(image, dim=dims)
        for dim in dims:
            size = image.shape[dim]
            frequency = torch.fft.fftfreq(size, d=1.0 / size, device=image.device).abs()
            keep = frequency <= kept * size / 2
            spectrum = spectrum * broadcast_along(keep, dim, image.ndim)
        return torch.fft.ifftn(spectrum, dim=dims).real.contiguous()

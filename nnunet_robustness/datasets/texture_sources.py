"""Texture sources for the synthetic texture datasets: photographs bundled with scikit-image and
procedural random fields generated from a seed (2D and 3D).

Every source returns a float64 array of the requested shape whose 1st and 99th percentiles are
mapped to 0 and 1 (values clipped to [0, 1]), so that all textures share one grey-value range and
the blend level alpha, not a brightness offset, decides how alike foreground and background look.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from nnunet_robustness.errors import UserInputError

TextureSampler = Callable[[tuple[int, ...], np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class TextureSource:
    name: str
    dimensions: tuple[int, ...]
    description: str
    sample_raw: TextureSampler

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """A fresh texture patch of ``shape``, rescaled so its 1st/99th percentiles are 0/1."""
        if len(shape) not in self.dimensions:
            raise UserInputError(_not_available_message(self.name, len(shape)))
        return _rescale_to_unit_range(self.sample_raw(shape, rng))


def _rescale_to_unit_range(texture: np.ndarray) -> np.ndarray:
    low, high = np.percentile(texture, [1.0, 99.0])
    if high <= low:  # a constant patch carries no texture; keep it flat rather than divide by 0
        return np.full(texture.shape, 0.5)
    return np.clip((texture - low) / (high - low), 0.0, 1.0)


# --- photographs -----------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _photograph(name: str) -> np.ndarray:
    import skimage.data  # imported lazily: it is slow and only the photo textures need it

    photo = getattr(skimage.data, name)()
    photo.setflags(write=False)
    return photo


def _photograph_sampler(name: str) -> TextureSampler:
    def sample(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        photo = _photograph(name).astype(np.float64)
        # A random dihedral transform (rotation by k*90 degrees, optional flip) and a random crop
        # give every case its own patch of the one photograph.
        photo = np.rot90(photo, k=int(rng.integers(4)))
        if rng.integers(2):
            photo = photo[:, ::-1]
        # Images larger than the photograph get a mirrored tiling of it (no seam jumps in grey value).
        pad = [(0, max(0, size - have)) for size, have in zip(shape, photo.shape)]
        if any(after for _, after in pad):
            photo = np.pad(photo, pad, mode="symmetric")
        offsets = [int(rng.integers(have - size + 1)) for size, have in zip(shape, photo.shape)]
        return photo[tuple(slice(o, o + s) for o, s in zip(offsets, shape))]

    return sample


# --- procedural random fields ----------------------------------------------------------------------

def _frequency_grid(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Frequencies (cycles per pixel) of the real FFT of an array of ``shape``, one array per axis."""
    axes = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    return np.meshgrid(*axes, indexing="ij", sparse=True)


def _spectral_synthesis(amplitude: Callable[[list[np.ndarray]], np.ndarray]) -> TextureSampler:
    """Gaussian random field with the given amplitude spectrum: white noise filtered in Fourier space
    (spectral synthesis, e.g. Lewis 1987, "Generalized stochastic subdivision", ACM TOG 6(3))."""

    def sample(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        white = rng.standard_normal(shape)
        spectrum = np.fft.rfftn(white) * amplitude(_frequency_grid(shape))
        return np.fft.irfftn(spectrum, s=shape, axes=tuple(range(len(shape))))

    return sample


def _radial_frequency(freqs: list[np.ndarray]) -> np.ndarray:
    return np.sqrt(sum(f ** 2 for f in freqs))


def _gaussian_lowpass(sigma_pixels: float) -> Callable[[list[np.ndarray]], np.ndarray]:
    # The Fourier transform of a Gaussian blur with std sigma (pixels) is exp(-2 pi^2 sigma^2 f^2).
    return lambda freqs: np.exp(-2.0 * np.pi ** 2 * sigma_pixels ** 2 * _radial_frequency(freqs) ** 2)


def _power_law(exponent: float) -> Callable[[list[np.ndarray]], np.ndarray]:
    # 1/f^exponent amplitude gives the self-similar "cloud" look of Perlin/fractal noise; the lowest
    # frequencies are capped so that one huge wave does not dominate a small image.
    def amplitude(freqs: list[np.ndarray]) -> np.ndarray:
        return np.maximum(_radial_frequency(freqs), 1.0 / 64.0) ** (-exponent)

    return amplitude


def _oriented_bandpass(angle_degrees: float, wavelength_pixels: float,
                       bandwidth: float) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Gaussian bumps at +-f0 in the plane of the last two axes (rows, columns): the Fourier-space form
    of a Gabor filter (Daugman 1985, JOSA A 2(7)). In 3D the bump is wider (half a cycle per
    wavelength) along the first axis, so the in-plane stripes change over a few slices instead of
    being one 2D pattern repeated."""
    theta = np.deg2rad(angle_degrees)
    centre_row, centre_col = np.sin(theta) / wavelength_pixels, np.cos(theta) / wavelength_pixels
    in_plane_width = bandwidth / wavelength_pixels
    depth_width = 0.5 / wavelength_pixels

    def amplitude(freqs: list[np.ndarray]) -> np.ndarray:
        *depth, row, col = freqs
        depth_term = sum(f ** 2 for f in depth) / (2 * depth_width ** 2) if depth else 0.0
        # the real FFT keeps only one half-space, so both +f0 and -f0 are needed to cover orientations
        plus = ((row - centre_row) ** 2 + (col - centre_col) ** 2) / (2 * in_plane_width ** 2)
        minus = ((row + centre_row) ** 2 + (col + centre_col) ** 2) / (2 * in_plane_width ** 2)
        return (np.exp(-plus) + np.exp(-minus)) * np.exp(-depth_term)

    return amplitude


# --- registry --------------------------------------------------------------------------------------

def _build_registry() -> dict[str, TextureSource]:
    sources = [
        TextureSource("brick", (2,), "scikit-image photograph of a brick wall (CC0), random crops",
                      _photograph_sampler("brick")),
        TextureSource("grass", (2,), "scikit-image photograph of grass (CC0), random crops",
                      _photograph_sampler("grass")),
        TextureSource("gravel", (2,), "scikit-image photograph of gravel (CC0), random crops",
                      _photograph_sampler("gravel")),
        TextureSource("noise-fine", (2, 3), "Gaussian-smoothed white noise, sigma 0.7 px (fine grain)",
                      _spectral_synthesis(_gaussian_lowpass(0.7))),
        TextureSource("noise-coarse", (2, 3), "Gaussian-smoothed white noise, sigma 2.5 px (blotches)",
                      _spectral_synthesis(_gaussian_lowpass(2.5))),
        TextureSource("fractal", (2, 3), "1/f^1.5 spectral noise (Perlin-like clouds)",
                      _spectral_synthesis(_power_law(1.5))),
    ]
    for angle in (0, 45, 90, 135):
        sources.append(TextureSource(
            f"gabor-{angle}", (2, 3),
            f"oriented band-pass noise, wavelength 8 px, wave direction {angle} deg "
            "(0: vertical stripes, 90: horizontal stripes)",
            _spectral_synthesis(_oriented_bandpass(angle, wavelength_pixels=8.0, bandwidth=0.25))))
    return {source.name: source for source in sources}


TEXTURES: dict[str, TextureSource] = _build_registry()


def _not_available_message(name: str, ndim: int) -> str:
    usable = ", ".join(n for n, s in TEXTURES.items() if ndim in s.dimensions)
    return f"texture {name!r} is not available in {ndim}D; {ndim}D textures: {usable}"


def get_texture(name: str, ndim: int) -> TextureSource:
    """The texture called ``name``, checked to exist in ``ndim`` dimensions (UserInputError if not)."""
    if name not in TEXTURES:
        raise UserInputError(f"unknown texture {name!r}; available: {', '.join(TEXTURES)} "
                             "(see `nnunet-robust make-dataset textures --list-textures`)")
    if ndim not in TEXTURES[name].dimensions:
        raise UserInputError(_not_available_message(name, ndim))
    return TEXTURES[name]


def format_texture_list() -> str:
    """Human-readable table of all textures, their dimensions and what they look like."""
    width = max(len(name) for name in TEXTURES)
    lines = [f"{'name':<{width}}  dims   description"]
    for source in TEXTURES.values():
        dims = "/".join(f"{d}D" for d in source.dimensions)
        lines.append(f"{source.name:<{width}}  {dims:<5}  {source.description}")
    return "\n".join(lines)

"""Our implementations against TorchIO's deterministic transforms, given the same parameters, for the
seven families TorchIO also has. Tolerances are float32 rounding unless a docstring says otherwise.

Geometry: TorchIO images get the affine ``diag(spacing)`` with the origin at the image centre. TorchIO
converts RAS to SimpleITK's LPS, which flips the first two axes; rotations about axes 0 and 1 and
translations along them therefore change sign between the two parameterisations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

tio = pytest.importorskip("torchio")

from nnunet_robustness.corruptions import get_corruption  # noqa: E402
from tests.corruptions.phantoms import make_phantom  # noqa: E402

SHAPE = (32, 29, 27)  # odd sizes: fftshift and ifftshift differ there
SPACING = (1.0, 1.5, 2.0)
LPS_FLIP = np.array([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    clean, _ = make_phantom(SHAPE)
    ramp = torch.arange(SHAPE[0], dtype=torch.float32).view(1, -1, 1, 1)  # breaks symmetries
    return clean + ramp


def torchio(transform, image: torch.Tensor) -> torch.Tensor:
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = -np.array([(n - 1) / 2 * s for n, s in zip(SHAPE, SPACING)])
    return transform(tio.ScalarImage(tensor=image.clone(), affine=affine)).data


def test_gaussian_noise_matches_torchio_noise_exactly(image):
    """Both draw ``torch.randn`` on CPU from a generator seeded with the same seed, so the values are
    identical (TorchIO seeds the global RNG, we a private generator: the stream is the same)."""
    ours = get_corruption("gaussian_noise", std_fraction=0.05).apply(image, {"std": [3.0], "noise_seed": 1234}, SPACING)
    theirs = torchio(tio.Noise(mean=0.0, std=3.0, seed=1234), image)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_gaussian_blur_matches_torchio_blur(image):
    corruption = get_corruption("gaussian_blur", sigma_mm=1.5)
    params = corruption.sample_parameters(image, SPACING, torch.Generator())
    ours = corruption.apply(image, params, SPACING)
    theirs = torchio(tio.Blur(std=(1.5, 1.5, 1.5)), image)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_bias_field_matches_torchio_bias_field(image):
    """Identical when the image minimum is 0 (our field multiplies the signal above the minimum)."""
    shifted = image - image.min()
    corruption = get_corruption("bias_field", coefficient_max=0.4)
    params = corruption.sample_parameters(shifted, SPACING, torch.Generator().manual_seed(3))
    ours = corruption.apply(shifted, params, SPACING)
    theirs = torchio(tio.BiasField(coefficients=params["coefficients"], order=3), shifted)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)
    assert (ours - shifted).abs().max() > 10  # the field did something


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("num_ghosts,restore", [(3, None), (4, 0.2)])
def test_ghosting_matches_torchio_ghosting(image, axis, num_ghosts, restore):
    params = {"num_ghosts": num_ghosts, "axis": axis, "intensity": 0.6, "restore": restore}
    ours = get_corruption("ghosting", intensity=0.6).apply(image, params, SPACING)
    theirs = torchio(tio.Ghosting(num_ghosts=num_ghosts, axis=axis, intensity=0.6, restore=restore), image)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-4)
    assert (ours - image).abs().max() > 5


def test_spike_matches_torchio_spike(image):
    """TorchIO's intensity is relative to the spectrum maximum, ours is an amplitude in image units:
    ``intensity = amplitude * num_voxels / max|F|``."""
    positions = np.array([[0.3, 0.7, 0.6], [0.55, 0.1, 0.9]])
    frequencies = (np.floor(positions * SHAPE).astype(int) - np.array(SHAPE) // 2).tolist()
    amplitude = 5.0
    ours = get_corruption("spike", amplitude_fraction=0.05).apply(
        image, {"frequencies": frequencies, "amplitude": [amplitude]}, SPACING)
    intensity = amplitude * image.numel() / float(torch.fft.fftn(image[0]).abs().max())
    theirs = torchio(tio.Spike(spikes_positions=positions, intensity=intensity), image)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-4)


def test_motion_matches_torchio_motion(image):
    """Same movements, times and linear interpolation. TorchIO rotates about the world origin (it drops
    the Euler transform's centre), so the origin is put at the image centre, where the two agree."""
    params = {"degrees": [[2.0, -3.0, 4.0], [-1.0, 2.0, -2.5]],
              "translation_mm": [[1.0, -2.0, 3.0], [2.0, 1.0, -1.0]],
              "times": [0.3, 0.7], "fill": [float(image.min())]}
    ours = get_corruption("motion", severity=3).apply(image, params, SPACING)
    degrees = np.array(params["degrees"]) * LPS_FLIP
    translation = np.array(params["translation_mm"]) * LPS_FLIP
    theirs = torchio(tio.Motion(degrees=degrees, translation=translation, times=np.array(params["times"]),
                                image_interpolation="linear"), image)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-3)
    assert (ours - image).abs().max() > 10


@pytest.mark.parametrize("factor", [2.0, 3.0, 4.0])
def test_anisotropy_delta_profile_matches_torchio_random_anisotropy(image, factor):
    """With ``slice_profile='delta'`` (nearest thin slice, TorchIO's downsampling) the results agree on
    every slice TorchIO interpolates; TorchIO sets slices beyond the outermost coarse slice to 0 (ITK's
    default pixel value), we repeat that slice, so the end slices are compared only where TorchIO
    has data. Our default ``'box'`` profile deliberately averages the slab (partial volume)."""
    corruption = get_corruption("anisotropy", slice_thickness_mm=factor * SPACING[0], axis=0, slice_profile="delta")
    params = corruption.sample_parameters(image, SPACING, torch.Generator())
    ours = corruption.apply(image, params, SPACING)
    theirs = torchio(tio.RandomAnisotropy(axes=(0,), downsampling=(factor, factor)), image)
    interpolated = theirs.abs().amax(dim=(0, 2, 3)) > 0
    assert interpolated.sum() >= SHAPE[0] - 2
    torch.testing.assert_close(ours[:, interpolated], theirs[:, interpolated], rtol=0, atol=1e-4)
    box = get_corruption("anisotropy", slice_thickness_mm=factor * SPACING[0], axis=0)(image, SPACING)
    assert (box - ours).abs().max() > 1  # the partial-volume profile is a different (deliberate) model

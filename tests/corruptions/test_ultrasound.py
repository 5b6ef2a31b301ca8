"""Ultrasound families: speckle statistics, shadow geometry, depth-only gain, near-field clutter."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_robustness.corruptions import CORRUPTIONS, get_corruption
from nnunet_robustness.errors import UserInputError

US_FAMILIES = [name for name, cls in CORRUPTIONS.items() if cls.group == "ultrasound"]
STOCHASTIC = ["us_speckle", "us_tgc", "us_haze"]


def random_bmode(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """A 0-255 B-mode-like image: grey tissue, random brighter/darker blobs, smooth texture."""
    generator = torch.Generator().manual_seed(seed)
    axes = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij")
    image = 90.0 + 20.0 * torch.sin(3 * axes[0] + 2 * axes[-1])
    for _ in range(4):
        centre = (torch.rand(len(shape), generator=generator) - 0.5) * 1.4
        radius = 0.1 + 0.25 * torch.rand(len(shape), generator=generator)
        inside = sum(((a - c) / r) ** 2 for a, c, r in zip(axes, centre, radius)) < 1
        image[inside] = float(torch.rand((), generator=generator)) * 220
    return image.unsqueeze(0)


def reflector_image(size: int = 64) -> torch.Tensor:
    """Uniform tissue (100) with one bright reflector (250) at rows 20-27, columns 24-39."""
    image = torch.full((1, size, size), 100.0)
    image[0, 20:28, 24:40] = 250.0
    image[0, 50:54, 5:9] = 0.0  # a dark spot sets the robust low end below the tissue
    return image


def test_shadows_lie_distal_to_the_bright_structure_along_the_beam():
    image = reflector_image()
    out = get_corruption("us_shadowing", severity=3)(image, (1.0, 1.0))
    # Proximal rows and the reflector's leading surface are unchanged (its deeper rows lie in its own
    # shadow, as behind the bright rim of a stone).
    assert torch.equal(out[0, :21], image[0, :21])
    assert torch.equal(out[0, :, :24], image[0, :, :24]) and torch.equal(out[0, :, 40:], image[0, :, 40:])
    behind = out[0, 28:, 24:40]
    assert float(behind.mean()) < 0.6 * 100.0  # a clear shadow behind it
    # The shadow does not recover with depth (nothing transmits more energy further down).
    depth_means = behind.mean(dim=1)
    assert bool((depth_means[1:] <= depth_means[:-1] + 1e-4).all())
    # With the beam along axis 1 (transducer on the left) the shadow is to the right instead.
    sideways = get_corruption("us_shadowing", severity=3, beam_axis=1)(image, (1.0, 1.0))
    assert torch.equal(sideways[0, :, :25], image[0, :, :25])
    assert float(sideways[0, 20:28, 40:].mean()) < 60.0
    assert torch.equal(sideways[0, :20], image[0, :20]) and torch.equal(sideways[0, 28:], image[0, 28:])


def speckled_tissue(seed: int, shape: tuple[int, int] = (128, 128), level: float = 100.0, strength: float = 1.0,
                    cell: float = 1.0) -> torch.Tensor:
    """Uniform tissue with the project's Rayleigh speckle (``strength`` 1: fully developed), on 0-255."""
    tissue = torch.full((1, *shape), level)
    speckle = get_corruption("us_speckle", strength=strength, cell_voxels=cell)
    params = speckle.sample_parameters(tissue, (1.0, 1.0), torch.Generator().manual_seed(seed))
    params["low"], params["floor"], params["ceiling"] = [0.0], [0.0], [255.0]  # amplitude from 0, 8-bit display
    return speckle.apply(tissue, params, (1.0, 1.0)).round()


@pytest.mark.parametrize("cell", [1.0, 2.0, 3.0])
def test_shadowing_leaves_speckle_without_a_reflector_unchanged(cell):
    """The issue's case: with a global threshold (0.6 of the range) about half of a speckled image counted as
    reflector and the image went black below ~50 rows. Speckle grains are no reflectors: the change stays
    below the speckle's own variation (here it is none at all), at every severity."""
    for seed in range(3):
        image = speckled_tissue(seed, cell=cell)
        variation = float(image.std())
        assert variation > 0.4 * 100.0  # fully developed: std / mean = 0.52 before rounding and clipping
        for severity in (1, 3, 5):
            out = get_corruption("us_shadowing", severity=severity)(image, (1.0, 1.0))
            assert float((out - image).pow(2).mean().sqrt()) < 0.1 * variation
            assert torch.equal(out, image)


def test_shadow_of_one_reflector_in_speckle_lies_only_distal_to_it():
    image = speckled_tissue(0, level=60.0, strength=0.55)
    rows, cols = slice(30, 38), slice(50, 70)
    image[0, rows, cols] = speckled_tissue(1, level=240.0, strength=0.1)[0, rows, cols]  # a stone, 8 x 20 px
    out = get_corruption("us_shadowing", severity=4)(image, (1.0, 1.0))
    changed = torch.nonzero((out - image)[0].abs() > 0)
    assert changed.numel() > 0
    # only beyond the stone's leading surface (row 30) and only in the stone's columns
    assert int(changed[:, 0].min()) > 30 and int(changed[:, 1].min()) >= 50 and int(changed[:, 1].max()) < 70
    assert torch.equal(out[0, :31], image[0, :31])
    assert torch.equal(out[0, :, :50], image[0, :, :50]) and torch.equal(out[0, :, 70:], image[0, :, 70:])
    behind = (slice(40, 128), slice(52, 68))
    floor = float(image.min())  # the echo-free level the shadow falls to
    assert float(out[0][behind].mean()) - floor < 0.05 * (float(image[0][behind].mean()) - floor)  # dense (5%)


@pytest.mark.parametrize("family", US_FAMILIES)
def test_ultrasound_output_stays_in_the_input_range(family):
    """A B-mode display saturates: gain, speckle and clutter wrote values above 255 (up to ~4x the input at
    us_tgc 5) before outputs were clipped to the input's own range."""
    image = random_bmode(3, (64, 64))
    image[0, 10:16, 20:30] = 255.0  # a saturated reflector, so that us_shadowing acts too
    low, high = float(image.min()), float(image.max())
    for seed in range(3):
        out = get_corruption(family, severity=5)(image, (1.0, 1.0), seed=seed)
        assert not torch.equal(out, image)
        assert float(out.min()) >= low and float(out.max()) <= high


def test_speckle_has_a_rayleigh_envelope_correlated_over_a_resolution_cell():
    image = torch.full((1, 128, 128), 120.0)
    corruption = get_corruption("us_speckle", strength=1.0)
    params = corruption.sample_parameters(image, (1.0, 1.0), torch.Generator().manual_seed(3))
    params["low"] = [0.0]  # replay with the low end at 0: the amplitude is the whole intensity
    out = corruption.apply(image, params, (1.0, 1.0))
    factor = (out / image)[0]
    # Rayleigh: mean 1 after normalisation, std / mean = sqrt(4 / pi - 1) = 0.523 (speckle SNR 1.91).
    assert float(factor.mean()) == pytest.approx(1.0, abs=0.05)
    assert float(factor.std() / factor.mean()) == pytest.approx(math.sqrt(4 / math.pi - 1), rel=0.1)
    assert float(factor.min()) >= 0.0
    # Grains span a resolution cell, longer laterally (axis 1) than along the beam (axis 0).
    centred = factor - factor.mean()

    def correlation(shift: int, dim: int) -> float:
        length = centred.shape[dim] - shift
        a, b = centred.narrow(dim, 0, length), centred.narrow(dim, shift, length)
        return float((a * b).mean() / centred.pow(2).mean())

    assert correlation(1, 0) > 0.3 and correlation(2, 1) > correlation(2, 0)


def test_tgc_error_is_a_gain_that_depends_on_depth_only():
    image = random_bmode(0, (48, 40)) + 10.0  # robust low end above 0 keeps the ratio defined
    out = get_corruption("us_tgc", severity=5)(image, (1.0, 1.0), seed=2)
    params = get_corruption("us_tgc", severity=5).sample_parameters(image, (1.0, 1.0), torch.Generator().manual_seed(2))
    low = params["low"][0]
    amplitude = image[0] - low
    valid = amplitude > 5
    valid &= (out[0] < float(image.max())) & (out[0] > float(image.min()))  # clipped to the input's range
    gain = torch.where(valid, (out[0] - low) / amplitude.clamp(min=1e-6), torch.nan)
    per_row_spread = torch.nan_to_num(gain.nanmedian(dim=1).values.unsqueeze(1) - gain, nan=0.0).abs()
    assert float(per_row_spread.max()) < 1e-4  # the same gain across every row (depth)
    gain_db = 20 * torch.log10(gain.nanmedian(dim=1).values)
    assert float(gain_db.abs().max()) <= 12.0 + 1e-4 and float(gain_db.max() - gain_db.min()) > 3.0


def test_haze_fills_in_dark_regions_most_near_the_transducer():
    image = torch.full((1, 64, 64), 120.0)
    image[0, 6:14, 20:44] = 5.0  # a shallow cyst
    image[0, 48:56, 20:44] = 5.0  # a deep cyst
    out = get_corruption("us_haze", severity=4)(image, (1.0, 1.0), seed=0)
    change = out - image
    assert bool((change >= 0).all())  # clutter only adds echo
    shallow, deep = float(change[0, 6:14, 20:44].mean()), float(change[0, 48:56, 20:44].mean())
    assert shallow > deep > 0
    contrast_before = 120.0 / 5.0
    assert float(out[0, 6:14, 0:10].mean() / out[0, 6:14, 20:44].mean()) < 0.5 * contrast_before


@pytest.mark.parametrize("family", STOCHASTIC)
def test_common_random_numbers_make_change_monotone_in_severity(family):
    for seed, shape in ((0, (64, 64)), (1, (40, 72)), (2, (24, 24, 20))):
        image = random_bmode(seed, shape)
        changes = []
        for severity in range(1, 6):
            out = get_corruption(family, severity=severity)(image, (1.0,) * len(shape), seed=5)
            changes.append(float(torch.linalg.vector_norm(out - image) / torch.linalg.vector_norm(image)))
        assert changes[0] > 0
        assert all(b >= a for a, b in zip(changes, changes[1:])), (family, shape, changes)


@pytest.mark.parametrize("family", STOCHASTIC)
def test_random_parameters_do_not_depend_on_severity(family):
    image = random_bmode(0, (32, 32))
    graded = set(CORRUPTIONS[family].table.keys)
    drawn = [{k: v for k, v in get_corruption(family, severity=s).sample_parameters(
        image, (1.0, 1.0), torch.Generator().manual_seed(9)).items() if k not in graded} for s in (1, 5)]
    assert drawn[0] == drawn[1]


def test_rgb_png_layout_works_per_channel():
    """nnU-Net reads an RGB B-mode PNG as (3, 1, H, W) with a dummy spacing."""
    grey = random_bmode(4, (40, 48))
    grey[0, 22:26, 0:8] = 250.0  # a reflector on smooth tissue, so that us_shadowing acts too
    rgb = grey.expand(3, 40, 48).unsqueeze(1).contiguous()
    for family in US_FAMILIES:
        out = get_corruption(family, severity=3)(rgb.numpy().astype("uint8"), (999.0, 1.0, 1.0), seed=1)
        assert out.shape == (3, 1, 40, 48) and out.dtype.name == "uint8"
        assert not (out == rgb.numpy().astype("uint8")).all(), family


def test_invalid_ultrasound_settings_are_user_errors():
    with pytest.raises(UserInputError, match="strength must be in \\[0, 1\\], got 2"):
        get_corruption("us_speckle", strength=2.0)
    with pytest.raises(UserInputError, match="beam_axis must be a spatial axis index"):
        get_corruption("us_tgc", severity=1, beam_axis="depth")
    with pytest.raises(UserInputError, match="contrast must be a number in \\(0, 1\\], got 1.5"):
        get_corruption("us_shadowing", severity=1, contrast=1.5)
    with pytest.raises(UserInputError, match="unknown parameter\\(s\\) threshold"):
        get_corruption("us_shadowing", severity=1, threshold=0.6)

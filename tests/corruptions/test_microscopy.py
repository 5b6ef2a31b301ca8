"""Microscopy / histology families on RGB (nnU-Net's NaturalImage2DIO layout) and fluorescence images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from nnunet_robustness.corruptions import CORRUPTIONS, get_corruption
from nnunet_robustness.corruptions.microscopy import hed_to_rgb, rgb_to_hed
from nnunet_robustness.errors import UserInputError

MICROSCOPY = [name for name, cls in CORRUPTIONS.items() if cls.group == "microscopy"]
STOCHASTIC = ["he_stain", "vignetting", "dust_bubbles"]


def he_tile(seed: int, size: int = 64) -> torch.Tensor:
    """A synthetic H&E tile (3, size, size) in 0-255: haematoxylin nuclei on eosin stroma, built
    from stain densities and mixed to RGB with the colour-deconvolution model."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                                indexing="ij")
    haematoxylin = torch.zeros(size, size, dtype=torch.float64)
    for _ in range(12):
        r, c = torch.rand(2, generator=generator, dtype=torch.float64) * size
        radius = 2.0 + 3.0 * float(torch.rand((), generator=generator))
        haematoxylin += 0.08 * torch.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * radius**2))
    eosin = 0.04 + 0.03 * torch.sin(rows / 7.0 + seed) * torch.cos(cols / 9.0)
    hed = torch.stack((haematoxylin, eosin, torch.zeros_like(eosin)))
    return (hed_to_rgb(hed) * 255.0).float()


def test_colour_deconvolution_matches_scikit_image():
    from skimage.color import rgb2hed

    tile = he_tile(0).numpy()
    ours = rgb_to_hed(torch.from_numpy(tile / 255.0)).numpy()
    reference = np.moveaxis(rgb2hed(np.moveaxis(tile / 255.0, 0, -1)), -1, 0)
    positive = reference > 0  # scikit-image clips negative densities to 0
    np.testing.assert_allclose(ours[positive], reference[positive], atol=1e-6)
    np.testing.assert_allclose(hed_to_rgb(torch.from_numpy(ours)).numpy(), tile / 255.0, atol=1e-6)  # exact inverse


def test_stain_variation_keeps_the_density_maps_structure_but_changes_colour():
    tile = he_tile(1)
    out = get_corruption("he_stain", severity=5)(tile, (1.0, 1.0), seed=3)
    before, after = rgb_to_hed(tile / 255.0), rgb_to_hed(out / 255.0)
    for stain in (0, 1):  # haematoxylin, eosin
        # Where the stain is present (densities near 0 can be shifted below 0 and clipped to white).
        present = before[stain] > 0.02
        assert int(present.sum()) > 200
        pair = torch.stack((before[stain][present], after[stain][present]))
        assert float(torch.corrcoef(pair)[0, 1]) > 0.995, stain
    assert float((out - tile).abs().mean()) > 2.0  # grey levels (0-255) really changed
    # 0-1 images give the same result, scaled.
    scaled = get_corruption("he_stain", severity=5)(tile / 255.0, (1.0, 1.0), seed=3)
    torch.testing.assert_close(scaled * 255.0, out, atol=1e-3, rtol=0)


def test_stain_variation_needs_rgb():
    with pytest.raises(UserInputError, match="he_stain: needs an RGB image with 3 channels, got 1"):
        get_corruption("he_stain", severity=2)(torch.rand(1, 32, 32), (1.0, 1.0))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("channels", [3, 1])
def test_jpeg_quality_lowers_psnr_monotonically(channels):
    for seed in (0, 1, 2):
        tile = he_tile(seed, 96).round().to(torch.uint8).numpy()
        if channels == 1:
            tile = tile[1:2]
        values = [psnr(get_corruption("jpeg_compression", severity=s)(tile, (1.0, 1.0)), tile) for s in range(1, 6)]
        assert all(b < a for a, b in zip(values, values[1:])), values
        assert values[0] > 30 and values[-1] < values[0] - 5


def test_jpeg_matches_pillow_on_an_rgb_png():
    from PIL import Image

    tile = he_tile(4, 64).round().to(torch.uint8).numpy()
    ours = get_corruption("jpeg_compression", severity=3)(tile[:, None], (999.0, 1.0, 1.0))  # NaturalImage2DIO layout
    buffer = io.BytesIO()
    Image.fromarray(np.moveaxis(tile, 0, -1)).save(buffer, format="JPEG", quality=50, subsampling=2)
    reference = np.moveaxis(np.asarray(Image.open(buffer)), -1, 0)
    assert ours.dtype == np.uint8 and ours.shape == (3, 1, 64, 64)
    assert np.array_equal(ours[:, 0], reference)


def test_defocus_blurs_with_a_disk_and_keeps_brightness():
    image = torch.zeros(1, 41, 41)
    image[0, 20, 20] = 1000.0  # a point source
    out = get_corruption("defocus_blur", radius=4.0)(image, (1.0, 1.0))[0]
    assert float(out.sum()) == pytest.approx(1000.0, rel=1e-5)
    rows, cols = torch.meshgrid(torch.arange(41.0) - 20, torch.arange(41.0) - 20, indexing="ij")
    distance = torch.sqrt(rows**2 + cols**2)
    inside, outside = out[distance < 3.4], out[distance > 4.8]
    assert float(inside.std() / inside.mean()) < 1e-3  # flat-topped: a disk, not a Gaussian
    assert float(outside.abs().max()) == 0.0
    # Severities blur more: high-frequency energy of a tile falls.
    tile = he_tile(2)
    energies = []
    for severity in range(1, 6):
        blurred = get_corruption("defocus_blur", severity=severity)(tile, (1.0, 1.0))
        energies.append(float((blurred[:, 1:] - blurred[:, :-1]).pow(2).mean()))
    assert all(b < a for a, b in zip(energies, energies[1:])), energies


def test_vignetting_darkens_the_border_multiplicatively():
    flat = torch.full((3, 64, 64), 230.0)  # white bright-field background
    flat[:, :2, :2] = 0.0
    out = get_corruption("vignetting", severity=4)(flat, (1.0, 1.0), seed=1)
    assert float(out[:, 28:36, 28:36].mean()) > float(out[:, -4:, -4:].mean()) + 20 or \
        float(out[:, 28:36, 28:36].mean()) > float(out[:, :4, -4:].mean()) + 20
    assert bool((out <= flat + 1e-4).all()) and float(out[:, :2, :2].abs().max()) == 0.0  # 0 (no light) stays 0
    ratio = out / flat.clamp(min=1)
    # The same gain on every channel.
    assert torch.allclose(ratio[0, 2:], ratio[1, 2:]) and torch.allclose(ratio[0, 2:], ratio[2, 2:])


def test_dust_and_bubbles_only_darken_and_accumulate_with_severity():
    tile = he_tile(5, 96)
    darkened = []
    previous = None
    for severity in range(1, 6):
        out = get_corruption("dust_bubbles", severity=severity)(tile, (1.0, 1.0), seed=8)
        assert bool((out <= tile + 1e-3).all())
        changed = (tile - out).amax(dim=0) > 0.5
        if previous is not None:
            assert bool((changed | ~previous).all() | (changed >= previous).all())
            assert int(changed.sum()) >= int(previous.sum())
        previous = changed
        darkened.append(float((tile - out).sum()))
    assert all(b > a for a, b in zip(darkened, darkened[1:])), darkened


@pytest.mark.parametrize("family", STOCHASTIC)
def test_common_random_numbers_make_change_monotone_in_severity(family):
    """The same seed draws the same stain shifts / optical axis / occluders at every severity, so the
    change vs the clean image grows with severity (2D tiles and a small 3D stack)."""
    for seed in range(3):
        tiles = [he_tile(seed, 64), he_tile(seed + 10, 48)[:, :40]]
        tiles.append(torch.stack([he_tile(seed + 20, 32)] * 3, dim=1))  # (3, 3, 32, 32) stack
        for tile in tiles:
            changes = []
            for severity in range(1, 6):
                out = get_corruption(family, severity=severity)(tile, (1.0,) * (tile.ndim - 1), seed=seed)
                changes.append(float(torch.linalg.vector_norm(out - tile) / torch.linalg.vector_norm(tile)))
            assert changes[0] > 0
            assert all(b >= a for a, b in zip(changes, changes[1:])), (family, tuple(tile.shape), changes)


@pytest.mark.parametrize("family", STOCHASTIC)
def test_random_parameters_do_not_depend_on_severity(family):
    tile = he_tile(0, 32)
    graded = set(CORRUPTIONS[family].table.keys)
    drawn = [{k: v for k, v in get_corruption(family, severity=s).sample_parameters(
        tile, (1.0, 1.0), torch.Generator().manual_seed(9)).items() if k not in graded} for s in (1, 5)]
    assert drawn[0] == drawn[1]


@pytest.mark.parametrize("family", MICROSCOPY)
def test_natural_image_layout_uint8_rgb(family):
    """nnU-Net's NaturalImage2DIO gives (3, 1, H, W) uint8-valued arrays with spacing (999, 1, 1)."""
    tile = he_tile(6, 48).round().to(torch.uint8).numpy()[:, None]
    out = get_corruption(family, severity=3)(tile, (999.0, 1.0, 1.0), seed=2)
    plain = get_corruption(family, severity=3)(tile[:, 0], (1.0, 1.0), seed=2)
    assert out.dtype == np.uint8 and out.shape == tile.shape
    assert np.array_equal(out[:, 0], plain) and not np.array_equal(out, tile)


def test_stain_variation_leaves_bare_glass_glass():
    """The docstring: bare white glass is unchanged and faint glass shifts at most by its optical-density
    share; before #29 the unweighted stain shift tinted white glass by up to 12.8 grey levels at level 5."""
    tile = he_tile(2)
    tile[:, :8, :] = 255.0  # bare glass
    tile[:, 8:12, :] = 245.0  # faint background glass (optical density 0.017, tissue weight 0.11)
    worst_white, worst_faint, worst_tissue = 0.0, 0.0, 0.0
    for seed in range(20):
        out = get_corruption("he_stain", severity=5)(tile, (1.0, 1.0), seed=seed)
        worst_white = max(worst_white, float((out[:, :8] - tile[:, :8]).abs().max()))
        worst_faint = max(worst_faint, float((out[:, 8:12] - tile[:, 8:12]).abs().max()))
        worst_tissue = max(worst_tissue, float((out[:, 16:] - tile[:, 16:]).abs().max()))
        assert float((out[:, 16:] - tile[:, 16:]).abs().mean()) > 1.0  # the tissue still changes
    assert worst_white == 0.0  # unweighted: up to 81 grey levels on this tile
    assert worst_faint < 0.15 * worst_tissue, (worst_faint, worst_tissue)  # unweighted: about as much as tissue


@pytest.mark.parametrize("seed", range(6))
def test_vignetting_darkest_corner_gets_the_stated_share_of_the_light(seed):
    """Level 5 states 'the darkest corner at 0.55 of the axis' light' (docs/cli.md: 5-45 % fall-off at the
    corners); before #29 an off-centre axis left the far corner at down to 0.12 (0.25 measured in #29)."""
    flat = torch.full((1, 48, 64), 200.0)
    for severity, falloff in enumerate((0.05, 0.1, 0.2, 0.3, 0.45), start=1):
        gain = get_corruption("vignetting", severity=severity)(flat, (1.0, 1.0), seed=seed)[0] / 200.0
        corners = torch.stack([gain[0, 0], gain[0, -1], gain[-1, 0], gain[-1, -1]])
        assert float(corners.min()) == pytest.approx(1.0 - falloff, abs=1e-5)
        assert float(gain.min()) == pytest.approx(1.0 - falloff, abs=1e-5) and float(gain.max()) <= 1.0
    assert "0.55" in CORRUPTIONS["vignetting"].table.meanings[4]

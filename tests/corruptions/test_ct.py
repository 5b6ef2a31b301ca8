"""CT families: the projector against scikit-image, and the physics each family claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnunet_robustness.corruptions import CORRUPTIONS, _radon, get_corruption
from nnunet_robustness.errors import UserInputError

CT_FAMILIES = [name for name, cls in CORRUPTIONS.items() if cls.group == "ct"]


def water_cylinder(size: int = 96, radius: float = 40.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform water (0 HU) disk in air (-1000 HU): image (1, size, size) and the radius map (pixels)."""
    centre = (size - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(size) - centre, torch.arange(size) - centre, indexing="ij")
    distance = torch.sqrt(rows.float() ** 2 + cols.float() ** 2)
    return torch.where(distance < radius, 0.0, -1000.0).unsqueeze(0), distance


def random_ct(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """A water ellipse body in air with random soft-tissue/bone ellipses inside (HU)."""
    generator = torch.Generator().manual_seed(seed)
    axes = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij")
    inplane = axes[-2:]
    image = torch.full(shape, -1000.0)
    image[(inplane[0] / 0.8) ** 2 + (inplane[1] / 0.9) ** 2 < 1] = 40.0
    for _ in range(5):
        centre = (torch.rand(2, generator=generator) - 0.5) * 0.9
        radius = 0.08 + 0.2 * torch.rand(2, generator=generator)
        value = float(torch.rand((), generator=generator)) * 500 - 100
        inside = ((inplane[0] - centre[0]) / radius[0]) ** 2 + ((inplane[1] - centre[1]) / radius[1]) ** 2 < 1
        image[inside] = value
    return image.unsqueeze(0)


def test_torch_radon_and_fbp_match_scikit_image():
    from skimage.transform import iradon, radon

    size = 63  # odd: scikit-image rotates about pixel size // 2, which is the centre only for odd sizes
    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    image = (np.exp(-((cols - 40) ** 2 + (rows - 20) ** 2) / 20)
             + 0.5 * np.exp(-((cols - 25) ** 2 + (rows - 35) ** 2) / 40))
    geometry = _radon.Geometry.for_size(size, 100)
    degrees = np.rad2deg(geometry.theta.numpy())
    ours = _radon.radon(torch.from_numpy(image).float()[None], geometry)[0].numpy().T
    reference = radon(image, theta=degrees, circle=False)
    crop = (ours.shape[0] - reference.shape[0]) // 2
    ours = ours[crop:crop + reference.shape[0]]
    assert np.abs(ours - reference).max() < 0.05 * reference.max()  # nearest-sample projector, half-pixel step
    assert np.abs(ours - reference).mean() < 0.005 * reference.max()

    padded = np.zeros((geometry.detectors, geometry.views))
    padded[crop:crop + reference.shape[0]] = reference
    ours_fbp = _radon.fbp(torch.from_numpy(padded.T.copy()).float()[None], geometry, "ramp")[0].numpy()
    reference_fbp = iradon(reference, theta=degrees, circle=False, filter_name="ramp", output_size=size)
    assert np.abs(ours_fbp - reference_fbp).max() < 0.01 * image.max()
    assert np.abs(ours_fbp - image).max() < 0.05 * image.max()  # and it is a reconstruction


def test_low_dose_noise_grows_as_one_over_sqrt_dose_in_a_water_phantom():
    """Noise insertion adds sqrt(1/a - 1) times the full-dose noise, so on a scan that already has
    full-dose noise the total std is sigma_full / sqrt(a). Tolerance: 10% (one realisation of
    ~2000 pixels per level, FBP-correlated noise)."""
    phantom, distance = water_cylinder()
    spacing = (3.0, 3.0)  # a 24 cm water cylinder
    centre = distance < 25
    # Full-dose noise: the inserted noise at a = 1/2 has exactly the full-dose variance (1/a - 1 = 1).
    full_dose = get_corruption("ct_low_dose", dose_fraction=0.5)(phantom, spacing, seed=100)
    sigma_full = float(full_dose[0][centre].std())
    assert 1.0 < sigma_full < 20.0  # a plausible full-dose noise level in HU for 3 mm pixels
    for dose in (1 / 2, 1 / 4, 1 / 8, 1 / 16):
        lowered = get_corruption("ct_low_dose", dose_fraction=dose)(full_dose, spacing, seed=7)
        added = float((lowered - full_dose)[0][centre].std())
        total = float(lowered[0][centre].std())
        assert added == pytest.approx(sigma_full * math.sqrt(1 / dose - 1), rel=0.1), dose
        assert total == pytest.approx(sigma_full / math.sqrt(dose), rel=0.1), dose
    # Air stays air-like: noise is added where photons were counted, the image keeps its mean.
    assert float(lowered[0][centre].mean()) == pytest.approx(0.0, abs=0.3 * total)


def test_low_dose_noise_of_a_2d_slice_follows_its_slice_thickness_and_the_999_dummy_is_1_mm():
    """In nnU-Net's 2D layout (C, 1, X, Y) the singleton axis's spacing is the slice thickness: a
    detector bin of a 4 mm slice collects 4x the photons of a 1 mm one, so at the same dose the added
    noise std is 1/sqrt(4) = 1/2 of it (electronic noise, 10 counts against ~1e4, shifts this by
    far less than the 3 % allowed). nnU-Net's dummy 999 (natural images) or 999 x the in-plane spacing
    (SimpleITK) of a true 2D image is taken as 1 mm, as a bare (C, X, Y) slice is."""
    phantom, distance = water_cylinder()
    centre = distance < 25
    corruption = get_corruption("ct_low_dose", severity=3)

    def added_std(image, spacing):
        return float((corruption(image, spacing, seed=4) - image)[..., centre].std())

    layout_2d = phantom.unsqueeze(1)  # (1, 1, 96, 96)
    one_mm = added_std(phantom, (3.0, 3.0))
    assert 1.0 < one_mm < 200.0
    for thickness in (0.5, 2.5, 4.0):
        assert added_std(layout_2d, (thickness, 3.0, 3.0)) == pytest.approx(one_mm / math.sqrt(thickness),
                                                                            rel=0.03), thickness
    for dummy in (999.0, 999.0 * 3.0):
        assert added_std(layout_2d, (dummy, 3.0, 3.0)) == pytest.approx(one_mm, rel=1e-6), dummy
    params = corruption.sample_parameters(phantom, (3.0, 3.0), torch.Generator().manual_seed(0))
    assert params["thickness_mm"] == 1.0  # recorded for replay; a volume's thickness is in its spacing
    assert "thickness_mm" not in corruption.sample_parameters(phantom.unsqueeze(1).repeat(1, 2, 1, 1),
                                                              (2.5, 3.0, 3.0), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("x_mm,y_mm", [(-36.0, 24.0), (30.0, -15.0)])
def test_metal_streaks_lie_along_lines_through_the_insert(x_mm, y_mm):
    """Averaged along a line through the insert, a streak keeps its sign, so line means are large;
    along parallel lines 6-10 px beside it, streaks cross obliquely and average out."""
    import torch.nn.functional as F

    phantom, _ = water_cylinder()
    corruption = get_corruption("ct_metal", severity=4)
    params = corruption.sample_parameters(phantom, (3.0, 3.0), torch.Generator().manual_seed(3))
    params.update(x_mm=x_mm, y_mm=y_mm)  # replay with the insert at a known point inside the body
    change = (corruption.apply(phantom, params, (3.0, 3.0)) - phantom)[0]
    assert float(change[change < 1000].abs().mean()) > 2.0  # HU: streaks, not only the insert
    row0, col0 = 47.5 - y_mm / 3.0, 47.5 + x_mm / 3.0

    def line_means_rms(offset: float) -> float:
        """RMS over 180 directions of the mean change along the line through the insert shifted
        sideways by ``offset`` px, 5-35 px from the insert on both sides (the insert excluded)."""
        phi = torch.arange(180) * math.pi / 180
        along = torch.cat((torch.arange(-35, -5, 0.5), torch.arange(5.5, 35.5, 0.5))).view(1, -1)
        d_row, d_col = torch.sin(phi).view(-1, 1), torch.cos(phi).view(-1, 1)
        rows = row0 + along * d_row + offset * d_col
        cols = col0 + along * d_col - offset * d_row
        grid = torch.stack(((2 * cols + 1) / 96 - 1, (2 * rows + 1) / 96 - 1), dim=-1).unsqueeze(0).float()
        values = F.grid_sample(change.view(1, 1, 96, 96), grid, align_corners=False)[0, 0]
        return float(values.mean(dim=1).pow(2).mean().sqrt())

    beside = max(line_means_rms(offset) for offset in (-10.0, -6.0, 6.0, 10.0))
    assert line_means_rms(0.0) > 1.8 * beside


def test_cupping_lowers_the_centre_of_a_uniform_cylinder_relative_to_its_rim():
    phantom, distance = water_cylinder()
    depths = []
    for severity in range(1, 6):
        out = get_corruption("ct_cupping", severity=severity)(phantom, (3.0, 3.0), seed=0)[0]
        centre = float(out[distance < 6].mean())
        rim = float(out[(distance > 32) & (distance < 37)].mean())
        depths.append(rim - centre)
    assert depths[0] > 2.0  # HU
    assert all(b > a for a, b in zip(depths, depths[1:])), depths
    # The profile falls monotonically from rim to centre (a cup, not a ring).
    out = get_corruption("ct_cupping", severity=5)(phantom, (3.0, 3.0), seed=0)[0]
    radial = [float(out[(distance >= r) & (distance < r + 5)].mean()) for r in range(0, 35, 5)]
    assert all(b > a for a, b in zip(radial, radial[1:])), radial


def test_rings_are_concentric_about_the_rotation_centre():
    phantom, distance = water_cylinder()
    change = (get_corruption("ct_rings", severity=4)(phantom, (3.0, 3.0), seed=2) - phantom)[0]
    inside = distance < 44

    def symmetry(values: torch.Tensor) -> float:
        """Correlation of the image with itself rotated by 90 degrees about the slice centre."""
        rotated = torch.rot90(values, 1, (0, 1))
        return float(torch.corrcoef(torch.stack((values[inside], rotated[inside])))[0, 1])

    assert float(change[inside].std()) > 1.0  # HU: visible rings
    assert symmetry(change) > 0.9  # radially symmetric about the rotation centre
    assert symmetry(torch.roll(change, shifts=(9, -6), dims=(0, 1))) < 0.3  # but not about another point


@pytest.mark.parametrize("family", CT_FAMILIES)
def test_common_random_numbers_make_change_monotone_in_severity(family):
    """Random parameters depend on the seed only, never the severity: with one seed, the change vs the
    clean image grows with severity, on several random images in 2D and 3D."""
    for seed, shape in ((0, (64, 64)), (1, (48, 56)), (2, (6, 40, 40))):
        image = random_ct(seed, shape)
        spacing = (2.0,) * len(shape) if len(shape) == 2 else (5.0, 2.0, 2.0)
        changes = []
        for severity in range(1, 6):
            out = get_corruption(family, severity=severity)(image, spacing, seed=11)
            changes.append(float(torch.linalg.vector_norm(out - image) / torch.linalg.vector_norm(image)))
        assert changes[0] > 0
        assert all(b >= a for a, b in zip(changes, changes[1:])), (family, shape, changes)


@pytest.mark.parametrize("family", ["ct_low_dose", "ct_metal", "ct_rings"])
def test_random_parameters_do_not_depend_on_severity(family):
    image = random_ct(0, (48, 48))
    mild = get_corruption(family, severity=1).sample_parameters(image, (2.0, 2.0), torch.Generator().manual_seed(4))
    harsh = get_corruption(family, severity=5).sample_parameters(image, (2.0, 2.0), torch.Generator().manual_seed(4))
    graded = set(CORRUPTIONS[family].table.keys)
    assert {k: v for k, v in mild.items() if k not in graded} == {k: v for k, v in harsh.items() if k not in graded}


def test_axial_slices_follow_the_coarsest_axis_and_hu_dtype_round_trips():
    # A volume of identical axial slices along the thick axis (2): cupping is the same in every slice.
    slice_2d = random_ct(3, (40, 40))[0]
    volume = slice_2d.unsqueeze(-1).expand(40, 40, 4).unsqueeze(0).contiguous()
    out = get_corruption("ct_cupping", severity=4)(volume, (1.0, 1.0, 5.0), seed=0)
    assert torch.allclose(out[..., 0], out[..., 3])
    alone = get_corruption("ct_cupping", severity=4)(slice_2d[None], (1.0, 1.0), seed=0)
    torch.testing.assert_close(out[..., 1], alone, atol=1e-3, rtol=0)
    # int16 HU in, int16 HU out; padding below -1000 HU counts as air.
    as_int = volume.round().to(torch.int16).numpy()
    as_int[..., :3, :, :] = -2048
    corrupted = get_corruption("ct_low_dose", severity=3)(as_int, (1.0, 1.0, 5.0), seed=0)
    assert corrupted.dtype == np.int16 and corrupted.shape == as_int.shape
    assert not np.array_equal(corrupted, as_int)


def test_invalid_ct_settings_are_user_errors():
    with pytest.raises(UserInputError, match="dose_fraction must be in \\(0, 1\\], got 0"):
        get_corruption("ct_low_dose", dose_fraction=0.0)
    with pytest.raises(UserInputError, match="slice_axis must be None or a spatial axis index"):
        get_corruption("ct_cupping", severity=2, slice_axis=-1)
    with pytest.raises(UserInputError, match="kernel must be"):
        get_corruption("ct_rings", severity=2, kernel="sharp")
    with pytest.raises(UserInputError, match="gain_error must be in \\[0, 0.1\\)"):
        get_corruption("ct_rings", gain_error=0.5)


def test_chunked_back_projection_of_large_slices_equals_the_cached_one(monkeypatch):
    geometry = _radon.Geometry.for_size(40, 60)
    filtered = torch.randn(3, geometry.views, geometry.detectors, generator=torch.Generator().manual_seed(0))
    cached = _radon.backproject(filtered, geometry)
    monkeypatch.setattr(_radon, "_CACHED_BACKPROJECTION", 0)  # the path 512^2 slices take
    monkeypatch.setattr(_radon, "_INDEX_BUDGET", 40 * 40 * 7)  # 7 views per chunk, a partial last chunk
    torch.testing.assert_close(_radon.backproject(filtered, geometry), cached, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", [name for name, cls in CORRUPTIONS.items()
                                    if cls.group in ("ct", "ultrasound", "microscopy")])
def test_modality_families_cite_their_physics_and_state_normalisation(family):
    cls = CORRUPTIONS[family]
    doc = cls.__doc__
    assert "doi.org/" in doc or "https://" in doc or "ISBN" in doc, family
    assert "Normalisation:" in doc, family
    # As test_catalogue checks for the families it can run on grey phantoms (he_stain needs RGB).
    assert cls.summary and "\n" not in cls.summary and len(cls.table.meanings) == 5


def _cylinder_30cm() -> tuple[torch.Tensor, torch.Tensor]:
    """A 30 cm water cylinder: radius 50 pixels of 3 mm."""
    return water_cylinder(size=128, radius=50.0)


def test_cupping_depths_and_centre_values_are_the_ones_the_levels_state():
    """Each level's meaning states the cupping depth (rim minus centre) and the centre's HU in a 30 cm water
    cylinder; the docs (docs/cli.md) state the range. Before #29 they were understated by 15 % to 2x."""
    phantom, distance = _cylinder_30cm()
    stated = {1: (8, -15), 2: (20, -37), 3: (41, -74), 4: (81, -147), 5: (142, -258)}
    table = CORRUPTIONS["ct_cupping"].table
    for severity, (depth, centre_hu) in stated.items():
        assert f"~{depth} HU" in table.meanings[severity - 1] and f"~{centre_hu} HU" in table.meanings[severity - 1]
        out = get_corruption("ct_cupping", severity=severity)(phantom, (3.0, 3.0))[0]
        centre = float(out[distance < 6].mean())
        rim = float(out[(distance > 42) & (distance < 47)].mean())
        assert rim - centre == pytest.approx(depth, rel=0.05)
        assert centre == pytest.approx(centre_hu, rel=0.05)


def test_metal_insert_reads_the_stated_share_of_its_true_hu():
    """The docstring and docs/cli.md: the insert reads 30-60 % of ``metal_hu`` (its own beam hardening);
    the issue measured ~60 % against a stated 100 %."""
    phantom, _ = water_cylinder(size=256, radius=100.0)  # 1.5 mm pixels: 30 cm
    centre = (256 - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(256) - centre, torch.arange(256) - centre, indexing="ij")
    shares = []
    for severity in range(1, 6):
        for seed in range(3):
            corruption = get_corruption("ct_metal", severity=severity)
            params = corruption.sample_parameters(phantom, (1.5, 1.5), torch.Generator().manual_seed(seed))
            out = corruption.apply(phantom, params, (1.5, 1.5))[0]
            inside = ((cols * 1.5 - params["x_mm"]) ** 2 + (-rows * 1.5 - params["y_mm"]) ** 2).sqrt() \
                < params["radius_mm"] - 1.5
            shares.append(float(out[inside].mean()) / params["metal_hu"])
    assert "30-60 %" in CORRUPTIONS["ct_metal"].__doc__
    assert 0.3 <= min(shares) and max(shares) <= 0.6, shares

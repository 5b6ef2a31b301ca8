"""Properties every family must have: graded severity, determinism, untouched label/shape/dtype,
correct intensity scaling, multi-channel and nnU-Net 2D layouts, and clear input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunet_robustness.corruptions import get_corruption, intensity_reference
from nnunet_robustness.errors import UserInputError
from tests.corruptions.phantoms import ABSOLUTE_SCALE, FAMILIES, SEED_FREE, phantom, spacing_for
from tests.helpers.tolerance import assert_equal_up_to_rounding

SEEDS = (0, 1, 2)


def distortion(corrupted: torch.Tensor, clean: torch.Tensor) -> float:
    """Root-mean-square change, in units of the clean image's robust range (a normalised RMSE)."""
    span = intensity_reference(clean.float()).span[0]
    return float(torch.sqrt(torch.mean((corrupted.float() - clean.float()) ** 2)) / span)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("family", FAMILIES)
def test_distortion_grows_strictly_with_severity(family, ndim):
    image, label = phantom(ndim, family)
    levels = []
    for severity in range(1, 6):
        corruption = get_corruption(family, severity=severity)
        levels.append(np.mean([distortion(corruption(image, spacing_for(ndim), seed=seed, label=label), image)
                               for seed in SEEDS]))
    assert levels[0] > 1e-4, f"level 1 of {family} does nothing: {levels}"
    assert all(b > a for a, b in zip(levels, levels[1:])), f"{family} {ndim}D not monotone: {levels}"


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_gives_bit_identical_output_and_seeds_matter(family):
    image, label = phantom(3, family)
    corruption = get_corruption(family, severity=3)
    first = corruption(image, spacing_for(3), seed=7, label=label)
    again = get_corruption(family, severity=3)(image, spacing_for(3), seed=7, label=label)
    assert torch.equal(first, again)
    # Some families only draw a direction (gamma, brightness): look at several seeds.
    others = [corruption(image, spacing_for(3), seed=seed, label=label) for seed in range(8, 14)]
    assert all(torch.equal(first, other) for other in others) == (family in SEED_FREE)


def test_sampling_never_touches_the_global_rng():
    image, label = phantom(2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for family in FAMILIES:
        get_corruption(family, severity=2)(image, spacing_for(2), seed=0, label=label)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_then_apply_equals_call(family):
    image, label = phantom(2, family)
    before = image.clone()
    corruption = get_corruption(family, severity=4)
    params = corruption.sample_parameters(image, spacing_for(2), torch.Generator().manual_seed(3))
    assert torch.equal(corruption.apply(image, params, spacing_for(2), label),
                       corruption(image, spacing_for(2), seed=3, label=label))
    assert torch.equal(image, before)  # float32 input is not copied, so it must never be written to


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int16, np.uint8, np.uint16])
@pytest.mark.parametrize("family", FAMILIES)
def test_type_shape_dtype_and_label_are_preserved(family, dtype):
    image, label = phantom(2, family, low=0.0, high=200.0)
    if np.issubdtype(dtype, np.signedinteger):  # CT-like: HU with air at -1000
        image, label = phantom(2, family, low=-1000.0, high=1500.0)
    image_np = image.numpy().astype(dtype)
    label_np = label.numpy().astype(np.uint8)
    label_before, image_before = label_np.copy(), image_np.copy()

    out = get_corruption(family, severity=5)(image_np, spacing=(0.8, 0.8), seed=0, label=label_np)

    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == image_np.shape
    assert np.array_equal(label_np, label_before) and np.array_equal(image_np, image_before)
    assert not np.array_equal(out, image_np)
    if np.issubdtype(dtype, np.floating):
        assert np.isfinite(out).all()

    tensor_out = get_corruption(family, severity=5)(torch.from_numpy(image_np.astype(np.float32)),
                                                    spacing=(0.8, 0.8), seed=0, label=torch.from_numpy(label_np))
    assert isinstance(tensor_out, torch.Tensor) and tensor_out.dtype == torch.float32


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in ABSOLUTE_SCALE])
def test_level_means_the_same_on_any_intensity_scale(family):
    """Affine equivariance: corrupting ``a * x + b`` gives ``a * corrupt(x) + b``. So level 3 is the same
    degradation on an MR in arbitrary units (x), on HU (b = -1000) and on 0-255 images."""
    image, label = phantom(3, family)
    scale, offset = 25.0, -1000.0
    plain = get_corruption(family, severity=3)(image.double(), spacing_for(3), seed=4, label=label)
    shifted = get_corruption(family, severity=3)(image.double() * scale + offset, spacing_for(3), seed=4, label=label)
    mismatch = (shifted - (plain * scale + offset)).abs() > 1e-3 * scale * 100
    # Poisson draws near a rate boundary may flip for float-rounded rates; allow a handful.
    allowed = 2e-3 * image.numel() if family == "poisson_noise" else 0
    assert int(mismatch.sum()) <= allowed


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in ABSOLUTE_SCALE])
def test_multi_channel_inputs_are_corrupted_per_channel_at_their_own_scale(family):
    mr, label = phantom(3, family, low=0.0, high=900.0)
    ct, _ = phantom(3, family, low=-1000.0, high=1200.0)
    rgb, _ = phantom(3, family, low=0.0, high=255.0)
    stacked = torch.cat([mr, ct, rgb])
    out = get_corruption(family, severity=4)(stacked, spacing_for(3), seed=0, label=label)
    assert out.shape == stacked.shape
    per_channel = [distortion(out[c:c + 1], stacked[c:c + 1]) for c in range(3)]
    assert min(per_channel) > 0.2 * max(per_channel), per_channel  # same relative severity on each
    if family in SEED_FREE:  # no randomness: each channel as if corrupted alone, up to the FFT's rounding
        for c in range(3):  # (a 3-channel transform splits its work over threads unlike a 1-channel one)
            alone = get_corruption(family, severity=4)(stacked[c:c + 1], spacing_for(3), seed=0, label=label)
            assert_equal_up_to_rounding(out[c:c + 1], alone)


@pytest.mark.parametrize("family", FAMILIES)
def test_nnunet_2d_layout_with_a_singleton_axis_is_treated_as_2d(family):
    image, label = phantom(2, family)
    as_nnunet = image.unsqueeze(1)  # (C, 1, X, Y) with nnU-Net's dummy spacing 999
    out = get_corruption(family, severity=3)(as_nnunet, spacing=(999.0, 1.0, 1.0), seed=0, label=label[None])
    plain = get_corruption(family, severity=3)(image, spacing=(1.0, 1.0), seed=0, label=label)
    assert out.shape == as_nnunet.shape
    assert torch.equal(out[:, 0], plain)


def test_gaussian_blur_is_spacing_aware():
    """The same sigma in mm on a grid with twice the spacing is half the sigma in voxels."""
    image, _ = phantom(3)
    blur = get_corruption("gaussian_blur", sigma_mm=2.0)
    fine = blur.sample_parameters(image, (1.0, 1.0, 1.0), torch.Generator())
    coarse = blur.sample_parameters(image, (2.0, 1.0, 0.5), torch.Generator())
    assert fine["sigma_voxels"] == [2.0, 2.0, 2.0] and coarse["sigma_voxels"] == [1.0, 2.0, 4.0]


def test_anisotropy_uses_the_coarsest_axis_and_box_averages_slabs():
    image, _ = phantom(3)
    corruption = get_corruption("anisotropy", slice_thickness_mm=4.0)
    params = corruption.sample_parameters(image, (1.0, 2.0, 1.0), torch.Generator())
    assert params["axis"] == 1 and params["factor"] == 2.0
    # A linear ramp along the axis is reproduced exactly by box averaging + linear interpolation
    # (away from the ends, where the outermost slab centre is held).
    ramp = torch.arange(32, dtype=torch.float32).view(1, 32, 1, 1).expand(1, 32, 4, 4).contiguous()
    out = get_corruption("anisotropy", slice_thickness_mm=4.0, axis=0)(ramp, (1.0, 1.0, 1.0))
    torch.testing.assert_close(out[:, 2:30], ramp[:, 2:30])


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.8, 0.8), (5.0, 1.0, 1.0)])
def test_slice_thickness_is_relative_to_the_native_spacing_and_never_a_no_op(spacing):
    """Severity 1 thickens the coarsest axis by the same factor on 1 mm, 3 mm and 5 mm data (an absolute
    2 mm thickness would have left 3 mm and 5 mm series unchanged)."""
    image, _ = phantom(3)
    corruption = get_corruption("anisotropy", severity=1)
    params = corruption.sample_parameters(image, spacing, torch.Generator().manual_seed(0))
    assert params["axis"] == int(np.argmax(spacing)) and params["factor"] == pytest.approx(1.5)
    assert not torch.equal(corruption(image, spacing), image)
    with pytest.raises(UserInputError, match="not thicker"):  # an absolute thickness is checked, not ignored
        get_corruption("anisotropy", slice_thickness_mm=max(spacing))(image, spacing)


# --- errors ------------------------------------------------------------------------------------------

def test_nan_and_inf_inputs_are_rejected():
    image, _ = phantom(2)
    for bad in (float("nan"), float("inf")):
        broken = image.clone()
        broken[0, 3, 4] = bad
        with pytest.raises(UserInputError, match="1 NaN or Inf"):
            get_corruption("gaussian_noise", severity=1)(broken, spacing_for(2))


@pytest.mark.parametrize("shape", [(64, 64), (1, 2, 3, 4, 5), (1, 1, 1, 30), (1, 1, 30)])
def test_wrong_dimensionality_is_rejected(shape):
    with pytest.raises(UserInputError, match="shape"):
        get_corruption("gaussian_blur", severity=1)(torch.zeros(shape), spacing=(1.0,) * (len(shape) - 1))


@pytest.mark.parametrize("spacing,match", [((1.0,), "has 1 values"), ((1.0, -1.0), "finite and positive"),
                                           ((1.0, float("nan")), "finite and positive"), ("ab", "sequence")])
def test_bad_spacing_is_rejected(spacing, match):
    image, _ = phantom(2)
    with pytest.raises(UserInputError, match=match):
        get_corruption("gaussian_blur", severity=1)(image, spacing)


def test_bad_label_dtype_and_type_are_rejected():
    image, label = phantom(2)
    with pytest.raises(UserInputError, match="label shape"):
        get_corruption("background_blur", severity=1)(image, spacing_for(2), label=label[:10])
    with pytest.raises(UserInputError, match="dtype"):
        get_corruption("gaussian_noise", severity=1)(image > 0, spacing_for(2))
    with pytest.raises(UserInputError, match="torch.Tensor or numpy.ndarray"):
        get_corruption("gaussian_noise", severity=1)(image.tolist(), spacing_for(2))
    with pytest.raises(UserInputError, match="seed must be an int"):
        get_corruption("gaussian_noise", severity=1)(image, spacing_for(2), seed=1.5)


def test_intensity_levels_do_not_depend_on_field_of_view_padding():
    """The issue's CT case: Gaussian noise at severity 3 was 50 HU without padding and 100 HU with -3024
    padding around the field of view. The padding value is now left out of the intensity reference."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 40)] * 3, indexing="ij"))
    body = np.sqrt((grid ** 2).sum(0)) < 0.8
    ct = np.where(body, 40 + rng.normal(0, 20, body.shape), -1000 + rng.normal(0, 20, body.shape)).astype(np.float32)
    padded = np.full((64, 64, 64), -3024.0, np.float32)
    padded[12:52, 12:52, 12:52] = ct
    noise = get_corruption("gaussian_noise", severity=3)
    sigma = [float((noise(image[None], (1.0,) * 3, seed=0) - image[None]).std()) for image in (ct, padded)]
    assert sigma[1] == pytest.approx(sigma[0], rel=0.02)

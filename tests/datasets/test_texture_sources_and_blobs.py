from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nnunet_robustness.datasets.blobs import random_blob_mask
from nnunet_robustness.datasets.texture_sources import TEXTURES, format_texture_list, get_texture
from nnunet_robustness.errors import UserInputError

PHOTOS = ("brick", "grass", "gravel")


def test_the_issue_textures_exist_with_their_dimensions():
    assert set(PHOTOS) <= set(TEXTURES)
    for name in PHOTOS:
        assert TEXTURES[name].dimensions == (2,)
    procedural = [s for s in TEXTURES.values() if s.name not in PHOTOS]
    assert len(procedural) >= 3 and all(s.dimensions == (2, 3) for s in procedural)
    listing = format_texture_list()
    for name, source in TEXTURES.items():
        assert name in listing and source.description in listing


@pytest.mark.parametrize("name", sorted(TEXTURES))
def test_every_texture_is_seeded_and_in_unit_range(name):
    shape = (48, 40)  # not square: catches swapped axes
    first = TEXTURES[name].sample(shape, np.random.default_rng(1))
    again = TEXTURES[name].sample(shape, np.random.default_rng(1))
    other = TEXTURES[name].sample(shape, np.random.default_rng(2))
    assert first.shape == shape
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= 0 and first.max() <= 1
    # the 1st..99th percentile rescaling spreads every texture over most of [0, 1]
    assert np.percentile(first, 99) - np.percentile(first, 1) > 0.9


@pytest.mark.parametrize("name", [n for n in sorted(TEXTURES) if n not in PHOTOS])
def test_procedural_textures_exist_in_3d(name):
    volume = TEXTURES[name].sample((12, 20, 16), np.random.default_rng(0))
    assert volume.shape == (12, 20, 16)
    # a real 3D field varies along the first axis too, it is not one slice repeated
    assert volume.std(axis=0).mean() > 0.05


def test_photos_larger_than_the_photograph_are_tiled():
    big = get_texture("brick", 2).sample((600, 300), np.random.default_rng(0))
    assert big.shape == (600, 300)


def test_gabor_orientation_is_along_the_named_direction():
    # gabor-0 has its wave vector along the columns: grey values change fastest from column to column
    stripes = get_texture("gabor-0", 2).sample((64, 64), np.random.default_rng(0))
    along_columns = np.abs(np.diff(stripes, axis=1)).mean()
    along_rows = np.abs(np.diff(stripes, axis=0)).mean()
    assert along_columns > 2 * along_rows


def test_unknown_or_wrong_dimension_textures_are_user_errors():
    with pytest.raises(UserInputError, match="unknown texture 'marble'.*brick"):
        get_texture("marble", 2)
    with pytest.raises(UserInputError, match="'grass' is not available in 3D.*noise-fine"):
        get_texture("grass", 3)


@pytest.mark.parametrize("shape", [(64, 64), (40, 56), (32, 32, 32)])
def test_single_blob_is_one_solid_body_of_the_requested_size(shape):
    rng = np.random.default_rng(3)
    for _ in range(5):
        mask = random_blob_mask(shape, 1, (0.4, 0.6), rng)
        assert mask.shape == shape and mask.dtype == bool
        _, components = ndimage.label(mask)
        assert components == 1
        assert np.array_equal(ndimage.binary_fill_holes(mask), mask)  # closed curve, no holes
        # bounding box: at most ~1.6 x the nominal maximum diameter, at least ~0.3 x the minimum
        extent = [idx.max() - idx.min() + 1 for idx in np.nonzero(mask)]
        assert max(extent) <= 1.6 * 0.6 * min(shape) + 2
        assert max(extent) >= 0.3 * 0.4 * min(shape)


def test_blob_size_follows_the_diameter_range():
    rng = np.random.default_rng(0)
    small = [random_blob_mask((96, 96), 1, (0.15, 0.2), rng).sum() for _ in range(8)]
    large = [random_blob_mask((96, 96), 1, (0.5, 0.6), rng).sum() for _ in range(8)]
    assert max(small) < min(large)


def test_several_blobs_and_determinism():
    masks = [random_blob_mask((64, 64), 4, (0.15, 0.25), np.random.default_rng(seed)) for seed in (5, 5, 6)]
    np.testing.assert_array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[0], masks[2])
    assert 1 < ndimage.label(masks[0])[1] <= 4

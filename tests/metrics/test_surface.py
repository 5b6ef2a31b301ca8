"""Surface metrics against DeepMind's surface-distance (the pinned reference implementation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

surface_distance = pytest.importorskip("surface_distance")
from surface_distance import lookup_tables  # noqa: E402

from nnunet_robustness.metrics import surface  # noqa: E402
from nnunet_robustness.metrics.surface import (  # noqa: E402
    average_symmetric_surface_distance,
    normalized_surface_dice,
    robust_hausdorff,
    surface_distances,
    surfel_area_table,
)

TOLERANCE_MM = 1e-6
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance.*")


def _reference_values(a: np.ndarray, b: np.ndarray, spacing, tolerances) -> dict[str, float]:
    distances = surface_distance.compute_surface_distances(a, b, spacing)
    return {
        "hd95": surface_distance.compute_robust_hausdorff(distances, 95),
        "hd100": surface_distance.compute_robust_hausdorff(distances, 100),
        "hd50": surface_distance.compute_robust_hausdorff(distances, 50),
        "assd": float(np.mean(surface_distance.compute_average_surface_distance(distances))),
        **{f"nsd@{t}": surface_distance.compute_surface_dice_at_tolerance(distances, t) for t in tolerances},
    }


def _our_values(a: np.ndarray, b: np.ndarray, spacing, tolerances) -> dict[str, float]:
    distances = surface_distances(a, b, spacing)
    return {
        "hd95": robust_hausdorff(distances, 95), "hd100": robust_hausdorff(distances, 100),
        "hd50": robust_hausdorff(distances, 50), "assd": average_symmetric_surface_distance(distances),
        **{f"nsd@{t}": normalized_surface_dice(distances, t) for t in tolerances},
    }


def _random_pair(rng: np.random.Generator, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    shape = tuple(int(s) for s in rng.integers(6, 26, ndim))
    seeds = rng.random(shape) > 0.96
    a = ndimage.binary_dilation(seeds, iterations=int(rng.integers(1, 3)))
    if rng.random() < 0.5:  # a prediction close to the reference, sharing most of its surface
        b = a.copy()
        b[tuple(slice(int(rng.integers(0, s // 2)), None) for s in shape)] &= rng.random() < 0.5
        b |= ndimage.binary_dilation(rng.random(shape) > 0.99)
    else:
        b = ndimage.binary_dilation(rng.random(shape) > 0.96, iterations=int(rng.integers(1, 3)))
    a[tuple(rng.integers(0, s) for s in shape)] = True  # never empty
    b[tuple(rng.integers(0, s) for s in shape)] = True
    return a, b


@pytest.mark.parametrize("search", ["kd-tree", "distance-transform"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_random_masks_match_surface_distance(ndim: int, search: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both nearest-surface searches, whichever the cost model would pick for these sizes.
    monkeypatch.setattr(surface, "_prefer_distance_transform", lambda *_: search == "distance-transform")
    rng = np.random.default_rng(ndim)
    spacings = [0.5, 0.7, 1.0, 1.3, 2.5, 3.0]
    for _ in range(25):
        a, b = _random_pair(rng, ndim)
        spacing = tuple(float(s) for s in rng.choice(spacings, ndim))
        # Tolerances equal to distances that occur on the grid (ties with "<=") and in between.
        tolerances = (0.0, spacing[0], 1.0, float(np.hypot(spacing[0], spacing[-1])), 2.0)
        expected = _reference_values(a, b, spacing, tolerances)
        actual = _our_values(a, b, spacing, tolerances)
        for name, value in expected.items():
            assert actual[name] == pytest.approx(value, abs=TOLERANCE_MM), (name, spacing, a.shape)


def test_anisotropic_shift_has_the_expected_distances() -> None:
    # A box and the same box moved by 2 voxels along axis 0 (2.5 mm voxels): the moved faces are 5 mm
    # apart, the side faces overlap; nothing is further than 5 mm.
    a = np.zeros((16, 12, 12), bool)
    a[4:10, 3:9, 3:9] = True
    b = np.roll(a, 2, axis=0)
    distances = surface_distances(a, b, (2.5, 0.8, 0.8))
    assert robust_hausdorff(distances, 100) == pytest.approx(5.0)
    assert robust_hausdorff(distances, 95) == pytest.approx(5.0)
    assert normalized_surface_dice(distances, 5.0) == pytest.approx(1.0)
    assert 0 < normalized_surface_dice(distances, 1.0) < 1
    # The same shift along a 0.8 mm axis is 1.6 mm.
    c = np.roll(a, 2, axis=1)
    assert robust_hausdorff(surface_distances(a, c, (2.5, 0.8, 0.8)), 100) == pytest.approx(1.6)


def test_identical_masks_touching_the_border() -> None:
    a = np.zeros((5, 7, 6), bool)
    a[:3, 2:, :] = True  # touches three faces of the image
    distances = surface_distances(a, a.copy(), (1.0, 2.0, 3.0))
    assert robust_hausdorff(distances) == 0.0
    assert average_symmetric_surface_distance(distances) == 0.0
    assert normalized_surface_dice(distances, 0.0) == 1.0
    expected = surface_distance.compute_surface_distances(a, a.copy(), (1.0, 2.0, 3.0))
    assert distances.reference_areas.sum() == pytest.approx(expected["surfel_areas_gt"].sum(), rel=1e-12)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.8, 1.1), (0.3, 4.0, 1.7)])
def test_surfel_area_table_matches_surface_distance(spacing) -> None:
    np.testing.assert_allclose(surfel_area_table(spacing),
                               _reindexed(lookup_tables.create_table_neighbour_code_to_surface_area(spacing), 3),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.5, 0.8)])
def test_contour_length_table_matches_surface_distance(spacing) -> None:
    np.testing.assert_allclose(surfel_area_table(spacing),
                               _reindexed(lookup_tables.create_table_neighbour_code_to_contour_length(spacing), 2),
                               rtol=1e-12)


def _reindexed(table: np.ndarray, ndim: int) -> np.ndarray:
    """surface-distance codes weight neighbourhood offset o with its kernel entry; ours with bit
    sum(o_k 2^(ndim-1-k)). Map their table onto our codes."""
    kernel = lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL if ndim == 3 else lookup_tables.ENCODE_NEIGHBOURHOOD_2D_KERNEL
    offsets = list(np.ndindex(*(2,) * ndim))
    ours = np.zeros(2 ** len(offsets))
    for code in range(len(ours)):
        theirs = sum(int(kernel[o]) for bit, o in enumerate(offsets) if (code >> bit) & 1)
        ours[code] = table[theirs]
    return ours


def test_empty_mask_is_rejected() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    b[1, 1, 1] = True
    with pytest.raises(ValueError, match="non-empty"):
        surface_distances(a, b, (1, 1, 1))

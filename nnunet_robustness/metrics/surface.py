"""Surface distances between two binary masks, in mm, with area-weighted surface elements.

The surface convention is the one of DeepMind's ``surface-distance`` package (Nikolov et al. 2021,
"Clinically applicable segmentation of head and neck anatomy for radiotherapy", J Med Internet Res
23(7):e26151), so that HD95, ASSD and the normalised surface Dice (NSD) computed here agree with it:

* Surface points sit on the corners of the voxel grid. A corner belongs to a mask's surface when
  its 2x2x2 neighbourhood of voxels (2x2 in 2D) contains both foreground and background voxels;
  voxels outside the image count as background, so masks touching the image border are closed.
* Each surface point carries the area (mm^2; contour length in mm for 2D images) of the
  marching-cubes (marching-squares) surface inside its neighbourhood cube. Percentiles, means and
  overlaps are weighted by these areas, so a surface sampled more densely along one axis of an
  anisotropic grid does not count more.
* The distance from a surface point to the other surface is the Euclidean distance (mm, from the
  voxel spacing) to the nearest surface point of the other mask, computed with the same floating
  point expression as ``scipy.ndimage.distance_transform_edt`` uses.

The implementation is ours: neighbourhood codes by array slicing, distance 0 for points on both
surfaces, nearest neighbours of the remaining points with a k-d tree over the surface points only (or,
when the surface points are many for the bounding box, one distance transform of it), and a
surfel-area table generated on first use from scikit-image's Lorensen marching cubes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances (mm) from every surface element of one mask to the other mask's surface, with the
    element areas (mm^2 in 3D, mm of contour in 2D). Both masks must be non-empty."""

    reference_to_prediction: np.ndarray
    reference_areas: np.ndarray
    prediction_to_reference: np.ndarray
    prediction_areas: np.ndarray


def check_pair(reference_shape: Sequence[int], prediction_shape: Sequence[int],
               spacing: Sequence[float]) -> tuple[float, ...]:
    """Two masks of one shape, 2D or 3D, with one spacing per axis (the spacing as floats), else ValueError;
    the NumPy and the torch surface distances refuse the same inputs with the same words."""
    reference_shape, prediction_shape = tuple(reference_shape), tuple(prediction_shape)
    if reference_shape != prediction_shape:
        raise ValueError(f"masks have different shapes {reference_shape} and {prediction_shape}")
    if len(reference_shape) not in (2, 3) or len(spacing) != len(reference_shape):
        raise ValueError(f"need 2D or 3D masks with one spacing per axis, got shape {reference_shape} "
                         f"and spacing {tuple(spacing)}")
    return tuple(float(s) for s in spacing)


def surface_distances(reference: np.ndarray, prediction: np.ndarray,
                      spacing: Sequence[float]) -> SurfaceDistances:
    """Surface elements of both masks and their distances to the other surface.

    ``reference`` and ``prediction`` are boolean 2D or 3D arrays of the same shape, ``spacing`` the
    voxel size in mm per axis. Raises ``ValueError`` when a mask is empty (its surface is empty and
    distances to it are undefined: the caller decides the policy, see ``metrics.compare_masks``).
    """
    reference = np.asarray(reference, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    spacing = check_pair(reference.shape, prediction.shape, spacing)
    crop = _bounding_box(reference | prediction)
    if crop is None or not reference.any() or not prediction.any():
        raise ValueError("surface distances need two non-empty masks")
    reference_surface, reference_areas_grid = _surface(reference[crop], spacing)
    prediction_surface, prediction_areas_grid = _surface(prediction[crop], spacing)
    reference_points = np.stack(np.nonzero(reference_surface))
    prediction_points = np.stack(np.nonzero(prediction_surface))
    return SurfaceDistances(
        reference_to_prediction=_nearest_distances(reference_points, prediction_points, prediction_surface, spacing),
        reference_areas=reference_areas_grid[reference_surface],
        prediction_to_reference=_nearest_distances(prediction_points, reference_points, reference_surface, spacing),
        prediction_areas=prediction_areas_grid[prediction_surface],
    )


def robust_hausdorff(distances: SurfaceDistances, percentile: float = 95.0) -> float:
    """Symmetric robust Hausdorff distance (mm): the larger of the two directed, area-weighted
    ``percentile``-th percentiles (HD95 for 95), as ``surface_distance.compute_robust_hausdorff``."""
    return max(_weighted_percentile(distances.reference_to_prediction, distances.reference_areas, percentile),
               _weighted_percentile(distances.prediction_to_reference, distances.prediction_areas, percentile))


def average_symmetric_surface_distance(distances: SurfaceDistances) -> float:
    """ASSD (mm): mean of the two directed area-weighted average surface distances (reference to
    prediction, prediction to reference), i.e. ``mean(compute_average_surface_distance(...))``."""
    forward = np.sum(distances.reference_to_prediction * distances.reference_areas) / np.sum(distances.reference_areas)
    backward = (np.sum(distances.prediction_to_reference * distances.prediction_areas)
                / np.sum(distances.prediction_areas))
    return float((forward + backward) / 2.0)


def normalized_surface_dice(distances: SurfaceDistances, tolerance_mm: float) -> float:
    """NSD at ``tolerance_mm`` (Nikolov et al. 2021): the area of both surfaces lying within the
    tolerance of the other surface, divided by the total area of both surfaces."""
    within = (np.sum(distances.reference_areas[distances.reference_to_prediction <= tolerance_mm])
              + np.sum(distances.prediction_areas[distances.prediction_to_reference <= tolerance_mm]))
    return float(within / (np.sum(distances.reference_areas) + np.sum(distances.prediction_areas)))


# --- surface elements --------------------------------------------------------------------------------

def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    slices = []
    for axis in range(mask.ndim):
        projection = np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis))
        nonzero = np.flatnonzero(projection)
        if nonzero.size == 0:
            return None
        slices.append(slice(int(nonzero[0]), int(nonzero[-1]) + 1))
    return tuple(slices)


def _neighbourhood_codes(mask: np.ndarray) -> np.ndarray:
    """Code of every grid corner: bit ``sum(offset_k * 2**(ndim-1-k))`` set when the voxel at that
    offset of the corner's 2^ndim neighbourhood is foreground. Corners span one voxel beyond the mask
    on every side, where the zero padding stands for the background outside the image."""
    padded = np.pad(mask.astype(np.uint8), 1)
    corners = tuple(n - 1 for n in padded.shape)
    codes = np.zeros(corners, np.uint8)
    for bit, offset in enumerate(np.ndindex(*(2,) * mask.ndim)):
        window = tuple(slice(o, o + n) for o, n in zip(offset, corners))
        codes |= padded[window] << bit
    return codes


def _surface(mask: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Which grid corners lie on the mask's surface, and the surface area around every corner."""
    codes = _neighbourhood_codes(mask)
    full = (1 << (2 ** mask.ndim)) - 1
    return (codes != 0) & (codes != full), surfel_area_table(spacing)[codes]


def _nearest_distances(points: np.ndarray, other_points: np.ndarray, other_surface: np.ndarray,
                       spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) from each point (integer corner coordinates, shape (ndim, n)) to the nearest of
    ``other_points``; ``other_surface`` is the same set as a boolean grid."""
    distances = np.zeros(points.shape[1])
    # Where the surfaces coincide (most of them, for good predictions) the distance is 0: only the
    # other points need a search.
    away = ~other_surface[tuple(points)]
    if not away.any():
        return distances
    points = points[:, away]
    scale = np.asarray(spacing)
    if _prefer_distance_transform(points, other_points, other_surface.size):
        indices = ndimage.distance_transform_edt(~other_surface, sampling=spacing, return_distances=False,
                                                 return_indices=True)
        nearest_points = indices[(slice(None), *points)]
    else:
        tree = cKDTree(other_points.T * scale, leafsize=32, balanced_tree=False, compact_nodes=False)
        _, nearest = tree.query(points.T * scale, k=1)
        nearest_points = other_points[:, nearest]
    # Recompute from integer offsets, in scipy's distance-transform order, so that distances equal
    # to a tolerance compare the same way as in surface-distance (which uses that transform).
    offsets = (nearest_points - points).astype(np.float64)
    offsets *= scale[:, None]
    np.multiply(offsets, offsets, out=offsets)
    distances[away] = np.sqrt(np.add.reduce(offsets, axis=0))
    return distances


# Above this many voxels in the bounding box, the distance transform's index arrays (12 bytes per
# voxel) get too large to be worth it.
_MAX_TRANSFORM_VOXELS = 16 * 1024 ** 2


# A k-d tree query from outside the bounding box of the other surface visits many more nodes than
# one from near it (measured: about 8 times the cost per log2 of the tree size).
_FAR_QUERY_COST = 8.0


def _prefer_distance_transform(points: np.ndarray, other_points: np.ndarray, n_voxels: int) -> bool:
    """Pick the cheaper nearest-surface search. k-d tree queries cost about n_queries *
    log2(n_surface) (far queries ``_FAR_QUERY_COST`` times that), one distance transform of the
    bounding box about n_voxels, at about the same time per unit (~75 ns; benchmarks/bench_metrics.py).
    Scattered false-positive islands far from the reference are where the transform wins."""
    if n_voxels > _MAX_TRANSFORM_VOXELS:
        return False
    low, high = other_points.min(axis=1, keepdims=True), other_points.max(axis=1, keepdims=True)
    n_far = int(np.count_nonzero(((points < low) | (points > high)).any(axis=0)))
    weighted_queries = points.shape[1] - n_far + _FAR_QUERY_COST * n_far
    return weighted_queries * np.log2(max(other_points.shape[1], 2)) > n_voxels


def _weighted_percentile(distances: np.ndarray, areas: np.ndarray, percentile: float) -> float:
    # Order by (distance, area) and pick the first element whose cumulative area share reaches the
    # percentile; the same rule (and summation order) as surface-distance, so ties resolve alike.
    order = np.lexsort((areas, distances))
    cumulative = np.cumsum(areas[order]) / np.sum(areas)
    index = int(np.searchsorted(cumulative, percentile / 100.0))
    return float(distances[order][min(index, len(order) - 1)])


# --- surfel areas --------------------------------------------------------------------------------------

def surfel_area_table(spacing: Sequence[float]) -> np.ndarray:
    """Area (mm^2; contour length in mm for 2D) of the surface inside a corner's neighbourhood, for
    every neighbourhood code (256 in 3D, 16 in 2D) at this voxel spacing."""
    return _surfel_area_table(tuple(float(s) for s in spacing))


@lru_cache(maxsize=64)
def _surfel_area_table(spacing: tuple[float, ...]) -> np.ndarray:
    if len(spacing) == 2:
        return _contour_length_table(spacing)
    s0, s1, s2 = spacing
    # A triangle's area vector scales with the cofactor of the diagonal spacing matrix.
    cofactor = np.array([s1 * s2, s0 * s2, s0 * s1])
    table = np.array([np.linalg.norm(vectors * cofactor, axis=1).sum() for vectors in _unit_area_vectors()])
    table.setflags(write=False)
    return table


@lru_cache(maxsize=1)
def _unit_area_vectors() -> tuple[np.ndarray, ...]:
    """Per 3D code, the area vectors (area times unit normal) of its marching-cubes triangles on a
    unit grid."""
    from skimage.measure import marching_cubes

    vectors = []
    for code in range(256):
        # The surface between inside and outside corners is the same for a configuration and its
        # complement, but Lorensen's table triangulates some complements of ambiguous cases
        # differently; triangulating the side with fewer inside corners gives every pair one area.
        canonical = code if bin(code).count("1") <= 4 else 255 - code
        if canonical == 0:
            vectors.append(np.zeros((0, 3)))
            continue
        cube = np.zeros((2, 2, 2), np.float32)
        for bit, offset in enumerate(np.ndindex(2, 2, 2)):
            cube[offset] = (canonical >> bit) & 1
        vertices, faces, _, _ = marching_cubes(cube, 0.5, method="lorensen", allow_degenerate=True)
        triangles = vertices[faces].astype(np.float64)
        vectors.append(0.5 * np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]))
    return tuple(vectors)


def _contour_length_table(spacing: tuple[float, float]) -> np.ndarray:
    """Marching-squares contour length per 2D code: the contour joins the midpoints of the cell
    edges that separate inside from outside corners."""
    s0, s1 = spacing
    half_diagonal = 0.5 * math.hypot(s0, s1)
    table = np.zeros(16)
    for code in range(16):
        inside = [offset for bit, offset in enumerate(np.ndindex(2, 2)) if (code >> bit) & 1]
        if len(inside) in (1, 3):  # one corner cut off
            table[code] = half_diagonal
        elif len(inside) == 2:
            (a0, a1), (b0, b1) = inside
            if a0 == b0:  # two corners along axis 1: the contour crosses the cell along axis 1
                table[code] = s1
            elif a1 == b1:
                table[code] = s0
            else:  # diagonal pair (saddle): two separate corner cuts
                table[code] = 2 * half_diagonal
    table.setflags(write=False)
    return table

"""Random smooth closed foreground shapes ("blobs") for the synthetic texture datasets.

2D: a closed curve through 4-7 random control points, interpolated as a periodic cubic spline of the
radius over the polar angle (piecewise cubic, i.e. a chain of Bezier segments). Interpolating the
radius rather than x/y keeps the curve star-shaped, so it can never cross itself.
3D: a randomly rotated ellipsoid whose radius is modulated by a few smooth bumps on the sphere
(a "deformed ellipsoid"); also star-shaped around its centre.

Every blob is placed entirely inside the image; blobs may overlap (their union is the foreground).
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline


def random_blob_mask(shape: tuple[int, ...], num_blobs: int, diameter_range: tuple[float, float],
                     rng: np.random.Generator) -> np.ndarray:
    """Union of ``num_blobs`` random blobs in an array of ``shape`` (2 or 3 axes).

    ``diameter_range`` is the (min, max) nominal diameter as a fraction of the shortest image side;
    each blob's diameter is drawn uniformly from it. The result is a non-empty boolean mask.
    """
    mask = np.zeros(shape, dtype=bool)
    for _ in range(num_blobs):
        diameter = rng.uniform(*diameter_range) * min(shape)
        blob = _blob_2d(diameter, rng) if len(shape) == 2 else _blob_3d(diameter, rng)
        blob = _crop_to_content(blob)
        # a blob that overshoots a small image is cut to the image size, never dropped
        blob = blob[tuple(slice(0, min(b, s)) for b, s in zip(blob.shape, shape))]
        offsets = [int(rng.integers(s - b + 1)) for b, s in zip(blob.shape, shape)]
        mask[tuple(slice(o, o + b) for o, b in zip(offsets, blob.shape))] |= blob
    return mask


def _crop_to_content(mask: np.ndarray) -> np.ndarray:
    nonzero = np.nonzero(mask)
    return mask[tuple(slice(idx.min(), idx.max() + 1) for idx in nonzero)]


def _local_grid(radius_bound: float, ndim: int) -> list[np.ndarray]:
    """Pixel-centre coordinates relative to the centre of a box that holds a blob of that radius."""
    half = int(np.ceil(radius_bound)) + 1
    axis = np.arange(-half, half + 1, dtype=np.float64)
    return np.meshgrid(*([axis] * ndim), indexing="ij", sparse=True)


def _blob_2d(diameter: float, rng: np.random.Generator) -> np.ndarray:
    num_points = int(rng.integers(4, 8))
    # Evenly spaced angles with jitter: random points, but no two so close that the spline spikes.
    spacing = 2 * np.pi / num_points
    angles = np.arange(num_points) * spacing + rng.uniform(-0.35, 0.35, num_points) * spacing
    radii = rng.uniform(0.55, 1.0, num_points) * diameter / 2
    order = np.argsort(angles)
    angles, radii = angles[order], radii[order]
    spline = CubicSpline(np.append(angles, angles[0] + 2 * np.pi), np.append(radii, radii[0]),
                         bc_type="periodic")

    dense = np.linspace(angles[0], angles[0] + 2 * np.pi, 720)
    # A periodic cubic spline can undershoot between points; a floor keeps the blob fat everywhere.
    floor = 0.3 * diameter / 2
    rows, cols = _local_grid(max(spline(dense).max(), floor), 2)
    distance = np.hypot(rows, cols)
    angle = np.mod(np.arctan2(rows, cols) - angles[0], 2 * np.pi) + angles[0]
    return distance <= np.maximum(spline(angle), floor)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    # QR of a Gaussian matrix with the sign fix gives a uniformly random orthogonal matrix
    # (Mezzadri 2007, "How to generate random matrices from the classical compact groups").
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _blob_3d(diameter: float, rng: np.random.Generator) -> np.ndarray:
    semi_axes = rng.uniform(0.6, 1.0, 3) * diameter / 2
    rotation = _random_rotation(rng)
    bump_directions = rng.standard_normal((3, 3))
    bump_directions /= np.linalg.norm(bump_directions, axis=1, keepdims=True)
    # three bumps in [-0.2, 0.2] keep the radius factor within [0.4, 1.6]: deformed, never pinched off
    bump_heights = rng.uniform(-0.2, 0.2, 3)
    bump_sharpness = 4.0

    grid = _local_grid(1.6 * semi_axes.max(), 3)
    coords = np.stack(np.broadcast_arrays(*grid), axis=-1)  # (..., 3) pixel offsets from the centre
    body = coords @ rotation / semi_axes  # coordinates in the ellipsoid's own frame, unit sphere
    radius = np.linalg.norm(body, axis=-1)
    direction = body / np.maximum(radius, 1e-9)[..., None]
    modulation = 1.0 + sum(h * np.exp(bump_sharpness * (direction @ d - 1.0))
                           for h, d in zip(bump_heights, bump_directions))
    return radius <= modulation

"""Synthetic phantoms for the corruption tests: small (64^2, 32^3), smooth, with a labelled structure."""

from __future__ import annotations

import torch

from nnunet_robustness.corruptions import CORRUPTIONS

# Families that need a 3-channel RGB image are tested on RGB phantoms in their own modules.
RGB_ONLY = {"he_stain"}
FAMILIES = [family for family in CORRUPTIONS if family not in RGB_ONLY]
# Families whose output does not depend on the seed (no random parameters, no noise field).
SEED_FREE = {"gaussian_blur", "background_blur", "anisotropy", "contrast", "window_saturation", "gibbs_ringing",
             "ct_cupping", "us_shadowing", "jpeg_compression", "defocus_blur"}
# Families that read intensities in absolute units (HU, 8-bit, light intensity with 0 = dark), so a
# level is not the same after a * x + b; they declare it with the ``intensity_scale`` class attribute.
ABSOLUTE_SCALE = {family for family, cls in CORRUPTIONS.items()
                  if cls.intensity_scale != "relative"}
SHAPES = {2: (64, 64), 3: (32, 32, 32)}
# Families that act only on a structure the plain phantom lacks: us_shadowing casts shadows behind strong
# compact echoes and leaves an image without one unchanged, so its phantom carries a small bright
# reflector (a calcification) in the near half of the body.
NEEDS_REFLECTOR = {"us_shadowing"}


def make_phantom(shape: tuple[int, ...], low: float = 0.0, high: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A body ellipsoid with a smooth intensity gradient, a bright 'organ' (the label) and a dark
    'lesion', on a constant background ``low``. Returns image (1, *shape) float32 and label (*shape)."""
    axes = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = sum((a / r) ** 2 for a, r in zip(axes, (0.85, 0.75, 0.8)))
    organ = sum(((a - c) / r) ** 2 for a, c, r in zip(axes, (0.2, -0.1, 0.0), (0.3, 0.35, 0.4)))
    lesion = sum(((a - c) / 0.15) ** 2 for a, c in zip(axes, (-0.35, 0.25, 0.1)))
    body = (radius < 1).float()
    tissue = 0.45 + 0.1 * axes[0] + 0.05 * torch.cos(3 * axes[1])
    image = body * tissue + (organ < 1).float() * 0.45 - (lesion < 1).float() * 0.25 * body
    image = low + (high - low) * image
    return image.unsqueeze(0).float(), (organ < 1).long()


def phantom(ndim: int, family: str | None = None, **kwargs: float) -> tuple[torch.Tensor, torch.Tensor]:
    image, label = make_phantom(SHAPES[ndim], **kwargs)
    if family in NEEDS_REFLECTOR:
        high = kwargs.get("high", 100.0)
        size = SHAPES[ndim][0]
        box = (slice(size // 4, size // 4 + size // 10),  # along the beam (axis 0), proximal to the organ
               *[slice(n // 2 - n // 8, n // 2) for n in SHAPES[ndim][1:]])
        image[(0, *box)] = high  # above the organ's 0.9 and 0.55 of the range above the tissue
    return image, label


def spacing_for(ndim: int) -> tuple[float, ...]:
    return (1.0,) * ndim

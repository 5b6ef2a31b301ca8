"""The exact-zero background of masked images (skull-stripped MRI, cropped microscopy tiles), kept at zero.

nnU-Net crops every image to the box of its non-zero region and, where the planner found that this
shrinks the images (``use_mask_for_norm``), normalises inside that mask and sets everything outside to 0
(``preprocessing/cropping/cropping.py``, ``default_preprocessor.py``). A corruption that writes into an
exact-zero background therefore changes the crop box and flips the normalisation mask: gaussian noise at
1 % of the range changed the normalised input by RMS 1.08 on such a volume, against 0.03 from the noise
itself. Severity curves would measure that preprocessing artefact.

On such data the artefact happened at acquisition, before the background was stripped: corrupting the
whole image and then applying the same body mask again is the faithful emulation (the default of ``run``
and ``corrupt``, ``--background keep``). The mask is nnU-Net's own (``create_nonzero_mask``: non-zero in
any channel, holes filled), so nnU-Net crops the corrupted image to the clean image's box. On full-field
images (CT with air at -1000 HU, unmasked MRI) the mask covers everything and nothing changes.
``--background corrupt`` applies a family to every voxel, as before (recorded in run.json).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from nnunet_robustness.conditions import BACKGROUND_CHOICES, DEFAULT_BACKGROUND

Image = TypeVar("Image", np.ndarray, torch.Tensor)

__all__ = ["BACKGROUND_CHOICES", "DEFAULT_BACKGROUND", "body_mask", "keep_background"]


def body_mask(image: np.ndarray | torch.Tensor) -> np.ndarray | None:
    """nnU-Net's non-zero mask of a (C, *spatial) image, or None when it covers every voxel (nothing to keep)."""
    from nnunetv2.preprocessing.cropping.cropping import create_nonzero_mask

    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    mask = create_nonzero_mask(array)  # (C, X, Y) or (C, X, Y, Z), as nnU-Net's preprocessing calls it
    return None if mask.all() else mask


def keep_background(corrupted: Image, body: np.ndarray | None) -> Image:
    """``corrupted`` with every voxel outside ``body`` set back to exactly 0 (the scanner's masked zero)."""
    if body is None:
        return corrupted
    if isinstance(corrupted, torch.Tensor):
        inside = torch.from_numpy(np.ascontiguousarray(body)).to(corrupted.device)
        return torch.where(inside, corrupted, torch.zeros((), dtype=corrupted.dtype, device=corrupted.device))
    return np.where(body, corrupted, np.zeros((), dtype=corrupted.dtype)).astype(corrupted.dtype, copy=False)

"""What the model saw: how much a condition changed the image *after* the model's own normalisation.

nnU-Net normalises every channel before the network (``configuration_manager.normalization_schemes``:
z-score for MR and most modalities, a fixed clip-and-scale for CT, ...). A corruption that this
normalisation removes is not a robustness test: under z-scoring, ``a * x + b`` (a > 0) comes out
identical, so a "contrast" or "brightness" condition scores exactly like clean. The runner therefore
measures every item in the model's input space:

- the clean and the corrupted image go through nnU-Net's own preprocessing functions: ``crop_to_nonzero``
  (on a zero-background image the crop box and the mask that ``use_mask_for_norm`` normalises inside),
  then each channel's normalisation class from the plans with the dataset's foreground intensity
  properties; the cropped result is put back into the image's frame (0 outside the box, which the
  network never sees). Resampling is left out: it moves voxels, it does not change what the
  intensities say. So a brightness change is "cancelled" on a full-field image and is not on a
  skull-stripped one, where it moves the crop box (issue #29: the earlier measurement without the crop
  called it cancelled while the prediction changed in 8,979 voxels);
- the change is the SSIM (Wang et al., "Image quality assessment: from error visibility to structural
  similarity", IEEE TIP 13:600, 2004), computed by ``skimage.metrics.structural_similarity`` (7-voxel
  uniform window, data range of the clean normalised channel)
  and the relative L2 distance ``||n(corrupted) - n(clean)|| / ||n(clean)||``, averaged over channels.

A condition whose relative L2 change stays below ``CANCELLED_BELOW`` on every case is *cancelled by
the model's normalisation*: ``eval`` names it and leaves it out of robustness summaries and rankings.
The record of each item (:class:`~nnunet_robustness.records.input_change.InputChange`) and that
threshold live in :mod:`nnunet_robustness.records.input_change`, which ``eval`` reads without skimage.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.records.input_change import InputChange

SSIM_WINDOW = 7


class ModelInputSpace:
    """The per-channel normalisation of a trained model, applied as nnU-Net's preprocessor applies it.

    ``plans_manager``/``configuration_manager`` are nnU-Net's (the predictor has both after
    ``initialize_from_trained_model_folder``).
    """

    def __init__(self, plans_manager: Any, configuration_manager: Any) -> None:
        from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

        self.plans_manager = plans_manager
        self.configuration_manager = configuration_manager
        self.schemes: list[str] = list(configuration_manager.normalization_schemes)
        self._preprocessor = DefaultPreprocessor(verbose=False)

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """``image`` (C, *spatial) as raw intensities -> float32 in the network's intensity space, through
        nnU-Net's own preprocessing functions: ``crop_to_nonzero`` (the box of the non-zero mask, the mask
        as the normalisation's segmentation), then each channel's normaliser with ``use_mask_for_norm``.
        The cropped result goes back into the image's frame at its box with 0 outside, where nnU-Net's
        network sees nothing: a corruption that moves the crop box shows up as changed input."""
        from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero

        if len(self.schemes) != image.shape[0]:
            raise UserInputError(f"the model normalises {len(self.schemes)} channel(s), the image has "
                                 f"{image.shape[0]}")
        data = np.array(image, dtype=np.float32)  # a copy: nnU-Net's normalisers work in place
        cropped, seg, box = crop_to_nonzero(data)
        normalised = self._preprocessor._normalize(np.ascontiguousarray(cropped), seg, self.configuration_manager,
                                                   self.plans_manager.foreground_intensity_properties_per_channel)
        frame = np.zeros_like(data)
        frame[(slice(None), *(slice(low, high) for low, high in box))] = normalised
        return frame

    def cancelled_families(self, families: Any) -> list[str]:
        """The families whose change this model's normalisation removes by construction (each family
        says which normalisation schemes cancel it, ``Corruption.cancelled_by``)."""
        from nnunet_robustness.corruptions import CORRUPTIONS

        return [f for f in dict.fromkeys(families) if f in CORRUPTIONS
                and set(self.schemes) <= CORRUPTIONS[f].cancelled_by]

    def change(self, clean_normalised: np.ndarray, corrupted: np.ndarray) -> InputChange:
        """How much ``corrupted`` (raw) differs from the clean image (already normalised) for the model."""
        return input_change(clean_normalised, self.normalise(corrupted))


def input_change(clean: np.ndarray, corrupted: np.ndarray) -> InputChange:
    """SSIM and relative L2 of two normalised images (C, *spatial), averaged over channels."""
    ssims, distances = [], []
    for a, b in zip(clean, corrupted):
        a, b = np.squeeze(a), np.squeeze(b)  # nnU-Net's 2D images are (1, X, Y)
        data_range = float(a.max() - a.min()) or 1.0
        # skimage needs a window of at most the smallest side; 7 (its default) otherwise
        window = min(SSIM_WINDOW, min(a.shape) - (1 - min(a.shape) % 2))
        ssims.append(float(structural_similarity(a, b, data_range=data_range, win_size=window))
                     if window >= 3 else float(np.array_equal(a, b)))
        norm = float(np.linalg.norm(a.astype(np.float64)))
        difference = float(np.linalg.norm(b.astype(np.float64) - a))
        distances.append(difference / norm if norm > 0 else (0.0 if difference == 0 else math.inf))
    return InputChange(float(np.mean(ssims)), float(np.mean(distances)))

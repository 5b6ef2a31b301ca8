"""Condition sets per imaging modality, the ROOD-MRI mapping, and modality detection from dataset.json.

Data only (no torch): ``MODALITY_SETS`` holds condition specs in the syntax of
``nnunet_robustness.conditions.parsing.parse_condition_spec`` (``FAMILY:1,3,5``); they are among the
runner's named sets (``run --preset ct``, :data:`nnunet_robustness.conditions.CONDITION_SETS`). ``modality_from_channel_names`` picks a set
from a dataset's ``channel_names`` where the modality is unambiguous.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

#: Modality -> condition specs. Severities 1, 3, 5 span each family's range at a third of the cost of
#: 1..5; the ROOD-MRI set uses 1..5 because its summary weights every level.
MODALITY_SETS: dict[str, list[str]] = {
    "ct": [
        "ct_low_dose:1-5", "ct_metal:1,3,5", "ct_cupping:1,3,5", "ct_rings:1,3,5",
        "anisotropy:1,3,5",  # thick-slice reconstructions
        "gaussian_blur:1,3,5",  # smoother reconstruction kernels
    ],
    "ultrasound": [
        "us_speckle:1,3,5", "us_shadowing:1,3,5", "us_tgc:1,3,5", "us_haze:1,3,5",
        "gaussian_blur:1,3,5",  # lower-frequency probes / worse focusing
        "contrast:1,3,5",  # dynamic range / log-compression settings
    ],
    "histology": [
        "he_stain:1-5", "jpeg_compression:1,3,5", "defocus_blur:1,3,5", "vignetting:1,3,5",
        "dust_bubbles:1,3,5",
    ],
    "rood-mri": [
        "gaussian_blur:1-5", "anisotropy:1-5", "bias_field:1-5", "gamma:1-5", "ghosting:1-5", "motion:1-5",
        "rician_noise:1-5",
    ],
}

_ROOD_MRI_SOURCE = ("Boone et al., \"ROOD-MRI: Benchmarking the robustness of deep learning segmentation "
                    "models to out-of-distribution and corrupted data in MRI\", NeuroImage 278, 2023, "
                    "https://doi.org/10.1016/j.neuroimage.2023.120289; transforms from "
                    "https://github.com/AICONSlab/roodmri (roodmri/transforms/defaults.py)")

#: ROOD-MRI transform -> how our catalogue stands in for it. ``rood`` is ROOD-MRI's parameter at its
#: severities 1..5 (``np.linspace(0, max, 6)[1:]``); ``ours`` is our family's parameter at severities
#: 1..5 (the ``rood-mri`` set runs them as severities 1..5, so ROOD-MRI's severity weights apply
#: level by level). ``family`` None: no equivalent in our intensity-only catalogue.
ROOD_MRI_MAPPING: dict[str, dict[str, Any]] = {
    "Smoothing": {
        "family": "gaussian_blur", "rood": "TorchIO Blur std 0.8, 1.6, 2.4, 3.2, 4.0 mm",
        "ours": "sigma_mm 0.5, 1.0, 1.5, 2.0, 3.0",
        "note": "same Gaussian model; our top level is milder (3.0 vs 4.0 mm)",
    },
    "AnisoDownsample": {
        "family": "anisotropy", "rood": "TorchIO RandomAnisotropy downsampling 2.8, 4.6, 6.4, 8.2, 10 x (random axis)",
        "ours": "slice thickness 1.5, 2, 3, 4, 6 x the coarsest native spacing along that axis (box slice profile)",
        "note": "both are multiples of the native spacing; ours stops at 6x and uses a fixed axis",
    },
    "BiasField": {
        "family": "bias_field", "rood": "TorchIO RandomBiasField coefficients +-0.3, 0.6, 0.9, 1.2, 1.5 (order 3)",
        "ours": "coefficient_max 0.1, 0.2, 0.3, 0.4, 0.5 (order 3)",
        "note": "same polynomial model; ours is about 3x weaker per level",
    },
    "ContrastCompression": {
        "family": "gamma", "rood": "MONAI AdjustContrast gamma 0.86, 0.72, 0.58, 0.44, 0.3",
        "ours": "gamma exp(+-0.15, 0.3, 0.45, 0.65, 0.9) = 0.86..0.41 or 1.16..2.46, direction drawn per seed",
        "note": "ROOD-MRI's two gamma families (compression < 1, expansion > 1) map to our one gamma family, "
                "whose direction is random; on the robust range instead of min-max",
    },
    "ContrastExpansion": {
        "family": "gamma", "rood": "MONAI AdjustContrast gamma 1.4, 1.8, 2.2, 2.6, 3.0",
        "ours": "see ContrastCompression", "note": "shares the gamma conditions with ContrastCompression",
    },
    "Ghosting": {
        "family": "ghosting", "rood": "TorchIO RandomGhosting intensity 0.5, 1.0, 1.5, 2.0, 2.5; ghosts 3, 5, 7, 9, 11",
        "ours": "intensity 0.15, 0.3, 0.45, 0.6, 0.8; 2-8 ghosts and the axis drawn per seed",
        "note": "TorchIO's intensity > 1 inverts k-space planes; ours stays physical (<= 0.8)",
    },
    "RandomMotion": {
        "family": "motion", "rood": "TorchIO RandomMotion degrees 1-5, translation 2-10 mm, 2-10 movements",
        "ours": "max 0.5, 1, 2, 4, 8 degrees and mm, 4 movements",
        "note": "same k-space segment model (Shaw et al. 2019)",
    },
    "RicianNoise": {
        "family": "rician_noise", "rood": "MONAI RandRicianNoise std 0.16, 0.32, 0.48, 0.64, 0.8 (relative)",
        "ours": "std 1, 2.5, 5, 8, 12% of the robust range",
        "note": "MONAI's relative std multiplies the image std, ours the robust range; ROOD-MRI's top levels "
                "are far noisier",
    },
    "Affine": {"family": None, "rood": "rotation up to 30 degrees, translation up to 40 mm",
               "ours": None, "note": "spatial transform of image and label: outside our intensity catalogue"},
    "ElasticDeformation": {"family": None, "rood": "TorchIO RandomElasticDeformation up to 30 mm",
                           "ours": None, "note": "spatial transform of image and label: not mapped"},
}
ROOD_MRI_SOURCE = _ROOD_MRI_SOURCE

# Channel-name patterns (lower case, whole name). nnU-Net's dataset.json ``channel_names`` maps
# "0", "1", ... to names such as "CT", "T2", "R".
_CT = re.compile(r"^(ct|cta|cect|nect|ncct|computed[ _-]?tomography|hu|noncontrast[ _-]?ct|contrast[ _-]?ct)$")
_US = re.compile(r"^(us|ultrasound|b[ _-]?mode|bmode|echo|sonography)$")
_RGB = {"r", "g", "b", "red", "green", "blue"}
_HISTOLOGY = re.compile(r"^(rgb|rgb_to_0_1|h&e|he|h_e|hematoxylin|haematoxylin|eosin|histology|histopathology|wsi)$")
# Names that say "not CT, not ultrasound, not RGB": MR sequences and maps, PET. Used only to refuse
# modality-specific families; an unknown name ("image", "0", "noNorm") says nothing and refuses nothing.
_MR = re.compile(r"^(mr|mri|t1|t1w|t1[ _-]?(c|ce|gd|post|pre|contrast|weighted)|t1ce|t1gd|mprage|t2|t2w|t2\*|t2star|"
                 r"t2[ _-]?(weighted|flair)|flair|pd|pdw|dwi|adc|swi|dti|bold|dce|perfusion|cbf|cbv|b0|b1000)$")
_PET = re.compile(r"^(pet|suv|fdg|fdg[ _-]?pet|psma|psma[ _-]?pet)$")

#: What a channel name says about its modality (:func:`channel_modality`), in words.
MODALITY_WORDS: dict[str, str] = {"ct": "CT", "ultrasound": "ultrasound", "histology": "RGB / histology",
                                  "mr": "MR", "pet": "PET"}


def channel_modality(name: str) -> str | None:
    """The modality one ``channel_names`` entry names (``"ct"``, ``"ultrasound"``, ``"histology"``,
    ``"mr"``, ``"pet"``), or None when the name does not say (``"image"``, ``"0"``, ``"noNorm"``)."""
    name = str(name).strip().lower()
    for modality, pattern in (("ct", _CT), ("ultrasound", _US), ("mr", _MR), ("pet", _PET)):
        if pattern.match(name):
            return modality
    if name in _RGB or _HISTOLOGY.match(name):
        return "histology"
    return None


def modality_from_channel_names(channel_names: Mapping[str, str]) -> str | None:
    """The modality set for a dataset, from dataset.json's ``channel_names``, or None if ambiguous.

    CT channels -> ``"ct"``; ultrasound (``"US"``, ``"ultrasound"``, ``"B-mode"``) -> ``"ultrasound"``;
    RGB (``"R"``, ``"G"``, ``"B"`` as three channels, ``"rgb"``) or H&E names -> ``"histology"``. Every
    channel must agree: mixed (CT + PET), MR, unknown or empty names give None, and the user chooses.
    """
    names = [str(name).strip().lower() for name in channel_names.values()]
    if not names:
        return None
    if all(_CT.match(name) for name in names):
        return "ct"
    if all(_US.match(name) for name in names):
        return "ultrasound"
    if len(names) == 3 and set(names) in ({"r", "g", "b"}, {"red", "green", "blue"}):
        return "histology"
    if all(_HISTOLOGY.match(name) for name in names) or (
            all(name in _RGB or _HISTOLOGY.match(name) for name in names) and len(names) == 3):
        return "histology"
    return None

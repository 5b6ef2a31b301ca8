"""Conditions in plain words, and what each corruption family does to the image (its effect group).

One definition for the whole package: every corruption family registered in
:mod:`nnunet_robustness.corruptions` takes its ``effect`` and ``plain`` attributes from
:data:`FAMILY_WORDS` (registering a family without an entry fails), the report's conditions table
says each condition in one sentence through :func:`describe`, and robust training's seen/unseen split
(:mod:`nnunet_robustness.analysis.robust_training`) counts a family as seen when its effect group was
trained on. Torch-free like :mod:`nnunet_robustness.conditions`, so ``eval`` uses it without loading
the corruption library.

The effect groups are not the catalogue's ``group`` attribute: that one says which images a family
belongs to (CT, ultrasound, microscopy families read HU or RGB values), this one what it does to the
image, so microscope defocus is a blur like Gaussian blur and low-dose CT is noise like Gaussian noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from nnunet_robustness.conditions import ADVERSARIAL_FAMILIES, CONTEXT_FAMILY, MAX_SEVERITY, severity_label

#: What a family does to the image -> the words for it.
EFFECT_GROUPS: dict[str, str] = {
    "blur": "blur and lost resolution",
    "noise": "random noise",
    "intensity": "intensity and contrast changes",
    "kspace": "MR acquisition (k-space) artefacts",
    "structured": "streaks, rings, shadows and occluders",
}


@dataclass(frozen=True)
class FamilyWords:
    effect: str  # a key of EFFECT_GROUPS
    plain: str  # what it simulates, in words a clinician reads; completes "Simulates ..."


FAMILY_WORDS: dict[str, FamilyWords] = {
    # noise
    "gaussian_noise": FamilyWords("noise", "grainy images: random electronic noise added to every pixel"),
    "rician_noise": FamilyWords("noise", "a noisier MR scan (lower signal-to-noise, e.g. faster or lower-field "
                                         "acquisition)"),
    "speckle_noise": FamilyWords("noise", "grainy, multiplicative speckle that is strongest in bright tissue"),
    "salt_pepper_noise": FamilyWords("noise", "isolated black and white pixels from dead or hot detector elements"),
    "poisson_noise": FamilyWords("noise", "too few photons (a lower dose): grain that is worst in dark tissue"),
    "ct_low_dose": FamilyWords("noise", "a CT scan at a fraction of the usual dose: more noise and streaks"),
    "us_speckle": FamilyWords("noise", "ultrasound speckle left without speckle reduction"),
    # blur and resolution
    "gaussian_blur": FamilyWords("blur", "a blurrier scan or smoother reconstruction: the whole image is "
                                         "smoothed"),
    "background_blur": FamilyWords("blur", "removed surroundings: everything outside the reference "
                                           "segmentation is blurred, the labelled structure is left sharp"),
    "anisotropy": FamilyWords("blur", "thicker slices: detail between slices is averaged away (partial volume)"),
    "defocus_blur": FamilyWords("blur", "an out-of-focus microscope: cells and nuclei lose their edges"),
    "jpeg_compression": FamilyWords("blur", "stronger JPEG compression of the slide image: fine texture replaced "
                                            "by blocks"),
    # intensity
    "contrast": FamilyWords("intensity", "flatter contrast: tissues look more alike"),
    "window_saturation": FamilyWords("intensity", "a narrow display window at export: the brightest and darkest "
                                                  "tissue are cut off to one value"),
    "gamma": FamilyWords("intensity", "a different intensity response: mid-tones brighter or darker"),
    "brightness": FamilyWords("intensity", "a calibration drift: the whole image brighter or darker"),
    "bias_field": FamilyWords("intensity", "MR coil shading: smooth brightness variation across the image"),
    "ct_cupping": FamilyWords("intensity", "CT beam hardening: the centre of the body darker than its rim"),
    "us_tgc": FamilyWords("intensity", "wrong ultrasound depth-gain settings: depth bands too bright or too "
                                       "dark"),
    "vignetting": FamilyWords("intensity", "uneven microscope illumination: darker towards the corners"),
    "he_stain": FamilyWords("intensity", "a different H&E staining batch: other pink and purple tones"),
    # MR acquisition
    "motion": FamilyWords("kspace", "the patient moving during the MR scan: smeared and doubled edges"),
    "ghosting": FamilyWords("kspace", "MR ghosts from breathing or pulsation: faint copies of the anatomy "
                                      "shifted across the image"),
    "spike": FamilyWords("kspace", "MR radio-frequency interference: herringbone stripes over the image"),
    "gibbs_ringing": FamilyWords("kspace", "a lower-resolution MR acquisition: ringing lines next to sharp "
                                           "edges"),
    # structured artefacts
    "ct_metal": FamilyWords("structured", "a metal implant in the CT: dark and bright streaks across the slice"),
    "ct_rings": FamilyWords("structured", "a miscalibrated CT detector: concentric rings"),
    "us_shadowing": FamilyWords("structured", "ultrasound shadows behind bright reflectors (bone, stones, gas)"),
    "us_haze": FamilyWords("structured", "ultrasound haze and reverberation clutter in the near field"),
    "dust_bubbles": FamilyWords("structured", "dust and air bubbles on the slide hiding parts of the tissue"),
}

SEVERITY_WORDS = {1: "very mild", 2: "mild", 3: "moderate", 4: "strong", 5: "very strong"}

# Preset groups: where the preset comes from and how to read its names. The seed study named its
# conditions after how hard the *task* gets for a model that needs no context (blurring the background
# removes distracting texture: "easiest"), so a model that relies on context can do worst on "easiest".
PRESET_GROUP_WORDS: dict[str, str] = {
    "seed-study": ("the seed study's '{level}' (Kamath et al., MICCAI 2023), named by how easy the task gets for a "
                   "model that ignores the surroundings, not by how much damage it does"),
}

LABEL_NOTE = "built from the reference segmentation, so it cannot be used on unlabelled images"

ATTACK_PLAIN = ("A worst-case test, not a real-world artefact: small pixel changes computed from this model's own "
                "gradients to make it fail")


def family_effect(family: str | None) -> str | None:
    """The effect group of a catalogue family (None for others: unknown folder names, attacks, crops)."""
    words = FAMILY_WORDS.get(family or "")
    return None if words is None else words.effect


def _strength(severity: float | None) -> str:
    if severity is None:
        return ""
    if float(severity).is_integer() and int(severity) in SEVERITY_WORDS:
        return f"strength: {SEVERITY_WORDS[int(severity)]}, severity {int(severity)} of {MAX_SEVERITY}"
    return f"strength: severity {severity_label(float(severity))} of {MAX_SEVERITY}"


def _values(parameters: Mapping[str, Any] | None) -> str:
    if not parameters:
        return ""
    # a nested record (a calibrated level's target and reached SSIM) is no strength of the family
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in parameters.items()
                     if not isinstance(v, Mapping))


def describe(name: str, family: str | None = None, severity: float | None = None, preset: str | None = None,
             parameters: Mapping[str, Any] | str | None = None) -> str:
    """One sentence for a condition: what it simulates and at what strength.

    ``parameters`` is what ``run`` applied (run.json; a JSON string as in eval's conditions table, or a
    mapping); it gives the strength of presets and crops, whose severity is None.
    """
    if isinstance(parameters, str):
        parameters = json.loads(parameters)
    values = _values(parameters)
    in_brackets = f" ({values})" if values else ""
    if family is None and preset is None and (name == "clean" or severity == 0):
        return "The unchanged test images."
    if family == CONTEXT_FAMILY:
        fbr = (parameters or {}).get("target_fbr")
        share = f"{fbr:.0%}" if isinstance(fbr, (int, float)) else "a set share"
        return (f"Simulates a tighter field of view: each image is cropped around the labelled structure until it "
                f"fills {share} of the view; {LABEL_NOTE}.")
    if family in ADVERSARIAL_FAMILIES:
        return (f"{ATTACK_PLAIN} ({ADVERSARIAL_FAMILIES[family].split(';')[0]}); {_strength(severity) or 'strength: see budget'}"
                f"{in_brackets}, eps as a share of the image's intensity range.")
    words = FAMILY_WORDS.get(family or "")
    if words is None:
        return f"Condition '{name}' (family {family or 'unknown'}): no description in words; see its parameters."
    sentence = f"Simulates {words.plain}"
    if preset is not None:
        group, _, level = preset.partition(":")
        origin = PRESET_GROUP_WORDS[group].format(level=level) if group in PRESET_GROUP_WORDS else f"preset {preset}"
        sentence += f"; fixed setting{in_brackets} of {origin}"
    elif severity is not None:
        sentence += f"; {_strength(severity)}{in_brackets}"
    elif values:
        sentence += f"; {values}"
    if family == "background_blur":
        sentence += f"; {LABEL_NOTE}"
    return sentence + "."

"""Named conditions with fixed parameters, e.g. a published study's exact settings."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, NamedTuple


class Preset(NamedTuple):
    family: str
    parameters: Mapping[str, Any]
    description: str
    source: str


_SEED_STUDY = ('Kamath et al., "Do we really need that skip-connection?", MICCAI 2023, '
               "https://doi.org/10.1007/978-3-031-43901-8_29")

#: Preset name -> (family, fixed parameters, description, source). ``get_corruption(name)`` builds it.
PRESETS: Mapping[str, Preset] = MappingProxyType({
    "seed-study:easiest": Preset("background_blur", {"sigma": 7.0, "unit": "voxel"},
                                 "background Gaussian blur, sigma 7 px", _SEED_STUDY),
    "seed-study:easier": Preset("background_blur", {"sigma": 3.0, "unit": "voxel"},
                                "background Gaussian blur, sigma 3 px", _SEED_STUDY),
    "seed-study:harder": Preset("speckle_noise", {"variance": 0.1, "reference": "minmax", "clip": True},
                                "speckle, skimage random_noise var=0.1 on the [0, 1] min-max scaled image", _SEED_STUDY),
    "seed-study:hardest": Preset("speckle_noise", {"variance": 0.3, "reference": "minmax", "clip": True},
                                 "speckle, skimage random_noise var=0.3 on the [0, 1] min-max scaled image", _SEED_STUDY),
})


def preset_group(prefix: str) -> list[str]:
    """Preset names in a group: ``'seed-study'`` -> all ``'seed-study:*'``; an exact name -> itself."""
    if prefix in PRESETS:
        return [prefix]
    return [name for name in PRESETS if name.split(":", 1)[0] == prefix]

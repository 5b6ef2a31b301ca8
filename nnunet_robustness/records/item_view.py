"""A small picture of what the model was given for each (case, condition) item, for eval's report.

``run`` writes ``<condition>/<case>.view.npz`` next to each prediction: one 2D slice of the first
channel of the image the predictor received (the clean image, or its corrupted copy), scaled to 8 bits
by the clean image's 1st-99th percentiles (so a brighter or noisier copy looks brighter or noisier), and
subsampled by an integer ``stride`` to at most ``VIEW_SIZE`` pixels a side. A volume is shown by the
axial slice (first array axis) with the most reference foreground when the reference is known, else
its middle slice. ``eval`` draws the reference and prediction contours of the same slice on it, taken
from the label maps with the same stride (``ItemView.mask_slice``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_path

VIEW_SUFFIX = ".view.npz"
VIEW_SIZE = 128  # largest side of a view, in pixels


@dataclass(frozen=True)
class ItemView:
    image: np.ndarray  # uint8, 2D
    slice_index: int  # index along the first array axis of a volume; -1 for a 2D image
    stride: int

    @staticmethod
    def path(condition_folder: Path, case: str) -> Path:
        return Path(condition_folder) / f"{case}{VIEW_SUFFIX}"

    @classmethod
    def of(cls, image: np.ndarray, intensity_range: tuple[float, float], label: np.ndarray | None) -> "ItemView":
        """``image``: nnU-Net's (channels, z, y, x) array (z = 1 for 2D images); ``label``: (1, z, y, x) or None."""
        channel = np.asarray(image[0], dtype=np.float32)
        if channel.shape[0] == 1:
            index, plane = -1, channel[0]
        else:
            if label is not None and np.any(label[0] > 0):
                index = int(np.argmax((label[0] > 0).reshape(label.shape[1], -1).sum(1)))
            else:
                index = channel.shape[0] // 2
            plane = channel[index]
        stride = max(1, int(np.ceil(max(plane.shape) / VIEW_SIZE)))
        low, high = intensity_range
        scaled = np.clip((plane[::stride, ::stride] - low) / max(high - low, 1e-12), 0, 1)
        return cls((scaled * 255).round().astype(np.uint8), index, stride)

    def mask_slice(self, mask: np.ndarray) -> np.ndarray:
        """The same slice of a label map (2D image or (z, y, x) volume), subsampled like the view."""
        plane = mask if mask.ndim == 2 else mask[max(self.slice_index, 0)]
        return plane[::self.stride, ::self.stride]

    def write(self, condition_folder: Path, case: str) -> None:
        with atomic_path(self.path(condition_folder, case)) as tmp:
            with open(tmp, "wb") as stream:
                np.savez_compressed(stream, image=self.image, slice_index=self.slice_index, stride=self.stride)

    @classmethod
    def read_if_present(cls, condition_folder: Path, case: str) -> "ItemView | None":
        path = cls.path(condition_folder, case)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return cls(np.asarray(data["image"]), int(data["slice_index"]), int(data["stride"]))
        except Exception as e:  # noqa: BLE001 - a broken picture must not stop an evaluation; say which
            raise UserInputError(f"{path}: unreadable view ({e}); re-run `nnunet-robust run` for this item") from None


def display_range(image: np.ndarray) -> tuple[float, float]:
    """The clean image's 1st-99th percentile of its first channel: every view of a case shares it."""
    low, high = np.percentile(np.asarray(image[0], dtype=np.float32), [1, 99])
    return float(low), float(high)

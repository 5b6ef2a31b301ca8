"""The test cases of an ``imagesTs``-style folder: finding them (``CASE_XXXX<ending>`` files grouped by
case), reading a case and its reference label with nnU-Net's reader, and writing an image back like its
input file.

Used by ``run`` and ``corrupt``, so both accept and refuse the same folders and files. nnU-Net itself
takes the channels it needs and ignores the rest; we refuse a folder whose channels do not match the
model, so a forgotten or extra channel is never silently dropped from a robustness study. Torch-free.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_path, check_image_file, check_name_encoding, files_with_ending

_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})(?P<ending>\..+)$")


def list_cases(input_path: str | Path, file_ending: str | None = None,
               num_channels: int | None = None) -> dict[str, list[Path]]:
    """Case identifier -> its channel files ``[CASE_0000<ending>, CASE_0001<ending>, ...]``.

    ``input_path`` is a folder, or a text file listing one ``CASE_0000<ending>`` image per line (the
    other channels lie next to it). ``file_ending`` (e.g. ``.nii.gz``) is found from the files when not
    given, and must then be the same for every file. ``num_channels``: the channels the model takes;
    every case must have exactly these. Raises ``UserInputError`` naming the offending file.
    """
    input_path = Path(input_path)
    listed: set[str] | None = None
    if input_path.is_dir():
        files, hidden = _folder_files(input_path)
    elif input_path.is_file():
        files, listed = _listed_files(input_path, file_ending)
        hidden = []
    else:
        raise UserInputError(f"{input_path}: no such folder or list file")
    by_case: dict[str, dict[int, Path]] = {}
    endings: dict[str, Path] = {}  # ending -> its first file
    strays: list[Path] = []  # files that are no channel file of a case: refused, never dropped silently
    for path in files:
        match = _CHANNEL_FILE.match(path.name)
        if listed is not None and (match is None or match["case"] not in listed):
            continue  # a list file names its cases; other files beside them are not asked for
        if match is None or (file_ending is not None and match["ending"] != file_ending):
            strays.append(path)
            continue
        endings.setdefault(match["ending"], path)
        by_case.setdefault(match["case"], {})[int(match["channel"])] = path
    example = f"CASE_0000{file_ending or '<ending>'}"
    if not by_case:
        raise UserInputError(f"{input_path}: no images named {example} (nnU-Net's imagesTs layout)")
    if len(endings) > 1:
        counts = {e: sum(1 for f in files if f.name.endswith(e)) for e in endings}
        odd = endings[min(counts, key=counts.get)]  # a file of the rarer format: probably the stray one
        raise UserInputError(f"{odd}: files with different endings {sorted(endings)} in {input_path}; keep one "
                             "format per folder")
    # One rule for run and corrupt: every file of the folder is a channel file of a case, or the command
    # stops naming it (a typo in a name, an upper-case ending, a .png among .nii.gz files would otherwise
    # drop a case from the study with only a smaller count to hint at it).
    if strays:
        stray = strays[0]
        raise UserInputError(f"{stray.parent / repr(stray.name)[1:-1]}: not an image named {example.replace('0000', 'XXXX')} "
                             f"({_why_not(stray.name, file_ending or next(iter(endings)))}"
                             f"{f'; {len(strays) - 1} more such file(s)' if len(strays) > 1 else ''}); rename it or move "
                             "it out of the folder")
    if hidden:  # OS metadata (.DS_Store), editor backups, our own temporary files: not data, but named
        warnings.warn(f"{input_path}: skipped {len(hidden)} hidden file(s): "
                      + ", ".join(repr(p.name) for p in hidden[:5]) + (" ..." if len(hidden) > 5 else ""),
                      stacklevel=2)
    ending = next(iter(endings))
    expected = num_channels if num_channels is not None else max(len(c) for c in by_case.values())
    cases = {}
    for case, channels in sorted(by_case.items()):
        for channel in range(expected):
            if channel not in channels:
                missing = next(iter(channels.values())).with_name(f"{case}_{channel:04d}{ending}")
                raise UserInputError(f"case {case}: missing {missing} (every case needs channels "
                                     f"_0000.._{expected - 1:04d})")
        extra = sorted(set(channels) - set(range(expected)))
        if extra:
            raise UserInputError(f"{channels[extra[0]]}: channel {extra[0]} of case {case}, but "
                                 + (f"the model takes {expected} channel(s)" if num_channels is not None
                                    else f"other cases have {expected} channel(s)") + "; remove or move it")
        cases[case] = [channels[c] for c in range(expected)]
    return cases


def _folder_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """The files of ``folder`` (sorted), and its hidden files (``.name``) apart."""
    files, hidden = [], []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            check_name_encoding(path)
            (hidden if path.name.startswith(".") else files).append(path)
    return files, hidden


def _why_not(name: str, ending: str) -> str:
    """Why ``name`` is no ``CASE_XXXX<ending>`` file, in words."""
    if any(c in name for c in "\n\r\t"):
        return "its name holds a line break or tab"
    if not name.endswith(ending):
        if name.lower().endswith(ending.lower()):
            return f"the ending differs from {ending!r} in upper/lower case"
        return f"it does not end in {ending!r}"
    return "no _XXXX channel number before the ending"


def _listed_files(list_file: Path, file_ending: str | None) -> tuple[list[Path], set[str]]:
    """The channel files of the cases a list file names (one ``CASE_0000<ending>`` per line), and those cases."""
    lines = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    first = [(list_file.parent / line).resolve() if not Path(line).is_absolute() else Path(line) for line in lines]
    matches = [_CHANNEL_FILE.match(p.name) for p in first]
    for path, match in zip(first, matches):
        if match is None or match["channel"] != "0000" or (file_ending is not None and match["ending"] != file_ending):
            raise UserInputError(f"{list_file}: list entries must be CASE_0000{file_ending or '<ending>'} images; "
                                 f"got {path}")
        if not path.is_file():
            raise UserInputError(f"{list_file}: listed image {path} does not exist")
    folders = dict.fromkeys(p.parent for p in first)
    files = [f for folder in folders for f in files_with_ending(folder, file_ending or "")]
    return files, {m["case"] for m in matches}


# --- reading ---------------------------------------------------------------------------------------------

def read_case(reader_writer, case: str, files: Sequence[Path]) -> tuple[np.ndarray, dict]:
    """A case's channel files read together by nnU-Net's reader (what ``nnUNetv2_predict`` reads): the
    float32 ``(C, *spatial)`` image and its properties. Refused in one line naming the file: a broken
    file, NaN or Inf values, a multi-component (RGB) file where nnU-Net takes one channel per file."""
    for path in files:
        check_image_file(path)
    try:
        image, properties = reader_writer.read_images([str(f) for f in files])
    except Exception as e:  # noqa: BLE001 - reader errors vary by format; name the file
        raise UserInputError(f"case {case}: cannot read {files[0]} ({type(e).__name__}: {e})") from None
    finite = np.isfinite(image).reshape(image.shape[0], -1).all(axis=1)
    if not finite.all():
        # one channel per file (the usual case): name the file that holds them
        bad = files[int(np.argmin(finite))] if len(files) == image.shape[0] else files[0]
        raise UserInputError(f"case {case}: {bad} contains NaN or Inf values")
    spacing = properties.get("spacing")
    if spacing is not None and len(spacing) != image.ndim - 1:
        # SimpleITK returns a vector (RGB) pixel as a last array axis that has no spacing
        raise UserInputError(f"case {case}: {files[0]} has {image.ndim - 1} array axes but {len(spacing)} "
                             "spacings: a multi-component (e.g. RGB) image? nnU-Net takes one channel per file "
                             "(CASE_0000, CASE_0001, ...)")
    return image, properties


def read_label(reader_writer, path: Path, case: str, image_shape: Sequence[int]) -> np.ndarray:
    """The reference label of a case, which must lie on the image's grid."""
    if not path.is_file():
        raise UserInputError(f"case {case}: no reference {path}")
    label, _ = reader_writer.read_seg(str(path))
    if label.shape[1:] != tuple(image_shape[1:]):
        raise UserInputError(f"{path}: shape {label.shape[1:]} differs from the image's {tuple(image_shape[1:])}")
    return label


def reader_writer_for_files(ending: str, example: Path):
    """nnU-Net's reader for files with this ending, as ``nnUNetv2_predict`` picks it without a model, for
    ``corrupt``; refused when we cannot write its images back (see :func:`write_like`)."""
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_file_ending
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    check_image_file(example)  # a truncated gzip is named as such, not as "no reader"
    # nnU-Net prints a traceback for each reader it tries and rejects (even with verbose=False): keep the
    # terminal to our one line
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            reader_writer = determine_reader_writer_from_file_ending(ending, str(example), verbose=False)
        except RuntimeError:
            raise UserInputError(f"{example}: no nnU-Net reader for files ending in {ending!r} can read it (a "
                                 "broken file, or not an image of 2 or 3 dimensions)") from None
    if not issubclass(reader_writer, (SimpleITKIO, NaturalImage2DIO)):
        raise UserInputError(f"{example}: files ending in {ending!r} are read by nnU-Net's "
                             f"{reader_writer.__name__}, which corrupt cannot write back yet; convert the "
                             f"folder to .nii.gz (SimpleITK) or .png")
    return reader_writer()


def channels_per_file(reader_writer, files: Sequence[Path], image: np.ndarray) -> list[int]:
    """How many of the image's channels each file holds (an RGB .png: 3), to write them back per file."""
    if len(files) == image.shape[0]:
        return [1] * len(files)
    if len(files) == 1:
        return [image.shape[0]]
    return [reader_writer.read_images([str(f)])[0].shape[0] for f in files]


# --- writing ---------------------------------------------------------------------------------------------

def write_like(reader_writer, image: np.ndarray, sources: Sequence[Path], channels: Sequence[int],
               targets: Sequence[Path]) -> None:
    """Write a float ``(C, *spatial)`` image back as files like ``sources`` (one per target, holding
    ``channels`` channels each): the same pixel type (rounded and clipped), origin, spacing and direction."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    start = 0
    for target, count, source in zip(targets, channels, sources):
        part = image[start:start + count]
        start += count
        try:
            if isinstance(reader_writer, SimpleITKIO):
                _write_sitk(part, source, target)
            else:
                _write_natural(part, source, target)
        except RuntimeError as e:  # SimpleITK's: e.g. a 4D source image, whose geometry cannot be copied
            why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise UserInputError(f"{source}: its corrupted version cannot be written like it ({why}); corrupt "
                                 "takes 2D and 3D images") from None


def _write_sitk(channels: np.ndarray, source: Path, target: Path) -> None:
    import SimpleITK as sitk

    from nnunet_robustness.corruptions._core import cast_to_dtype

    original = sitk.ReadImage(str(source))
    array = channels[0]
    if original.GetDimension() == 2:
        array = array[0]  # nnU-Net adds a leading axis to 2D images
    image = sitk.GetImageFromArray(cast_to_dtype(array, sitk.GetArrayViewFromImage(original).dtype))
    image.CopyInformation(original)  # origin, spacing, direction exactly as the input
    with atomic_path(target) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def _write_natural(channels: np.ndarray, source: Path, target: Path) -> None:
    from skimage import io as skimage_io

    from nnunet_robustness.corruptions._core import cast_to_dtype

    dtype = skimage_io.imread(str(source)).dtype
    array = channels[:, 0]  # (c, 1, X, Y) -> (c, X, Y)
    array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    with atomic_path(target) as tmp:
        skimage_io.imsave(str(tmp), cast_to_dtype(array, dtype), check_contrast=False)

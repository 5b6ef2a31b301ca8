"""Finding the test cases of an ``imagesTs``-style folder: ``CASE_XXXX<ending>`` files grouped by case.

Used by ``run`` and ``corrupt``, so both accept and refuse the same folders. nnU-Net itself takes the
channels it needs and ignores the rest; we refuse a folder whose channels do not match the model, so a
forgotten or extra channel is never silently dropped from a robustness study.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import check_name_encoding, files_with_ending

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

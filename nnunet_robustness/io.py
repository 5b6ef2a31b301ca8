"""Small I/O helpers shared by every command: reading JSON with user-facing errors, listing data
files, package versions for provenance, and atomic writes, so an interrupted run never leaves a file
that looks complete but is not."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from nnunet_robustness.errors import UserInputError

# mkstemp creates files readable by the owner only; outputs should get the usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)


# A write that failed for lack of room (full disk, quota, a file-size limit such as ``ulimit -f``): the
# user's environment, reported in one line naming the file (``cli.main``), never a traceback.
NO_ROOM_ERRNOS = frozenset({errno.EFBIG, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def _no_room_left(path: Path) -> int | None:
    """EFBIG or ENOSPC when the file just written at ``path`` may have been cut short for lack of room.

    ITK's NIfTI writer (SimpleITK, nnU-Net's writer) does not raise when a write fails: it prints
    ``** ERROR: NWAD: wrote only 0 of N bytes`` and leaves a truncated file, which the rename would make
    look complete. A file that reached the process's file-size limit, or a file system left without a
    free block, is therefore taken as a failed write."""
    import resource

    try:
        size = path.stat().st_size
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and size >= limit:
            return errno.EFBIG
        stats = os.statvfs(path)
    except OSError:
        return None
    free = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail
    return errno.ENOSPC if free == 0 and stats.f_blocks > 0 else None


def no_room_error(error: OSError, path: str | os.PathLike) -> OSError:
    """``error`` (a write that found no room) as an OSError naming ``path``: the final file, not the
    temporary name it was written under (pandas, pyarrow and numpy name no file at all)."""
    number = error.errno if error.errno in NO_ROOM_ERRNOS else errno.EFBIG
    return OSError(number, os.strerror(number), str(path))


@contextmanager
def atomic_path(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``final_path``; rename it into place only if the block succeeds.

    The temporary name keeps the final suffix (``.nii.gz`` writers look at it) and lives in the same
    folder, so the rename is atomic on POSIX file systems. A write that fails for lack of room (or is
    cut short without a word, see ``_no_room_left``) raises an OSError naming ``final_path``, whose
    earlier content stays as it was.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final_path.suffixes)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.name.split('.')[0]}.", suffix=f".tmp{suffix}",
                                        dir=final_path.parent)
    except OSError as e:
        raise (no_room_error(e, final_path) if e.errno in NO_ROOM_ERRNOS else e) from None
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~_UMASK)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
        except OSError as e:
            if e.errno in NO_ROOM_ERRNOS:
                raise no_room_error(e, final_path) from None
            raise
        number = _no_room_left(tmp)
        if number is not None:
            raise OSError(number, os.strerror(number), str(final_path))
        os.replace(tmp, final_path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The parsed content of a JSON file (YAML for ``.yaml``/``.yml``), or a ``UserInputError`` that
    names the file and ``what`` it should be (e.g. ``"dataset.json"``, ``"run manifest"``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserInputError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserInputError(f"{path}: is a folder, expected the {what} file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path}: cannot read the {what} ({getattr(e, 'strerror', None) or e})") from None
    yaml_file = path.suffix.lower() in (".yaml", ".yml")
    try:
        if yaml_file:
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parser error is the user's file
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserInputError(f"{path}: not valid {'YAML' if yaml_file else 'JSON'} ({message}); expected the "
                             f"{what}") from None


def files_with_ending(folder: str | os.PathLike, ending: str) -> list[Path]:
    """The files of ``folder`` whose names end in ``ending``, sorted; hidden files (``.name``, e.g. our
    own temporary files from :func:`atomic_path`) are never counted as data."""
    files = [p for p in sorted(Path(folder).iterdir())
             if p.is_file() and p.name.endswith(ending) and not p.name.startswith(".")]
    for path in files:
        check_name_encoding(path)
    return files


def check_name_encoding(path: Path) -> None:
    """Refuse a file name that is not valid UTF-8 (Python keeps its bytes as surrogates): ITK aborts the
    whole process on such a path, and no message could print it."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        raise UserInputError(f"{ascii(str(path.parent))[1:-1]}: the file name {ascii(path.name)} is not valid UTF-8; "
                             "rename it") from None


RESULT_PACKAGES = ("nnunet-robustness", "nnunetv2", "torch", "dynamic-network-architectures", "numpy", "SimpleITK")


def package_versions(names: tuple[str, ...] = RESULT_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape a result, for the provenance of output files."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def is_plain_name(name: str) -> bool:
    """Whether ``name`` names one entry of a folder: not empty, '.' or '..', no path separator (so no
    absolute path either) and no NUL byte."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in ("/", "\\", "\x00"))


def safe_path(root: str | os.PathLike, *parts: str) -> Path:
    """``root / part / ...`` for parts taken from files or arguments (condition, label, case names): a
    part that would lead outside ``root`` (``..``, an absolute path, a path separator) is refused."""
    root = Path(root)
    for part in parts:
        part = str(part)
        if not is_plain_name(part):
            raise UserInputError(f"{part!r}: not usable as a file or folder name under {root} (it must not be "
                                 "empty, '.', '..' or contain a path separator)")
    return root.joinpath(*parts)


# What spreadsheet programs read as the start of a formula (CSV injection): a name taken from a file or
# argument (case, model, condition, band) that starts with one of these is written with a leading "'",
# which spreadsheets show as text and hide; our own readers remove it again (csv_unescape).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` as it may go into a CSV cell: text starting like a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_safe(table: Any) -> Any:
    """A copy of a pandas table whose text cells are :func:`csv_cell`'ed (numbers stay numbers)."""
    table = table.copy()
    for column in _text_columns(table):
        table[column] = table[column].map(csv_cell)
    return table


def csv_unescape(table: Any) -> Any:
    """The inverse of :func:`csv_safe` for tables read back from our CSVs."""
    for column in _text_columns(table):
        table[column] = table[column].map(
            lambda v: v[1:] if isinstance(v, str) and v.startswith("'") and v[1:2] and v[1] in "=+-@\t\r" else v)
    return table


def _text_columns(table: Any) -> list:
    """Columns that can hold text: object, and pandas' string dtypes (pandas 3 reads text as ``str``)."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    return [c for c in table.columns if is_object_dtype(table[c].dtype) or is_string_dtype(table[c].dtype)]


def json_ready(value: Any) -> Any:
    """A JSON-safe copy for output files: NaN/inf -> null, numpy scalars -> Python, tuples and arrays ->
    lists, paths -> str, pandas' NA -> null."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values, without importing pandas
        return None
    return value


def refuse_output_inside(output: str | os.PathLike, inputs: dict[str, Any], option: str = "-o") -> None:
    """Refuse an output folder that is, or lies inside, a folder the command reads (``what -> folder``:
    the input images, the model, its fold folders, the reference labels): the outputs would mix with
    the data (``run -o imagesTs`` makes later runs read predictions as images; ``eval -o labelsTs``
    adds files the next eval reads as references)."""
    output = Path(output).resolve()
    for what, folder in inputs.items():
        if folder is None:
            continue
        folder = Path(folder).resolve()
        if folder.is_dir() and (output == folder or folder in output.parents):
            raise UserInputError(f"{option} {output}: the output folder is {'' if output == folder else 'inside '}"
                                 f"the {what} {folder}; choose a folder of its own (e.g. next to it)")


def refuse_foreign_file(path: str | os.PathLike, is_ours: Any, command: str) -> None:
    """Refuse to replace ``path`` when it exists and ``is_ours(text of its start)`` says another program
    (or the user) wrote it: a command overwrites only its own earlier outputs."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(8192).decode("utf-8", errors="replace")
    except OSError as e:
        raise UserInputError(f"{path}: cannot read it to check it is an earlier output ({e.strerror or e})") from None
    if not is_ours(head):
        raise UserInputError(f"{path}: not written by nnunet-robust {command}; it will not overwrite it: choose "
                             "another output folder")


STAGE_PREFIX = ".staged-"
_STAGE_LOCK = ".lock"
# a stage folder without a lock file is either being created this instant or left by a version that did
# not lock; only one older than this is taken to be abandoned
_UNLOCKED_STAGE_GRACE_S = 600.0


def _lock_stage(stage: Path):
    """Hold an exclusive lock on ``stage`` for as long as the returned file stays open. The kernel drops
    it when the process ends in any way (SIGTERM, SIGKILL, power off), which is what tells a stage of a
    running command (a concurrent eval into the same folder) from an abandoned one."""
    handle = open(stage / _STAGE_LOCK, "w")
    try:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no flock (Windows): abandoned stages are recognised by age only
        pass
    return handle


def _abandoned(stage: Path) -> bool:
    import time

    lock = stage / _STAGE_LOCK
    if not lock.is_file():
        try:
            return time.time() - stage.stat().st_mtime > _UNLOCKED_STAGE_GRACE_S
        except OSError:
            return False
    try:
        import fcntl
    except ImportError:
        return time.time() - lock.stat().st_mtime > 24 * 3600
    try:
        with open(lock, "r") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the handle closes
    except OSError:
        return False  # locked: the command that made it is still running
    return True


def remove_abandoned_stages(folder: str | os.PathLike) -> list[Path]:
    """Remove the ``.staged-*`` folders that interrupted commands (SIGTERM, SIGKILL, a crash) left in
    ``folder``; stages of commands still running are kept. Returns the removed folders."""
    import shutil

    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for stage in sorted(folder.glob(f"{STAGE_PREFIX}*")):
            if stage.is_dir() and not stage.is_symlink() and _abandoned(stage):
                shutil.rmtree(stage, ignore_errors=True)
                removed.append(stage)
    return removed


@contextmanager
def staged_folder(final_folder: str | os.PathLike, outputs: tuple[str, ...] = (),
                  marker: str | None = None) -> Iterator[Path]:
    """Yield a hidden temporary folder inside ``final_folder``; when the block succeeds, replace the
    outputs in ``final_folder`` with what was written there, else remove it. A failing re-run never
    deletes or half-replaces the outputs of an earlier successful one.

    ``outputs`` names every file or folder the command may write: those of an earlier run that this
    run did not write again (``eval --no-report`` after a run with a report, ``rate`` without
    ``--save-masks``) are removed, so the folder holds one run's outputs, never a mix. ``marker`` (the
    file that says "complete", e.g. ``summary.json``) is removed first and moved in last, so the few
    renames of the commit never show a complete-looking mix of two runs. Stages that interrupted
    commands left behind are removed first.
    """
    import shutil

    final_folder = Path(final_folder)
    final_folder.mkdir(parents=True, exist_ok=True)
    remove_abandoned_stages(final_folder)
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=final_folder))
    lock = _lock_stage(stage)
    try:
        try:
            yield stage
        except OSError as e:
            # name the file by where it was going (out/report.html), not by the hidden stage it was
            # written in, which is removed below
            if e.filename is not None and stage in Path(e.filename).parents:
                raise type(e)(e.errno, e.strerror, str(final_folder / Path(e.filename).relative_to(stage))) from None
            raise
        written = sorted((p for p in stage.iterdir() if p.name != _STAGE_LOCK),
                         key=lambda p: p.name == marker)  # the marker last
        names = {p.name for p in written}
        for name in ([marker] if marker else []) + [n for n in outputs if n != marker]:
            old = final_folder / name
            if name in names and name != marker and not old.is_dir():
                continue  # a file: replaced by the rename below
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
        for path in written:
            target = final_folder / path.name
            if path.is_dir() and target.is_dir():  # a folder of outputs is replaced whole
                shutil.rmtree(target)
            os.replace(path, target)
    finally:
        lock.close()
        shutil.rmtree(stage, ignore_errors=True)


def check_image_file(path: str | os.PathLike) -> None:
    """Raise ``UserInputError`` naming ``path`` when an image file would be read wrongly without a word.

    - A truncated or corrupt ``.gz``: ITK's NIfTI reader fills a truncated ``.nii.gz`` with zeros (a copy
      interrupted at 75 % reads as an image whose last quarter is black); decompressing the stream to
      its end checks its length and CRC, which ITK does not.
    - NaN or Inf voxels in a floating-point NIfTI: SimpleITK (nnU-Net's default reader) returns them as
      0, so the check reads the data with nibabel (integer files, e.g. label maps, cannot hold them and
      cost only a header read). The file is decompressed once for both checks.
    """
    import gzip
    import zlib

    import numpy as np

    path = Path(path)
    image_class = None  # nibabel's class of a floating-point NIfTI, whose voxels must be checked
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel

        try:
            header_image = nibabel.load(path)
        except Exception:  # noqa: BLE001 - not our reader's business; the checks below and nnU-Net's reader report it
            header_image = None
        if header_image is not None and np.issubdtype(header_image.get_data_dtype(), np.floating):
            image_class = type(header_image)
    data = None
    if path.name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as stream:
                if image_class is not None:
                    data = stream.read()
                else:
                    while stream.read(1 << 22):
                        pass
        except (EOFError, OSError, zlib.error) as e:
            raise UserInputError(f"{path}: cannot be read: truncated or corrupt gzip file ({e}); copy it again") from None
    elif image_class is not None:
        data = path.read_bytes()
    if data is not None and not np.isfinite(np.asanyarray(image_class.from_bytes(data).dataobj)).all():
        raise UserInputError(f"{path}: contains NaN or Inf values (SimpleITK, nnU-Net's reader, would read "
                             "them as 0); fix or mask them before using this file")

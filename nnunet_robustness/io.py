"""Small I/O helpers shared by every command: atomic writes, so an interrupted run never leaves a
file that looks complete but is not."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

# mkstemp creates files readable by the owner only; outputs should get the usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``final_path``; rename it into place only if the block succeeds.

    The temporary name keeps the final suffix (``.nii.gz`` writers look at it) and lives in the same
    folder, so the rename is atomic on POSIX file systems.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final_path.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.name.split('.')[0]}.", suffix=f".tmp{suffix}",
                                    dir=final_path.parent)
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~_UMASK)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final_path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

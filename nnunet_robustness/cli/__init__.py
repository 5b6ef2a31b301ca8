"""``nnunet-robust``: one entry point, one module per sub-command.

Each module listed in ``COMMAND_MODULES`` defines ``register(subparsers) -> None``, which adds its
parser(s) and sets ``func`` (called with the parsed namespace, returns an exit status or None).
Modules are imported lazily so that ``nnunet-robust --help`` stays fast and one broken command
cannot take the others down.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from typing import Sequence

from nnunet_robustness import __version__
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import NO_ROOM_ERRNOS

# Order is the order shown in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "nnunet_robustness.cli.demo",
    "nnunet_robustness.cli.study",
    "nnunet_robustness.cli.doctor",
    "nnunet_robustness.cli.install_shim",
    "nnunet_robustness.cli.plan_arch",
    "nnunet_robustness.cli.plan_context",
    "nnunet_robustness.cli.run",
    "nnunet_robustness.cli.make_dataset",
    "nnunet_robustness.cli.complexity",
    "nnunet_robustness.cli.corrupt",
    "nnunet_robustness.cli.eval",
    "nnunet_robustness.cli.card",
    "nnunet_robustness.cli.calibrate",
    "nnunet_robustness.cli.rate",
    "nnunet_robustness.cli.recommend",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet-robust",
        description="Robustness evaluation and architecture studies for nnU-Net v2 models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


# io.atomic_path's temporary name (.NAME.XXXXXXXX.tmp.ENDING beside NAME.ENDING) and io.staged_folder's hidden
# stage (OUT/.staged-XXXXXXXX/NAME, committed as OUT/NAME): a message names the file the user will find
_TEMPORARY_NAME = re.compile(r"/\.([^/.\s]+)\.[A-Za-z0-9_]{8}\.tmp((?:\.[A-Za-z0-9_-]+)*)")
_STAGE = re.compile(r"/\.staged-[A-Za-z0-9_]{8}(?=/)")
# numpy 2 scalars print as np.float64(0.5) in f"{value!r}": the user wants the number
_NUMPY_SCALAR = re.compile(r"\bnp\.(?:float|int|uint|bool|complex|str)_?\d*\(([^()]*)\)")


def one_line(message: object) -> str:
    """A message as the one line the user gets: the final names of temporary files, numbers without numpy's
    wrapping, and a message of several lines (a library's, passed on) joined with '; '."""
    text = _NUMPY_SCALAR.sub(r"\1", _STAGE.sub("", _TEMPORARY_NAME.sub(r"/\1\2", str(message))))
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    """Warnings reach the user as one line, like errors (no source file and line of ours)."""
    return f"nnunet-robust: warning: {one_line(message)}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed, for records (eval)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        status = args.func(args)
    except UserInputError as e:
        print(f"nnunet-robust: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnunet-robust: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        # The file system refused (unwritable folder, a file where a folder must go, disk full): that is
        # the user's environment, not a bug, so one line naming the path. Every verb writes through
        # staging or atomic files, so nothing half-written is left looking complete.
        if e.errno in NO_ROOM_ERRNOS:
            # io.atomic_path names the file; a write outside it (a library's own) names none: then -o
            where = e.filename or f"writing into {getattr(args, 'output', None) or 'the output'}"
            print(f"nnunet-robust: error: {one_line(where)}: {e.strerror or 'no room left'}: the disk is full or a file-size "
                  f"limit (ulimit -f, a quota) was reached; make room and run again (files written whole are "
                  f"kept)", file=sys.stderr)
            return 2
        if e.filename is None:
            raise
        where = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
        why = ("a file is in the way where a folder is needed" if isinstance(e, (FileExistsError, NotADirectoryError))
               else e.strerror or str(e))
        print(f"nnunet-robust: error: {one_line(f'{where}: {why}')}", file=sys.stderr)
        return 2
    except MemoryError as e:
        print(f"nnunet-robust: error: not enough memory ({e}); use smaller inputs or a machine with more memory",
              file=sys.stderr)
        return 2
    return 0 if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())

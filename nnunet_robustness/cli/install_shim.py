"""``nnunet-robust install-shim``: make nnU-Net's ``-tr`` lookup find our trainers."""

from __future__ import annotations

import argparse

from nnunet_robustness.shim import install_shim, remove_shim, shim_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "install-shim",
        help="place the one-line module that lets nnUNetv2_train/-predict find our trainers",
        description="Write nnunetv2/training/nnUNetTrainer/nnunet_robustness_trainers.py, which imports our "
                    "trainers so that `nnUNetv2_train ... -tr nnUNetTrainerNoSkip` finds them. A wheel install "
                    "already places it; run this after an editable install or after reinstalling nnU-Net. "
                    "Idempotent.",
    )
    parser.add_argument("--remove", action="store_true", help="remove the shim instead (before uninstalling)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.remove:
        removed = remove_shim()
        print(f"removed {shim_path()}" if removed else f"no shim at {shim_path()}")
        return 0
    path, written = install_shim()
    print(f"{'installed' if written else 'already up to date:'} {path}")
    return 0

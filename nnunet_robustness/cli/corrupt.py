"""``nnunet-robust corrupt``: write corrupted copies of an nnU-Net ``imagesTs``-style folder.

Each case's files (``CASE_0000<ending>``, ``CASE_0001<ending>``, ...) are read together with
nnU-Net's own reader (so the model later sees exactly these arrays), corrupted as one multi-channel
image, and written under ``OUT/<family>/<severity>/`` (presets: ``OUT/<group>/<name>/``) with the
same file names, pixel type and geometry (origin, spacing, direction) as each input file. The seed of
a case is ``item_seed(--seed, case, condition)`` (``nnunet_robustness.corruptions.specs``), the rule ``run``
uses, so both produce the same float32 arrays; it depends on the family, not the severity. Writing them
in the input's pixel type rounds and clips them on integer images (``run`` predicts from the float32
values), so ``corrupt`` + ``nnUNetv2_predict`` matches ``run`` exactly only on float32 images
(docs/cli.md, "corrupt + nnUNetv2_predict vs run").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_robustness.conditions import BACKGROUND_CHOICES, DEFAULT_BACKGROUND
from nnunet_robustness.errors import UserInputError, check_seed


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "corrupt",
        help="write corrupted copies of an imagesTs folder, one folder per family/severity",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--list", action="store_true", help="print the catalogue of families and presets, then exit")
    parser.add_argument("-i", "--input", type=Path, help="folder with CASE_XXXX<ending> files (nnU-Net imagesTs layout)")
    parser.add_argument("-o", "--output", type=Path, help="output folder; gets <family>/<severity>/ subfolders")
    parser.add_argument("--family", nargs="+", metavar="FAMILY", default=[],
                        help="families to apply ('all' for every family; see --list)")
    parser.add_argument("--severity", nargs="+", type=float, metavar="S", default=None,
                        help="severities, ints 1..5 or floats in (0, 5] (default: 1 2 3 4 5); the unchanged image is clean")
    parser.add_argument("--preset", nargs="+", metavar="PRESET", default=[],
                        help="named presets, e.g. 'seed-study' (all four) or 'seed-study:harder'")
    parser.add_argument("-l", "--labels", type=Path, default=None,
                        help="reference labels (CASE<ending>), needed by background_blur and its presets")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--background", choices=BACKGROUND_CHOICES, default=DEFAULT_BACKGROUND,
                        help="keep (default): an exact-zero background (skull-stripped MRI) stays zero, as the "
                             "artefact happened before the stripping and nnU-Net crops and normalises inside that "
                             "mask; corrupt: every voxel (docs/corruptions.md)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite outputs that already exist")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int | None:
    check_seed(args.seed)  # before any work: one rule for every verb
    if args.list:
        from nnunet_robustness.corruptions.catalogue import catalogue_text

        print(catalogue_text())
        return 0
    if args.input is None or args.output is None:
        raise UserInputError("corrupt needs -i/--input and -o/--output (or --list)")
    # the shared parser and run's case reader (NaN/Inf and multi-component files refused, as run does)
    from nnunet_robustness.conditions.parsing import corrupt_conditions
    from nnunet_robustness.runner.corrupt_folder import corrupt_folder

    done = corrupt_folder(args.input, args.output, corrupt_conditions(args.family, args.severity, args.preset),
                          labels=args.labels, seed=args.seed, background=args.background, overwrite=args.overwrite,
                          named_families=args.family)
    print(f"corrupt: {done.written} case-condition(s) written, {done.skipped} already present "
          f"({done.cases} cases x {done.conditions} conditions) in {args.output}")
    return 0

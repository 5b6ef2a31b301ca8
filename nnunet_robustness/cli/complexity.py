"""``nnunet-robust complexity``: texture disparity and simpler complexity measures of a dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# the summary's abbreviated columns, printed under it (the same words as docs/datasets.md)
COLUMN_LEGEND = ("NaN: cases whose TD is undefined (no foreground or no background), left out of the other "
                 "columns; TD: texture disparity in bits (higher = foreground and background textures differ "
                 "more = easier); CNR: contrast-to-noise ratio; fg fraction: foreground voxels / all voxels")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "complexity", help="task-complexity scores (LBP texture disparity) of a raw dataset",
        description="Per-case texture disparity KL(P_fg || P_bg) in bits between uniform LBP(24, 3) "
                    "histograms of foreground and background (higher = easier), contrast-to-noise ratio "
                    "and foreground fraction, for every labelled case of an nnU-Net raw dataset "
                    "(imagesTr/labelsTr and imagesTs/labelsTs). See docs/datasets.md.")
    parser.add_argument("dataset", metavar="DATASET_OR_FOLDER",
                        help="raw dataset folder, dataset id (501) or name (Dataset501_Textures) under "
                             "$nnUNet_raw")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="per-case CSV to write; the per-group summary goes next to it as "
                             "<name>_summary.csv (default: ./complexity_<DatasetFolder>.csv)")
    parser.add_argument("--channel", type=int, default=0,
                        help="image channel to measure (the _XXXX file index)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnunet_robustness.datasets.dataset_complexity import (
        format_summary,
        measure_dataset,
        summarize,
        write_case_table,
        write_summary_table,
    )
    from nnunet_robustness.datasets.raw_dataset import resolve_raw_dataset

    folder = resolve_raw_dataset(args.dataset)
    results = measure_dataset(folder, channel=args.channel, show_progress=sys.stderr.isatty())
    summaries = summarize(results)

    case_table = args.output if args.output is not None else Path(f"complexity_{folder.name}.csv")
    summary_table = case_table.with_name(case_table.name.removesuffix(".csv") + "_summary.csv")
    write_case_table(results, case_table)
    write_summary_table(summaries, summary_table)
    print(format_summary(summaries))
    print(COLUMN_LEGEND)
    print(f"per-case table: {case_table}\nsummary table: {summary_table}")
    return 0

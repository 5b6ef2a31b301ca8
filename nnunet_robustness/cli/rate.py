"""``nnunet-robust rate``: a Dice lower bound, a rating and a review flag for every case.

Applies a calibrator from `nnunet-robust calibrate` to predictions made with `run --save-probabilities`
(the same number of fold folders as for calibrate), for every condition in them. With reference labels,
also reports the actual Dice, whether each bound held, and the empirical coverage per condition: under
corruptions exchangeability no longer holds and coverage is measured, not guaranteed. Writes
ratings.csv, coverage.csv (with references), summary.json and report.html; with --save-masks, the safe
masks (see docs/trust.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rate", help="bound, rate and flag new cases with a calibrator (per condition)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    parser.add_argument("-c", "--calibrator", type=Path, required=True, help="calibrator file from calibrate")
    parser.add_argument("-i", "--input", type=Path, action="append", required=True, metavar="DIR",
                        help="prediction folder (run --save-probabilities); one per fold, as for calibrate")
    parser.add_argument("-djfile", "--dataset-json", type=Path, required=True, help="dataset.json (labels, file_ending)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("-ref", "--reference", type=Path,
                        help="reference labels, to measure the actual Dice and the coverage per condition")
    parser.add_argument("--condition", action="append", help="rate only this condition (repeatable)")
    parser.add_argument("--bands", help="override the calibrator's rating bands, e.g. A=0.85,B=0.7,C=0")
    parser.add_argument("--save-masks", action="store_true",
                        help="write the safe masks (and, for several folds, the rated ensemble segmentation)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnunet_robustness.io import refuse_foreign_file, refuse_output_inside, staged_folder
    from nnunet_robustness.reports.html import is_our_report
    from nnunet_robustness.reports.trust import write_report
    from nnunet_robustness.trust import load_calibrator, rate
    from nnunet_robustness.trust.calibrator import (
        COVERAGE_CSV,
        ENSEMBLE_FOLDER,
        RATINGS_CSV,
        REPORT_HTML,
        SAFE_MASKS_FOLDER,
        SUMMARY_JSON,
        is_our_ratings,
    )
    from nnunet_robustness.trust.conformal import no_statement_reason

    refuse_output_inside(args.output, {**{"prediction folder" + (f" {i + 1}" if len(args.input) > 1 else ""): folder
                                          for i, folder in enumerate(args.input)},
                                       "reference folder": args.reference})
    refuse_foreign_file(args.output / REPORT_HTML, is_our_report, "rate")
    refuse_foreign_file(args.output / RATINGS_CSV, is_our_ratings, "rate")
    calibrator = load_calibrator(args.calibrator)
    # one run's outputs replace the earlier run's as a set (a failing re-run keeps them whole; masks of
    # an earlier --save-masks run never mix with this run's), summary.json last as the "complete" mark
    outputs = (RATINGS_CSV, COVERAGE_CSV, REPORT_HTML, SAFE_MASKS_FOLDER, ENSEMBLE_FOLDER, SUMMARY_JSON)
    with staged_folder(args.output, outputs, marker=SUMMARY_JSON) as stage:
        result = rate(calibrator, args.input, args.dataset_json, reference=args.reference, output=stage,
                      conditions=args.condition, bands=args.bands, save_masks=args.save_masks,
                      recorded_output=args.output)
        write_report(result, stage / REPORT_HTML)
    ratings = result.ratings
    cases = ratings[["condition", "case"]].drop_duplicates()
    flagged = ratings.loc[ratings["case_flagged"], ["condition", "case"]].drop_duplicates()
    print(f"rate: {len(cases)} case(s) x condition, {len(flagged)} flagged for review -> {args.output}")
    calibrator = result.calibrator
    for _, row in result.coverage.iterrows():
        bound = calibrator.labels[row["label"]].dice_bound
        if not bound.informative:
            # every bound is 0, so it "holds" for every case: a coverage of 1.000 would read as a result
            print(f"rate: coverage {row['condition']} / {row['label']}: "
                  f"{no_statement_reason(bound.n_conformal, calibrator.alpha)}")
            continue
        print(f"rate: coverage {row['condition']} / {row['label']}: {row['coverage']:.3f} "
              f"(n = {row['n']}, nominal {row['nominal']:.2f})")
    return 0

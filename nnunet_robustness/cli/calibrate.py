"""``nnunet-robust calibrate``: fit a trust calibrator on labelled cases.

Takes predictions of calibration cases made with `nnunet-robust run --save-probabilities` (one folder,
or one folder per fold: `run -f 0 -o cal_f0`, `run -f 1 -o cal_f1`, ... for fold-spread features) and
their reference labels. Fits a split-conformal lower bound on each label's Dice (one-sided conformalised
quantile regression on uncertainty features), the threshold lambda of a "safe" mask whose expected
false-negative rate is at most the target (conformal risk control), and optionally a temperature.
Writes one JSON calibrator for `nnunet-robust rate` (see docs/trust.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_robustness.errors import check_seed


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="fit a conformal Dice bound and FNR-controlling mask on labelled calibration cases",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    parser.add_argument("-i", "--input", type=Path, action="append", required=True, metavar="DIR",
                        help="prediction folder made with run --save-probabilities; repeat with one folder per fold "
                             "for fold-spread features")
    parser.add_argument("-ref", "--reference", type=Path, required=True, help="reference labels of these cases")
    parser.add_argument("-djfile", "--dataset-json", type=Path, required=True, help="dataset.json (labels, file_ending)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="calibrator file to write (JSON)")
    parser.add_argument("--alpha", type=float, default=0.1,
                        help="miscoverage: the bound holds with probability >= 1 - alpha (default 0.1)")
    parser.add_argument("--fnr-target", type=float, default=0.1,
                        help="expected false-negative rate of the safe mask (default 0.1)")
    parser.add_argument("--condition", help="condition of the input folder to calibrate on (default: clean)")
    parser.add_argument("--fit-fraction", type=float, default=0.5,
                        help="share of cases fitting the quantile regressions (and temperature); the rest is the "
                             "conformal part (default 0.5)")
    parser.add_argument("--temperature-scaling", action="store_true",
                        help="fit a temperature on the fit part and use the scaled probabilities everywhere")
    parser.add_argument("--bands", default="A=0.8,B=0.6,C=0",
                        help="rating bands NAME=MIN_LOWER_BOUND, the lowest starting at 0 and flagged for review "
                             "(default A=0.8,B=0.6,C=0)")
    parser.add_argument("--band-width", type=int, default=2, metavar="VOXELS",
                        help="half-width of the boundary band in voxels (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fit/conformal split (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_seed(args.seed)  # before any work: one rule for every verb
    from nnunet_robustness.trust import calibrate, write_calibrator
    from nnunet_robustness.trust.conformal import no_statement_reason

    calibrator = calibrate(args.input, args.reference, args.dataset_json, alpha=args.alpha,
                           fnr_target=args.fnr_target, condition=args.condition, fit_fraction=args.fit_fraction,
                           temperature_scaling=args.temperature_scaling, bands=args.bands,
                           band_width=args.band_width, seed=args.seed)
    write_calibrator(calibrator, args.output)
    for name, label in calibrator.labels.items():
        bound = label.dice_bound
        # a bound of 0 for every case says nothing; printing its quantile as a number would read as a result
        quantile = (f"Q = {bound.correction:.4f}" if bound.informative
                    else no_statement_reason(bound.n_conformal, calibrator.alpha))
        print(f"calibrate: {name}: {bound.n_conformal} conformal cases, {quantile}, "
              f"FNR lambda = {label.risk_control.threshold:g}")
    print(f"calibrate: -> {args.output}")
    return 0

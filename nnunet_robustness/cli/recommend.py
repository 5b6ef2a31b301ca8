"""``nnunet-robust recommend``: which architecture the evidence favours for a dataset's task complexity.

Joins eval's per-case results of several models with each case's texture disparity (TD) from
`nnunet-robust complexity`, bins TD, and per (TD bin, condition) declares a winner only when a
paired bootstrap shows it beats every other model (95 %, Holm-adjusted); otherwise "no clear winner"
or, below --min-cases, "insufficient evidence". With --dataset, maps that dataset's median TD (and
--condition) to a cell and reports its verdict, effect size and CI; outside the evaluated TD or
severity range the answer is "insufficient evidence". See docs/datasets.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from nnunet_robustness.errors import UserInputError, check_seed

DEFAULT_OUTPUT = Path("recommendation.json")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recommend", help="which architecture the evaluated evidence favours at a dataset's task complexity",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example:\n  nnunet-robust recommend --evidence eval/501=complexity_Dataset501_TexturesA01.csv \\\n"
               "      --evidence eval/509=complexity_Dataset509_TexturesA09.csv --dataset 042 "
               "--condition gaussian_noise:2")
    evidence = parser.add_argument_group("evidence")
    evidence.add_argument("--evidence", action="append", required=True, metavar="EVAL=COMPLEXITY_CSV",
                          help="an eval output folder (or its per_case.parquet/.csv) and the complexity CSV of the "
                               "dataset it evaluated; repeat for several datasets")
    evidence.add_argument("--metric", default="dice",
                          help="per-case metric of eval to compare (default dice; hd95_mm etc.: lower is better)")
    evidence.add_argument("--label", default=None,
                          help="label/region to compare (default: each case's mean over the labels)")
    evidence.add_argument("--in-distribution", action="store_true",
                          help="keep only test cases at a blend level (alpha) their dataset was trained at")
    rule = parser.add_argument_group("rule")
    bins = rule.add_mutually_exclusive_group()
    bins.add_argument("--bins", type=int, default=3, help="number of quantile bins of TD (default 3)")
    bins.add_argument("--bin-edges", type=float, nargs="+", metavar="TD",
                      help="interior TD bin edges in bits, ascending (instead of quantile bins)")
    rule.add_argument("--min-cases", type=int, default=10,
                      help="fewer distinct cases in a cell: insufficient evidence (default 10)")
    rule.add_argument("--min-difference", type=float, default=0.0,
                      help="the winner must beat every model by more than this, in the metric's unit (default 0)")
    rule.add_argument("--correction", choices=("holm", "none"), default="holm",
                      help="multiplicity correction over a cell's comparisons (default holm)")
    rule.add_argument("--n-bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    rule.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    query = parser.add_argument_group("query (optional)")
    query.add_argument("--dataset", metavar="DATASET_OR_CSV",
                       help="your dataset: its complexity CSV, or a raw dataset folder / id / DatasetXXX_Name "
                            "(then measured now)")
    query.add_argument("--condition", default="clean",
                       help="condition of your data: clean (default), an evaluated condition name, or "
                            "FAMILY:SEVERITY with an estimated severity, e.g. gaussian_noise:2.5")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"JSON file with the full rule table and the answer (default {DEFAULT_OUTPUT})")
    parser.set_defaults(func=run)


def parse_evidence(specs: list[str]) -> list[tuple[Path, Path]]:
    pairs = []
    for spec in specs:
        eval_output, sep, complexity_csv = spec.partition("=")
        if not sep or not eval_output or not complexity_csv:
            raise UserInputError(f"--evidence {spec!r}: expected EVAL=COMPLEXITY_CSV, e.g. "
                                 "--evidence eval/501=complexity_Dataset501_Textures.csv")
        pairs.append((Path(eval_output), Path(complexity_csv)))
    return pairs


def dataset_texture_disparity(dataset: str) -> np.ndarray:
    """Per-case TD of the queried dataset: from a complexity CSV, or measured now on a raw dataset."""
    import numpy as np

    from nnunet_robustness.analysis.recommend import TD_COLUMN, read_complexity_table
    from nnunet_robustness.datasets.dataset_complexity import measure_dataset
    from nnunet_robustness.datasets.raw_dataset import resolve_raw_dataset

    if dataset.endswith(".csv"):
        return read_complexity_table(dataset)[TD_COLUMN].to_numpy(dtype=float)
    results = measure_dataset(resolve_raw_dataset(dataset), show_progress=sys.stderr.isatty())
    return np.array([r.measures.texture_disparity_bits for r in results], dtype=float)


def run(args: argparse.Namespace) -> int:
    check_seed(args.seed)  # before any work: one rule for every verb
    # checked before the evidence is read and the rule fitted (minutes): float() takes "nan" and "inf"
    if ":" in args.condition:
        level = args.condition.rpartition(":")[2]
        try:
            finite = math.isfinite(float(level))
        except ValueError:
            finite = True  # not a number at all: resolve_condition says so, naming the evaluated conditions
        if not finite:
            raise UserInputError(f"--condition {args.condition!r}: severity {level!r} is not a finite number")
    from nnunet_robustness.analysis.recommend import (
        RuleSettings,
        fit_rule,
        format_recommendation,
        format_rule,
        load_evidence,
        make_bins,
        recommend,
    )
    from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN
    from nnunet_robustness.io import atomic_write_json

    settings = RuleSettings(metric=args.metric, label=args.label or FOREGROUND_MEAN, min_cases=args.min_cases,
                            n_bootstrap=args.n_bootstrap, seed=args.seed, correction=args.correction,
                            min_difference=args.min_difference)
    evidence = load_evidence(parse_evidence(args.evidence), settings, in_distribution=args.in_distribution)
    # Each (eval output, case) counts once in the quantiles, whatever the number of models and conditions.
    bins = make_bins(evidence.drop_duplicates(["source", "case"])["td"].to_numpy(), n_bins=args.bins,
                     edges=args.bin_edges)
    rule = fit_rule(evidence, settings, bins)
    print(format_rule(rule))
    query = None
    if args.dataset is not None:
        answer = recommend(rule, dataset_texture_disparity(args.dataset), args.condition)
        print()
        print(format_recommendation(answer, settings.metric))
        # The cell itself is in "cells"; the answer names it by bin_index and condition.
        query = {"dataset": args.dataset, "requested_condition": args.condition,
                 **{k: v for k, v in asdict(answer).items() if k != "cell"}}
    atomic_write_json(args.output, rule.to_json(query))
    print(f"rule table: {args.output}")
    return 0

"""``nnunet-robust eval``: segmentation metrics and robustness summaries of prediction folders.

Compares nnU-Net-style prediction folders against a reference folder (labelsTs; or several raters'
folders, whose consensus is then the reference) with the labels and regions of dataset.json: Dice,
IoU, HD95, ASSD, NSD, volume differences and TP/FP/FN per case, label and condition, and what the
model saw of each condition (from run's records). For several models, the report opens with a
verdict: which model is more robust under each family and condition, judged on the drop from clean
and the score under the condition together (paired differences, intervals checked for coverage by
simulation, Wilcoxon tests, Benjamini-Hochberg FDR, the smallest detectable difference, training-run
variance with several runs per model), after a sanity gate that leaves out models failing on clean
images; three or more models are ranked with P(rank 1) and rank intervals. Also: intervals of every
mean, degradation vs clean, metric-vs-severity curves, the ROOD-MRI summary, best-model shares and
paired tests. With --strata or --metadata and --by, the same per group of cases (scanner=B, sex=F), with
the group sizes, a warning for small groups and a plot of the degradation by group. Writes per_case.csv,
per_case.parquet, summary.json and report.html (raters.csv with several references) into the output
folder; a failing re-run leaves an earlier output whole (see docs/evaluation.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_robustness.errors import UserInputError, check_seed


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="metrics and robustness summaries of prediction folders against labelsTs",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", action="append", metavar="NAME=DIR[,DIR...]", default=None,
                        help="a model's prediction folder (run's output, a folder of condition sub-folders, or a "
                             "folder of predictions); several folders separated by commas are training runs of "
                             "the model (seeds, or nnU-Net's folds predicted separately): the verdict then includes "
                             "the variance between runs; repeat to compare models")
    source.add_argument("-i", "--input", type=Path, help="one prediction folder (model named after the folder)")
    parser.add_argument("-ref", "--reference", type=Path, required=True, action="append",
                        help="reference labels folder (labelsTs); repeat for several raters: statistics and the "
                             "verdict then use their consensus, and raters.csv compares each prediction with each "
                             "rater and the inter-rater range")
    parser.add_argument("--allow-weak-models", action="store_true",
                        help="keep models that fail the sanity gate (e.g. empty clean predictions) in the verdict, "
                             "marked")
    parser.add_argument("--consensus", choices=("staple", "majority"), default="staple",
                        help="consensus of several references: STAPLE (SimpleITK, default) or majority vote")
    parser.add_argument("-djfile", "--dataset-json", type=Path, required=True,
                        help="dataset.json with the labels/regions and file_ending")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--nsd-tolerance", type=float, default=1.0, metavar="MM",
                        help="tolerance of the normalised surface Dice in mm (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("-np", "--num-processes", type=int, default=2,
                        help="processes computing metrics, one case at a time each (default 2)")
    parser.add_argument("-device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: surface distances (HD95, ASSD, NSD) with torch on the GPU, the same values; "
                             "the CPU code when torch sees no GPU (default cpu)")
    parser.add_argument("--strata", type=Path, default=None, metavar="CSV",
                        help="case,stratum CSV: the verdict and scores are also given per stratum (default: the "
                             "levels of a dataset made by make-dataset textures, from its record next to -djfile)")
    parser.add_argument("--metadata", type=Path, default=None, metavar="CSV",
                        help="case metadata (a 'case' column and one column per attribute, e.g. scanner, sex, site): "
                             "with --by, the scores, degradation and verdict per subgroup")
    parser.add_argument("--by", default=None, metavar="COLUMN[,COLUMN...]",
                        help="columns of --metadata to group the cases by, each on its own (scanner,sex: the groups "
                             "scanner=A, scanner=B, sex=F, sex=M); every test in the report's one FDR family")
    parser.add_argument("--equivalence", type=float, default=None, metavar="DELTA",
                        help="equivalence margin in Dice: a drop difference whose 90%% interval lies inside "
                             "+/-DELTA is reported as 'equivalent within +/-DELTA' (two one-sided tests)")
    parser.add_argument("--shift", type=Path, default=None, metavar="FILE",
                        help='JSON/YAML {NAME: {"reference": LABELS_FOLDER, "predictions": {MODEL: FOLDER}}}: test '
                             "sets from elsewhere (another site, scanner); each model's drop on them is set beside "
                             "its synthetic conditions, and every condition is scored on how well it predicts the "
                             "models' order under the real shift (docs/evaluation.md, 'Real shift')")
    parser.add_argument("--no-report", action="store_true", help="skip report.html")
    parser.set_defaults(func=run)


def parse_models(specs: list[str] | None, single: Path | None) -> dict[str, Path | list[Path]]:
    """NAME=FOLDER, or NAME=FOLDER1,FOLDER2,... for several training runs of one model."""
    if single is not None:
        return {single.resolve().name: single}
    models: dict[str, Path | list[Path]] = {}
    for spec in specs or []:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise UserInputError(f"--model {spec!r}: expected NAME=FOLDER, e.g. --model baseline=out/baseline")
        if name in models:
            raise UserInputError(f"--model {spec!r}: model name {name!r} given twice")
        if ":" in name:
            raise UserInputError(f"--model {spec!r}: a model name cannot contain ':' (it names training runs)")
        parts = folder.split(",")
        if any(not part.strip() for part in parts):
            raise UserInputError(f"--model {spec!r}: an empty folder in the comma-separated list of runs")
        folders = [Path(part) for part in parts]
        models[name] = folders[0] if len(folders) == 1 else folders
    return models


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (quoted for a shell), for summary.json and the robustness card."""
    import shlex

    return shlex.join(["nnunet-robust", *getattr(args, "argv", [])])


def run(args: argparse.Namespace) -> int:
    check_seed(args.seed)  # before any work: one rule for every verb
    from nnunet_robustness.analysis import eval_pipeline as names
    from nnunet_robustness.analysis.eval_pipeline import REPORT_HTML, check_output_folder
    from nnunet_robustness.evaluation import evaluate, write_report
    from nnunet_robustness.io import refuse_foreign_file, staged_folder
    from nnunet_robustness.reports.html import is_our_report

    models = parse_models(args.model, args.input)
    check_output_folder(args.output, models, args.reference)
    refuse_foreign_file(args.output / REPORT_HTML, is_our_report, "eval")
    # every file eval may write: one run's set replaces the earlier run's whole (a stale report.html after
    # --no-report, a raters.csv of a run with several references), summary.json last as the "complete" mark
    outputs = (names.PER_CASE_PARQUET, names.PER_CASE_CSV, *names.analysis_tables(), names.CONSENSUS_FOLDER,
               REPORT_HTML, names.SUMMARY_JSON)
    try:
        # outputs of an earlier run stay whole if this one fails
        with staged_folder(args.output, outputs, marker=names.SUMMARY_JSON) as stage:
            result = evaluate(models, args.reference, args.dataset_json, stage, nsd_tolerance_mm=args.nsd_tolerance,
                              seed=args.seed, n_bootstrap=args.n_bootstrap, num_processes=args.num_processes,
                              consensus_method=args.consensus, allow_weak_models=args.allow_weak_models,
                              strata_file=args.strata, equivalence=args.equivalence, shift_file=args.shift,
                              metadata_file=args.metadata, by=args.by, command=command_line(args),
                              device=args.device)
            if not args.no_report:
                write_report(result, stage / REPORT_HTML)
    except (PermissionError, NotADirectoryError, FileExistsError) as e:
        raise UserInputError(f"{args.output}: cannot write the outputs there ({e.strerror or e})") from None
    per_case = result.per_case
    print(f"eval: {per_case['case'].nunique()} cases x {len(result.conditions)} model-condition(s) x "
          f"{per_case['label'].nunique()} label(s) -> {args.output}")
    return 0

"""``nnunet-robust study NAME --scale smoke|cpu|gpu``: a seed study end to end, resumable, with verdicts."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

STUDY_NAMES = ("skip-complexity", "noise", "context-fbr")  # nnunet_robustness.studies.registry.STUDIES
SCALE_NAMES = ("smoke", "cpu", "gpu")  # nnunet_robustness.studies.scales.SCALES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study",
        help="reproduce a seed study (skip connections, noise, context vs FBR) with nnU-Net's real tools",
        description="Runs one of the seed studies end to end in one folder with nnU-Net's real CLIs: "
                    "make-dataset -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train of U-Net, No-Skip and "
                    "attention-gated U-Net -> run -> eval (-> complexity -> recommend for skip-complexity), then "
                    "tests each published finding on the study's own results and writes study.json and study.html "
                    "(verdicts, by a rule stated up front: reproduced, same direction but smaller or larger, contradicted, "
                    "inconclusive, unconverged, not learned). A re-run continues where it stopped. "
                    "Studies run into the same -o share datasets and models: run skip-complexity first and the "
                    "other two mostly predict and evaluate. See docs/studies/README.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
               "  nnunet-robust study skip-complexity --scale cpu -o studies   # 9 trainings: 5-6 h on 2 CPU cores\n"
               "  nnunet-robust study noise --scale cpu -o studies             # its models: minutes after the above\n"
               "  nnunet-robust study context-fbr --scale gpu -device cuda -o studies",
    )
    parser.add_argument("study", choices=STUDY_NAMES, help="which study")
    parser.add_argument("--scale", choices=SCALE_NAMES, default="smoke",
                        help="smoke: minutes, checks the pipeline (its Dice means nothing); cpu: 3 runs per "
                             "architecture, hours on 2 CPU cores (about 30 min per training, No-Skip's 50 epochs 75); gpu: the published "
                             "protocol's sizes and nnU-Net's 1000 epochs (default smoke)")
    parser.add_argument("-o", dest="output", type=Path, default=Path("studies_output"),
                        help="output folder; everything goes to OUTPUT/SCALE/ (default studies_output)")
    parser.add_argument("-device", default="cpu", choices=["cpu", "cuda"], help="default cpu")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnunet_robustness.errors import UserInputError
    from nnunet_robustness.studies import run_study

    output = args.output.resolve()
    if output.exists() and not output.is_dir():
        raise UserInputError(f"-o {args.output}: exists and is not a folder")
    if args.scale == "gpu" and args.device != "cuda":
        raise UserInputError("--scale gpu trains nine levels x three architectures for nnU-Net's 1000 epochs: "
                             "run it with -device cuda (on a CPU use --scale cpu)")
    if args.device == "cuda":
        # as run does, before anything starts: the study's first CUDA step (training) would otherwise fail
        # minutes in, inside a subprocess whose log the user must open
        import torch

        if not torch.cuda.is_available():
            raise UserInputError("-device cuda requested but torch sees no CUDA device; use -device cpu "
                                 "(with --scale smoke or cpu)")
    run_study(args.study, args.scale, output, args.device,
              command=shlex.join(["nnunet-robust", *sys.argv[1:]]) if len(sys.argv) > 1 else None)
    return 0

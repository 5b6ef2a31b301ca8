"""``nnunet-robust demo``: synthetic data -> three nnU-Net models -> robustness report, on a CPU."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate data, train three architectures with nnU-Net, evaluate robustness, write a report",
        description="End to end with nnU-Net's real tools, in one folder: a synthetic texture dataset at two "
                    "complexity levels, nnUNetv2_plan_and_preprocess, nnUNetv2_train of nnU-Net's U-Net, the "
                    "No-Skip and the attention-gated U-Net (short CPU schedule), `run` under the seed study's "
                    "conditions and MRI artefacts, `eval` and its HTML report. About 5-6 minutes on 2 CPU cores; "
                    "a re-run reuses finished steps.",
    )
    parser.add_argument("-o", dest="output", type=Path, default=Path("demo_output"),
                        help="output folder (default: demo_output)")
    parser.add_argument("-device", default="cpu", choices=["cpu", "cuda"], help="default cpu")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnunet_robustness.demo import Demo, DemoSettings

    Demo(DemoSettings(output=args.output.resolve(), device=args.device)).run()
    return 0

"""``nnunet-robust plan-arch``: plans whose networks are No-Skip / attention-gated / skip-subset U-Nets."""

from __future__ import annotations

import argparse

from nnunet_robustness.nnunet_paths import preprocessed_dataset_folder
from nnunet_robustness.plans import ARCH_PRESETS, ArchChoice, write_arch_plans


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan-arch",
        help="write a plans file that uses our U-Net variants with nnU-Net's stock trainer",
        description="Copy a dataset's plans (default nnUNetPlans) into a new plans file whose network is our "
                    "skip-selective U-Net (same sizes as planned by nnU-Net). Train it with the stock trainer: "
                    "`nnUNetv2_train D 3d_fullres 0 -p nnUNetPlansNoSkip`. The preprocessed data is reused.",
        epilog="Examples:\n"
               "  nnunet-robust plan-arch -d 501 --arch noskip                 # -> nnUNetPlansNoSkip\n"
               "  nnunet-robust plan-arch -d 501 --arch attention -c 2d        # -> nnUNetPlansAttentionGate\n"
               "  nnunet-robust plan-arch -d 501 --arch unet --skip-levels -1 -2   # only the 2 deepest skips\n"
               "  nnunet-robust plan-arch -d 501 --arch learned -c 2d          # -> nnUNetPlansLearnedSkip\n"
               "  nnunet-robust plan-arch -d 501 --arch noskip -p nnUNetResEncUNetMPlans",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-d", dest="dataset", required=True, help="dataset name or ID, as for nnU-Net")
    parser.add_argument("--arch", required=True, choices=sorted(ARCH_PRESETS),
                        help="noskip: decoder sees only the bottleneck; attention: attention gate on every skip; "
                             "unet: plain skips (use with --skip-levels); learned / learned-channel: a learnable "
                             "sigmoid gate per skip level / per skip channel, initialised open (see docs/learned_gates.md)")
    parser.add_argument("-c", dest="configurations", nargs="+", default=None,
                        help="configurations to change (default: every configuration with its own architecture)")
    parser.add_argument("--skip-levels", type=int, nargs="+", default=None,
                        help="keep only these skips: 0 = full resolution, negative counts from the deepest "
                             "(-1 = deepest)")
    parser.add_argument("-p", dest="source_plans", default="nnUNetPlans", help="source plans name (default nnUNetPlans)")
    parser.add_argument("--plans-name", default=None,
                        help="name of the new plans (default: source name + NoSkip / AttentionGate / Skips...)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing, different plans file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    choice = ArchChoice.from_cli(args.arch, args.skip_levels)
    path, written = write_arch_plans(preprocessed_dataset_folder(args.dataset), args.source_plans, choice,
                                     args.configurations, args.plans_name, args.overwrite)
    plans_name = path.stem
    print(f"{'wrote' if written else 'already up to date:'} {path}")
    print(f"train with: nnUNetv2_train {args.dataset} CONFIGURATION FOLD -p {plans_name}")
    return 0

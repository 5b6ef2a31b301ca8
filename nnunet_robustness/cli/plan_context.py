"""``nnunet-robust plan-context``: configurations with scaled patch sizes (context vs foreground ratio)."""

from __future__ import annotations

import argparse
import math

from nnunet_robustness.nnunet_paths import preprocessed_dataset_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan-context",
        help="add configurations with scaled patch sizes (more or less context) to a dataset's plans",
        description="Add configurations such as 3d_fullres_ctx0.50 to the plans file: each inherits from the "
                    "source configuration (same preprocessed data, same network) and overrides the patch size, "
                    "scaled and rounded to multiples of the network's pooling, and the batch size. "
                    "--memory-matched keeps patch voxels x batch size at most the source's (larger context, "
                    "smaller batch; never below nnU-Net's minimum of 2). The plans file is backed up first; "
                    "existing configurations are never changed. Rules: docs/context_fbr.md.",
        epilog="Examples:\n"
               "  nnunet-robust plan-context -d 501 -c 3d_fullres --scales 0.5 0.75 1.0 1.25\n"
               "  nnunet-robust plan-context -d 501 -c 2d --scales 0.5 1.0 1.5 --memory-matched   # 2d_ctx0.50_mem, ...\n"
               "  nnUNetv2_train 501 3d_fullres_ctx0.50 0 -tr nnUNetTrainer_fg033",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-d", dest="dataset", required=True, help="dataset name or ID, as for nnU-Net")
    parser.add_argument("-c", dest="configurations", nargs="+", required=True,
                        help="source configuration(s), e.g. 3d_fullres or 2d")
    parser.add_argument("--scales", type=float, nargs="+", required=True,
                        help="patch edge-length scale factors, e.g. 0.5 0.75 1.0 1.25")
    parser.add_argument("--memory-matched", action="store_true",
                        help="scale the batch size so that patch voxels x batch size stays constant "
                             "(configurations named ..._ctxS_mem)")
    parser.add_argument("-p", dest="plans", default="nnUNetPlans", help="plans name (default nnUNetPlans)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing configurations of the same name that differ")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnunet_robustness.plans import write_context_plans

    folder = preprocessed_dataset_folder(args.dataset)
    result = write_context_plans(folder, args.plans, args.configurations, args.scales, args.memory_matched,
                                 args.overwrite)
    if result.written:
        print(f"wrote {result.plans_file} (backup of the previous file: {result.backup})")
    else:
        print(f"already up to date: {result.plans_file}")
    print(f"{'configuration':<28} {'patch size':<16} {'batch':>5} {'voxels x batch':>15}  status")
    for c in result.configurations:
        status = ("added" if c.name in result.added else "replaced" if c.name in result.replaced else "unchanged")
        print(f"{c.name:<28} {'x'.join(map(str, c.patch_size)):<16} {c.batch_size:>5} "
              f"{c.memory_ratio:>14.2f}x  {status}")
        if c.memory_matched and c.memory_ratio > 1 + 1e-9:
            print(f"  note: {c.name}: the minimum batch size {c.batch_size} exceeds the memory budget "
                  f"({c.memory_ratio:.2f}x the source's voxels x batch)")
    median = _median_shape(folder, args.plans, result.configurations)
    for c in result.configurations:
        shape = median.get(c.source)
        if shape and any(p > math.ceil(s) for p, s in zip(c.patch_size, shape)):
            print(f"  note: {c.name}: patch {c.patch_size} exceeds the median image size {shape}; "
                  "nnU-Net pads, so the extra context is padding for typical images")
    first = result.configurations[0].name if result.configurations else "CONFIGURATION"
    print(f"train with: nnUNetv2_train {args.dataset} {first} FOLD -tr nnUNetTrainer_fg033")
    return 0


def _median_shape(folder, plans_name: str, configurations) -> dict[str, list[float]]:
    import json

    plans = json.loads((folder / f"{plans_name}.json").read_text())
    return {c.source: plans["configurations"][c.source].get("median_image_size_in_voxels")
            for c in configurations if c.source in plans["configurations"]}

"""``nnunet-robust make-dataset textures``: synthetic texture-blend datasets in nnU-Net's raw format."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nnunet_robustness.errors import UserInputError, check_seed


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-dataset", help="write a synthetic dataset in nnU-Net's raw format",
        description="Write a synthetic dataset in nnU-Net's raw format (see docs/datasets.md).")
    generators = parser.add_subparsers(dest="generator", metavar="GENERATOR", required=True)

    textures = generators.add_parser(
        "textures", help="random blobs of texture A blended with background texture B",
        description="Random smooth blobs (label 1) on a background texture B. Inside the blobs the image "
                    "is (1 - alpha) * A + alpha * B: alpha = 0 shows pure foreground texture A (easiest), "
                    "alpha = 1 makes foreground and background identical (impossible).")
    textures.add_argument("-d", "--dataset-id", type=int, help="nnU-Net dataset id (1-999)")
    textures.add_argument("--name", default="Textures", help="dataset name: the folder is DatasetXXX_NAME (default: %(default)s)")
    textures.add_argument("-o", "--output", type=Path, default=None,
                          help="folder to write DatasetXXX_NAME into (default: $nnUNet_raw)")
    textures.add_argument("--shape", type=int, nargs="+", default=[256, 256], metavar="N",
                          help="image size: 2 numbers for 2D, 3 for 3D, in array order (default: 256 256)")
    textures.add_argument("--textures", nargs=2, metavar=("A", "B"), default=None,
                          help="foreground texture A and background texture B (default: brick grass in "
                               "2D, noise-coarse noise-fine in 3D); see --list-textures")
    textures.add_argument("--alpha", type=float, nargs="+", default=None, metavar="ALPHA",
                          help="blend levels of training and test cases (default: 0.1 0.2 ... 0.9)")
    textures.add_argument("--train-alpha", type=float, nargs="+", default=None, metavar="ALPHA",
                          help="blend levels of the training cases (default: those of --alpha)")
    textures.add_argument("--test-alpha", type=float, nargs="*", default=None, metavar="ALPHA",
                          help="blend levels of the test cases; none given: no test set (default: those of --alpha)")
    textures.add_argument("--num-train", type=int, default=80, help="training cases per training alpha (default: %(default)s)")
    textures.add_argument("--num-test", type=int, default=20, help="test cases per test alpha (default: %(default)s)")
    textures.add_argument("--blobs", type=int, nargs=2, default=[1, 1], metavar=("MIN", "MAX"),
                          help="number of blobs per image, drawn uniformly from MIN..MAX (default: 1 1)")
    textures.add_argument("--blob-diameter", type=float, nargs=2, default=[0.3, 0.6], metavar=("MIN", "MAX"),
                          help="nominal blob diameter as a fraction of the shortest image side (default: 0.3 0.6)")
    textures.add_argument("--seed", type=int, default=0, help="random seed; same arguments, same files (default: %(default)s)")
    textures.add_argument("--raters", type=int, default=0, metavar="N",
                          help="also write N synthetic raters' labels of the test cases, labelsTs_rater1..N: "
                               "each reference deformed by a smooth random displacement field (default: none)")
    textures.add_argument("--rater-displacement", type=float, nargs="+", default=[2.0], metavar="MM",
                          help="largest boundary displacement of the raters in mm (= pixels here): one value for "
                               "all raters or one per rater (default: %(default)s)")
    textures.add_argument("--rater-smoothness", type=float, default=None, metavar="MM",
                          help="smoothness (Gaussian sigma) of the displacement fields in mm (default: 10%% of the "
                               "shortest image side)")
    textures.add_argument("--list-textures", action="store_true", help="list the textures and exit")
    textures.set_defaults(func=run_textures)


def run_textures(args: argparse.Namespace) -> int:
    check_seed(args.seed)  # before any work: one rule for every verb
    # imported here so that `nnunet-robust --help` does not load numpy, SimpleITK and scikit-image
    from nnunet_robustness.datasets.texture_sources import format_texture_list
    from nnunet_robustness.datasets.textures_dataset import (
        DEFAULT_ALPHAS,
        DEFAULT_TEXTURES,
        TexturesDatasetConfig,
        count_existing_cases,
        generate_textures_dataset,
    )

    if args.list_textures:
        print(format_texture_list())
        return 0
    if args.dataset_id is None:
        raise UserInputError("-d/--dataset-id is required (unless --list-textures)")
    output_root = args.output
    if output_root is None:
        if not os.environ.get("nnUNet_raw"):
            raise UserInputError("nnUNet_raw is not set; set it or give -o/--output")
        output_root = Path(os.environ["nnUNet_raw"])

    # sorted, so that the order the levels are typed in does not make a different dataset
    alphas = tuple(sorted(args.alpha)) if args.alpha is not None else DEFAULT_ALPHAS
    shape = tuple(args.shape)
    # an unsupported shape gets its error from validate(); any pair will do until then
    foreground, background = args.textures or DEFAULT_TEXTURES.get(len(shape), DEFAULT_TEXTURES[2])
    config = TexturesDatasetConfig(
        dataset_id=args.dataset_id,
        name=args.name,
        shape=shape,
        texture_foreground=foreground,
        texture_background=background,
        train_alphas=tuple(sorted(args.train_alpha)) if args.train_alpha is not None else alphas,
        test_alphas=tuple(sorted(args.test_alpha)) if args.test_alpha is not None else alphas,
        num_train_per_alpha=args.num_train,
        num_test_per_alpha=args.num_test,
        blobs_per_image=tuple(args.blobs),
        blob_diameter=tuple(args.blob_diameter),
        seed=args.seed,
    )
    config.validate()  # before any folder is created, so a typo leaves nothing behind
    raters = None
    if args.raters:
        from nnunet_robustness.datasets.synthetic_raters import RatersConfig, write_rater_labels

        raters = RatersConfig.from_cli(args.raters, args.rater_displacement, args.rater_smoothness, args.seed)
        if not config.test_alphas or config.num_test_per_alpha < 1:
            raise UserInputError(f"--raters {args.raters} annotates the test cases, but there are none "
                                 "(give --num-test > 0 and test alphas)")
    reused = count_existing_cases(config, output_root)
    folder = generate_textures_dataset(config, output_root, show_progress=sys.stderr.isatty())
    num_train = config.num_train_per_alpha * len(config.train_alphas)
    num_test = config.num_test_per_alpha * len(config.test_alphas)
    action = ("reused" if reused == num_train + num_test else
              f"wrote {num_train + num_test - reused} new case(s), reused {reused}, in" if reused else "wrote")
    print(f"{action} {folder} ({num_train} training, {num_test} test cases; "
          f"textures {config.texture_foreground} / {config.texture_background})")
    if raters is not None:
        from nnunet_robustness.datasets.textures_dataset import plan_cases

        # a test case's number fixes its raters' fields, so case i has the same raters at every alpha
        keys = {case.identifier: case.seed_index for case in plan_cases(config) if case.split == "test"}
        rater_folders = write_rater_labels(folder, raters, case_keys=keys)
        print(f"wrote {len(rater_folders)} raters' labels: {', '.join(f.name for f in rater_folders)} "
              f"(largest displacement {' / '.join(f'{d:g}' for d in raters.max_displacement_mm)} mm)")
    return 0

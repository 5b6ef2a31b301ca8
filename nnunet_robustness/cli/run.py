"""``nnunet-robust run``: predict test images under corruptions with a trained nnU-Net model."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_robustness.errors import UserInputError, check_seed


def register(subparsers: argparse._SubParsersAction) -> None:
    from nnunet_robustness.conditions import ADVERSARIAL_FAMILIES, ADVERSARIAL_NOTE, CONDITION_SETS, CONTEXT_NOTE

    parser = subparsers.add_parser(
        "run",
        help="predict test images under corruptions with nnU-Net's own predictor (model loaded once)",
        description="Load a trained nnU-Net model once and, for the clean images and every requested corruption "
                    "condition, apply the corruption in memory to the raw image and run nnU-Net's sliding-window "
                    "prediction. Writes <out>/<condition>/<case><ending> like nnUNetv2_predict, plus run.json. "
                    "Resumable (finished items are skipped) and shardable (--num-parts/--part-id).",
        epilog="Examples:\n"
               "  nnunet-robust run -i imagesTs -o robust/ -d 501 -c 2d -tr nnUNetTrainerNoSkip -f 0 \\\n"
               "      --preset seed-study --reference labelsTs -device cpu\n"
               "  nnunet-robust run -i imagesTs -o robust/ -m $nnUNet_results/Dataset501_X/"
               "nnUNetTrainer__nnUNetPlans__3d_fullres \\\n"
               "      --conditions gaussian_noise:1-5 motion:3 bias_field --num-parts 4 --part-id 0\n"
               f"Condition sets (--preset): {', '.join(CONDITION_SETS)}, or auto (the modality's set, from "
               "the model's dataset.json channel names). Condition specs: FAMILY, FAMILY:3, "
               "FAMILY:1,3,5, FAMILY:1-5, a corruption preset such as seed-study:harder; "
               "`nnunet-robust corrupt --list` lists the corruption families and presets.\n"
               f"Adversarial conditions: {ADVERSARIAL_NOTE}:\n"
               + "".join(f"  {name:<16} {meaning}\n" for name, meaning in ADVERSARIAL_FAMILIES.items())
               + f"Context condition:\n  {'context':<16} {CONTEXT_NOTE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # the groups in the order --help shows them
    _input_output_arguments(parser)
    _model_arguments(parser)
    _condition_arguments(parser)
    _work_arguments(parser)
    parser.set_defaults(func=run)


def _input_output_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("input and output")
    io.add_argument("-i", dest="input", required=True, type=Path,
                    help="imagesTs-style folder (CASE_0000.nii.gz, ...) or a text file listing CASE_0000 images")
    io.add_argument("-o", dest="output", required=True, type=Path, help="output folder")
    io.add_argument("--reference", type=Path, default=None,
                    help="labelsTs-style folder; needed by conditions that use the foreground (background blur)")
    io.add_argument("--save-probabilities", action="store_true",
                    help="also write <case>.npz (probabilities) and <case>.pkl, like nnUNetv2_predict")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model (either -m, or -d/-c[/-tr/-p] as for nnUNetv2_predict)")
    model.add_argument("-m", dest="model_folder", type=Path, default=None, help="trained model folder")
    model.add_argument("-d", dest="dataset", default=None, help="dataset name or ID")
    model.add_argument("-c", dest="configuration", default=None, help="configuration, e.g. 3d_fullres")
    model.add_argument("-tr", dest="trainer", default="nnUNetTrainer", help="trainer (default nnUNetTrainer)")
    model.add_argument("-p", dest="plans", default="nnUNetPlans", help="plans (default nnUNetPlans)")
    model.add_argument("-f", dest="folds", nargs="+", default=None,
                       help="folds to ensemble (default: every fold with the checkpoint)")
    model.add_argument("-chk", dest="checkpoint", default="checkpoint_final.pth", help="checkpoint file name")
    model.add_argument("-step_size", type=float, default=0.5, help="sliding-window step, fraction of the patch")
    model.add_argument("--disable_tta", action="store_true", help="no mirroring test-time augmentation")
    model.add_argument("-device", default="cuda", choices=["cuda", "cpu", "mps"], help="default cuda, as nnU-Net")


def _condition_arguments(parser: argparse.ArgumentParser) -> None:
    from nnunet_robustness.conditions import BACKGROUND_CHOICES, DEFAULT_BACKGROUND
    from nnunet_robustness.runner.ssim_scale import SSIM_SCALE_CASES

    conditions = parser.add_argument_group("conditions (clean is always included)")
    conditions.add_argument("--conditions", nargs="+", default=[], metavar="SPEC", help="condition specs")
    conditions.add_argument("--preset", nargs="+", default=[], metavar="SET", help="named condition sets")
    conditions.add_argument("--config", type=Path, default=None,
                            help='JSON/YAML file {"conditions": [SPEC, ...], "sets": [SET, ...]}')
    conditions.add_argument("--seed", type=int, default=0, help="base seed; each item's seed derives from it")
    conditions.add_argument("--attack-objective", choices=("reference", "prediction"), default=None,
                            help="what adversarial conditions push away from: the reference segmentation (the "
                                 "default when --reference is given: what Dice is scored against) or the model's own "
                                 "clean prediction (the default without --reference; works on unlabelled data). "
                                 "Recorded per condition in run.json and shown in eval's report")
    conditions.add_argument("--background", choices=BACKGROUND_CHOICES, default=DEFAULT_BACKGROUND,
                            help="keep (default): an exact-zero background (skull-stripped MRI) stays zero after "
                                 "corrupting, so nnU-Net crops and normalises the corrupted image inside the clean "
                                 "image's mask; corrupt: every voxel. Recorded in run.json")
    conditions.add_argument("--force-modality", action="store_true",
                            help="apply CT (ct_*), ultrasound (us_*) and microscopy families even where the "
                                 "model's dataset.json names channels of another modality (e.g. ct_metal on 'T1'); "
                                 "without it such a run is refused. Warns and records it in run.json")

    conditions.add_argument("--severity-scale", choices=("physical", "calibrated"), default="physical",
                            help="physical (default): each family's documented parameter table; calibrated: per "
                                 "family, the parameter at which the model's normalised input reaches SSIM 0.95, "
                                 "0.90, 0.80, 0.70, 0.60 for levels 1-5 on a few clean cases (conditions "
                                 "<family>_cal<k>; docs/evaluation.md)")
    conditions.add_argument("--calibration-cases", type=int, default=SSIM_SCALE_CASES, metavar="N",
                            help=f"clean cases the calibrated scale is fitted on: the first N (sorted), all when "
                                 f"there are fewer (default {SSIM_SCALE_CASES})")


def _work_arguments(parser: argparse.ArgumentParser) -> None:
    work = parser.add_argument_group("work")
    work.add_argument("--overwrite", action="store_true", help="redo finished items (and replace run.json)")
    work.add_argument("--num-parts", type=int, default=1, help="split the work into this many shards")
    work.add_argument("--part-id", type=int, default=None,
                      help="which shard this process runs (0-based); needed with --num-parts above 1")
    work.add_argument("--devices", default=None, metavar="0,1,...",
                      help="one worker process per device on this node (CUDA indices, or cpu), each running "
                           "its share of the items into the same folder (docs/scaling.md); combines with "
                           "--num-parts/--part-id across nodes")
    work.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    check_seed(args.seed)  # before any work: one rule for every verb
    from nnunet_robustness.conditions import AUTO_SET, read_conditions_file
    from nnunet_robustness.conditions.parsing import resolve_conditions
    from nnunet_robustness.corruptions.specs import check_modality, modality_specific
    from nnunet_robustness.io import read_json, refuse_output_inside
    from nnunet_robustness.nnunet_paths import model_folder_from_ids
    from nnunet_robustness.runner.runner import PredictionSettings, resolve_folds
    from nnunet_robustness.runner.worker import RunJob, run_job, summary

    if args.model_folder is None:
        if not (args.dataset and args.configuration):
            raise UserInputError("give the model as -m MODEL_FOLDER or as -d DATASET -c CONFIGURATION [-tr] [-p]")
        model_folder = model_folder_from_ids(args.dataset, args.configuration, args.trainer, args.plans)
    else:
        model_folder = args.model_folder
    if args.num_parts < 1:
        raise UserInputError(f"--num-parts {args.num_parts}: must be 1 or more")
    if args.part_id is None:
        # without it every process of a sharded run would run shard 0, and the other shards never
        if args.num_parts > 1:
            raise UserInputError(f"--num-parts {args.num_parts} needs --part-id (0..{args.num_parts - 1}): which "
                                 "shard this process runs")
        args.part_id = 0
    if not 0 <= args.part_id < args.num_parts:
        raise UserInputError(f"--part-id {args.part_id} must be in [0, --num-parts {args.num_parts})")
    # predictions written into the images, model or reference folder would be read back as data by the next
    # run, nnUNetv2_train or eval (and a fold folder's files are nnU-Net's)
    refuse_output_inside(args.output, {"input folder": args.input if args.input.is_dir() else None,
                                       "model folder": model_folder, "reference folder": args.reference})
    if not 0 < args.step_size <= 1:  # nnU-Net asserts this only after the model is loaded and run.json written
        raise UserInputError(f"-step_size {args.step_size:g}: the sliding-window step is a fraction of the patch in "
                             "(0, 1] (nnU-Net's default 0.5)")
    specs, sets = list(args.conditions), list(args.preset)
    if args.config is not None:
        file_specs, file_sets = read_conditions_file(args.config)
        specs, sets = [*file_specs, *specs], [*file_sets, *sets]
    # read before the model is loaded (and before --devices starts workers), so that a bad spec or a family
    # of another modality fails in a second, not after the model load
    dataset_json_path = Path(model_folder) / "dataset.json"
    dataset_json = read_json(dataset_json_path, "model's dataset.json") if AUTO_SET in sets else None
    conditions = resolve_conditions(specs, sets, dataset_json)
    _check_channels(conditions, dataset_json_path)
    modality_forced = {}
    if modality_specific(conditions):
        if dataset_json is None:
            dataset_json = read_json(dataset_json_path, "model's dataset.json")
        modality_forced = check_modality(conditions, dataset_json, str(dataset_json_path), args.force_modality,
                                         recorded_in=f"{args.output}/run.json")

    settings = PredictionSettings(model_folder=model_folder, folds=resolve_folds(args.folds),
                                  checkpoint=args.checkpoint, step_size=args.step_size,
                                  use_mirroring=not args.disable_tta, device=args.device,
                                  background=args.background, attack_objective=args.attack_objective)
    job = RunJob(settings, args.input, args.output, tuple(conditions), seed=args.seed,
                 save_probabilities=args.save_probabilities, overwrite=args.overwrite, num_parts=args.num_parts,
                 part_id=args.part_id, reference=args.reference, progress=not args.no_progress,
                 severity_scale=args.severity_scale, calibration_cases=args.calibration_cases,
                 modality_forced=modality_forced)
    if args.devices is not None:
        from nnunet_robustness.runner.devices import parse_devices, run_on_devices

        return run_on_devices(job, parse_devices(args.devices))
    stats, cases = run_job(job)
    print(summary(stats, cases, len(conditions)))
    print(f"predictions: {args.output}/<condition>/, manifest: {args.output}/run.json")
    return 0


def _check_channels(conditions, dataset_json_path: Path) -> None:
    """A family that needs other channels than the model takes (he_stain: 3, an RGB image) would fail at its
    first item, after run.json and the earlier items were written: refused here in one line, with or
    without --force-modality (which is about what the channels show, not how many there are)."""
    from nnunet_robustness.corruptions import CORRUPTIONS
    from nnunet_robustness.io import read_json

    needing = {c.family: CORRUPTIONS[c.family].channels for c in conditions
               if c.family in CORRUPTIONS and CORRUPTIONS[c.family].channels is not None}
    if not needing:
        return
    dataset_json = read_json(dataset_json_path, "model's dataset.json")
    names = dataset_json.get("channel_names", dataset_json.get("modality")) if isinstance(dataset_json, dict) else None
    if not isinstance(names, dict):
        return  # the model folder check names what is missing
    unfit = sorted(family for family, channels in needing.items() if channels != len(names))
    if unfit:
        raise UserInputError(f"{dataset_json_path}: the model takes {len(names)} channel(s) ({', '.join(map(str, names.values()))}); "
                             f"{', '.join(unfit)} {'needs' if len(unfit) == 1 else 'need'} {needing[unfit[0]]} (an RGB image): leave "
                             f"{'it' if len(unfit) == 1 else 'them'} out")

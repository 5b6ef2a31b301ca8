"""``nnunet-robust corrupt``: write corrupted copies of an nnU-Net ``imagesTs``-style folder.

Each case's files (``CASE_0000<ending>``, ``CASE_0001<ending>``, ...) are read together with
nnU-Net's own reader (so the model later sees exactly these arrays), corrupted as one multi-channel
image, and written under ``OUT/<family>/<severity>/`` (presets: ``OUT/<group>/<name>/``) with the
same file names, pixel type and geometry (origin, spacing, direction) as each input file. The seed of
a case is ``item_seed(--seed, case, condition)`` (``nnunet_robustness.corruptions.specs``), the rule ``run``
uses, so both produce the same float32 arrays; it depends on the family, not the severity. Writing them
in the input's pixel type rounds and clips them on integer images (``run`` predicts from the float32
values), so ``corrupt`` + ``nnUNetv2_predict`` matches ``run`` exactly only on float32 images
(docs/cli.md, "corrupt + nnUNetv2_predict vs run").
"""

from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nnunet_robustness.conditions import BACKGROUND_CHOICES, DEFAULT_BACKGROUND, Condition
from nnunet_robustness.errors import UserInputError, check_seed
from nnunet_robustness.io import atomic_path, atomic_write_json, check_image_file, read_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "corrupt",
        help="write corrupted copies of an imagesTs folder, one folder per family/severity",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--list", action="store_true", help="print the catalogue of families and presets, then exit")
    parser.add_argument("-i", "--input", type=Path, help="folder with CASE_XXXX<ending> files (nnU-Net imagesTs layout)")
    parser.add_argument("-o", "--output", type=Path, help="output folder; gets <family>/<severity>/ subfolders")
    parser.add_argument("--family", nargs="+", metavar="FAMILY", default=[],
                        help="families to apply ('all' for every family; see --list)")
    parser.add_argument("--severity", nargs="+", type=float, metavar="S", default=None,
                        help="severities, ints 1..5 or floats in (0, 5] (default: 1 2 3 4 5); the unchanged image is clean")
    parser.add_argument("--preset", nargs="+", metavar="PRESET", default=[],
                        help="named presets, e.g. 'seed-study' (all four) or 'seed-study:harder'")
    parser.add_argument("-l", "--labels", type=Path, default=None,
                        help="reference labels (CASE<ending>), needed by background_blur and its presets")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--background", choices=BACKGROUND_CHOICES, default=DEFAULT_BACKGROUND,
                        help="keep (default): an exact-zero background (skull-stripped MRI) stays zero, as the "
                             "artefact happened before the stripping and nnU-Net crops and normalises inside that "
                             "mask; corrupt: every voxel (docs/corruptions.md)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite outputs that already exist")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int | None:
    check_seed(args.seed)  # before any work: one rule for every verb
    if args.list:
        print(catalogue_text())
        return 0
    if args.input is None or args.output is None:
        raise UserInputError("corrupt needs -i/--input and -o/--output (or --list)")
    conditions = _conditions(args.family, args.severity, args.preset)
    from nnunet_robustness.corruptions._core import shared_image_statistics
    from nnunet_robustness.corruptions.background import body_mask, keep_background
    from nnunet_robustness.runner.cases import list_cases

    found = list_cases(args.input)
    cases = list(found.items())
    conditions = _applicable(conditions, cases)
    ending = cases[0][1][0].name[len(cases[0][0]) + len("_0000"):]
    if any(c.corruption.requires_label for c in conditions) and args.labels is None:
        needing = sorted({c.name for c in conditions if c.corruption.requires_label})
        raise UserInputError(f"{', '.join(needing)} blur the background and need the reference labels: pass "
                             f"-l/--labels LABELS_FOLDER")
    if args.labels is not None and not args.labels.is_dir():
        raise UserInputError(f"{args.labels}: labels folder does not exist")
    reader_writer = _reader_writer(ending, cases[0][1][0])

    from tqdm import tqdm

    from nnunet_robustness.corruptions.specs import item_seed

    for condition in conditions:  # refuse before writing anything: a folder holds one seed's images
        record = args.output / condition.folder / "corruption.json"
        if record.is_file() and not args.overwrite:
            earlier = read_json(record, "corruption record").get("base_seed")
            if earlier != args.seed:
                raise UserInputError(f"{record}: these images were made with --seed {earlier}, not {args.seed}; use "
                                     "another output folder or pass --overwrite")
    for condition in conditions:
        atomic_write_json(args.output / condition.folder / "corruption.json", {
            "name": condition.name, "family": condition.corruption.family,
            "severity": condition.corruption.severity, "values": condition.corruption.values,
            "settings": condition.corruption.settings, "base_seed": args.seed, "background": args.background,
            "case_seed": "nnunet_robustness.corruptions.specs.item_seed(base_seed, case, condition)",
        })
    written = skipped = 0
    with tqdm(total=len(cases) * len(conditions), desc="corrupt", unit="image") as progress:
        for case, files in cases:
            loaded: _LoadedCase | None = None
            with shared_image_statistics():  # per-image statistics once for all conditions of the case
                for condition in conditions:
                    targets = [args.output / condition.folder / f.name for f in files]
                    if not args.overwrite and all(t.exists() for t in targets):
                        skipped += 1
                        progress.update()
                        continue
                    if loaded is None:
                        loaded = _load_case(reader_writer, files, args.labels, case, ending)
                    label = loaded.label if condition.corruption.requires_label else None
                    corrupted = keep_background(
                        condition.corruption(loaded.data, loaded.spacing, label=label,
                                             seed=item_seed(args.seed, case, condition.condition)),
                        body_mask(loaded.data) if args.background == "keep" else None)
                    _write_case(reader_writer, corrupted, loaded, targets)
                    written += 1
                    progress.update()
    print(f"corrupt: {written} case-condition(s) written, {skipped} already present "
          f"({len(cases)} cases x {len(conditions)} conditions) in {args.output}")
    return 0


def catalogue_text() -> str:
    from nnunet_robustness.conditions import ADVERSARIAL_FAMILIES, ADVERSARIAL_NOTE, CONTEXT_FAMILY, CONTEXT_NOTE
    from nnunet_robustness.corruptions import CORRUPTIONS, PRESETS

    width = max(len(name) for name in [*CORRUPTIONS, *PRESETS])
    lines = [f"{len(CORRUPTIONS)} families (severity 1..5, or a float in (0, 5]):"]
    # By modality: families of any modality first, then the CT, ultrasound and microscopy groups.
    modality_groups = {"ct": "CT (HU)", "ultrasound": "ultrasound (B-mode)", "microscopy": "microscopy / histology"}
    by_modality: dict[str, list[str]] = {}
    for name, cls in CORRUPTIONS.items():
        by_modality.setdefault(modality_groups.get(cls.group, "MR and any modality"), []).append(name)
    for modality, names in by_modality.items():
        lines.append(f" {modality}:")
        for name in names:
            cls = CORRUPTIONS[name]
            cancelled = (f" (removed by {' and '.join(sorted(s.replace('Normalization', '') for s in cls.cancelled_by))}"
                         " normalisation)" if cls.cancelled_by else "")
            lines.append(f"  {name:<{width}}  [{cls.group}] {cls.summary}{cancelled}")
    lines.append("Removed by ... normalisation: nnU-Net's normalisation cancels the change exactly, the model never "
                 "sees it (docs/evaluation.md).")
    lines.append("presets (fixed parameters):")
    for name, preset in PRESETS.items():
        lines.append(f"  {name:<{width}}  {preset.description}")
    for source in dict.fromkeys(preset.source for preset in PRESETS.values()):
        lines.append(f"  source: {source}")
    # conditions that `corrupt` cannot write (they need the model or the reference) but `run` takes: listed
    # here too, because this is where a user looks for what can be run
    lines.append(f"adversarial conditions, for `run` only (they need the model): {ADVERSARIAL_NOTE}:")
    for name, meaning in ADVERSARIAL_FAMILIES.items():
        lines.append(f"  {name:<{width}}  {meaning}")
    lines.append(f"context condition, for `run` only:\n  {CONTEXT_FAMILY:<{width}}  {CONTEXT_NOTE}")
    return "\n".join(lines)


# --- conditions --------------------------------------------------------------------------------------

@dataclass
class _Condition:
    condition: Condition  # shared with `run`: the same item_seed(seed, case, condition)
    folder: Path  # OUT/<family>/<severity> or OUT/<preset group>/<preset>
    corruption: Any
    explicit: bool = True  # named by the user (a family or preset), not brought in by "--family all"

    @property
    def name(self) -> str:
        return self.condition.name


def _conditions(families: Sequence[str], severities: Sequence[float] | None,
                presets: Sequence[str]) -> list[_Condition]:
    from nnunet_robustness.conditions import family_condition, severity_label
    from nnunet_robustness.corruptions import CORRUPTIONS, PRESETS
    from nnunet_robustness.corruptions.presets import preset_group
    from nnunet_robustness.corruptions.specs import corruption_for, preset_condition

    if not families and not presets:
        raise UserInputError("nothing to do: give --family NAME ... and/or --preset NAME ... (see --list)")
    if severities is not None and not families:
        raise UserInputError("--severity applies to --family; presets have fixed parameters")
    names = list(CORRUPTIONS) if "all" in families else list(dict.fromkeys(families))
    conditions = []
    for family in names:
        for severity in severities if severities is not None else range(1, 6):
            condition = family_condition(family, severity)
            folder = Path(family) / severity_label(condition.severity)
            conditions.append(_Condition(condition, folder, corruption_for(condition), explicit=family in families))
    for requested in presets:
        matched = preset_group(requested)
        if not matched:
            raise UserInputError(f"unknown preset {requested!r}; known: {', '.join(PRESETS)} "
                                 f"(or a group such as 'seed-study')")
        for name in matched:
            group, _, short = name.partition(":")
            condition = preset_condition(name)
            conditions.append(_Condition(condition, Path(group) / short, corruption_for(condition)))
    return conditions


def _channel_count(files: Sequence[Path]) -> int | None:
    """The channels nnU-Net reads for a case: its channel files' components (3 for an RGB .png), from the
    headers only; None when SimpleITK cannot read a header (the case is then checked when it is read)."""
    import SimpleITK as sitk

    total = 0
    for path in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return None
        total += reader.GetNumberOfComponents()
    return total


def _applicable(conditions: list[_Condition], cases: Sequence[tuple[str, list[Path]]]) -> list[_Condition]:
    """Leave out or refuse, before anything is written, the families that cannot apply to these images
    (he_stain needs 3 channels, an RGB image; a greyscale folder has 1). A family the user named is refused
    in one line naming an input file; families that "--family all" brought in are left out with a one-line
    warning: "all" means every family of the catalogue, which spans modalities, so on a greyscale folder it
    would otherwise always fail, after writing every family before he_stain."""
    import warnings

    needing = {c.corruption.channels for c in conditions if c.corruption.channels is not None}
    if not needing:
        return conditions
    found: dict[int, Path] = {}  # channel count -> its first file
    for _, files in cases:
        count = _channel_count(files)
        if count is not None:
            found.setdefault(count, files[0])
    unfit = {c.name: next(((n, f) for n, f in found.items() if n != c.corruption.channels), None) for c in conditions
             if c.corruption.channels is not None}
    unfit = {name: where for name, where in unfit.items() if where is not None}
    if not unfit:
        return conditions
    named = [c for c in conditions if c.name in unfit and c.explicit]
    left_out = [c for c in conditions if c.name in unfit and not c.explicit]
    for group, say in ((named, "refused"), (left_out, "left out")):
        if not group:
            continue
        count, path = unfit[group[0].name]
        families = ", ".join(dict.fromkeys(c.corruption.family for c in group))
        need = f"{group[0].corruption.channels} channels" + (" (an RGB image)" if group[0].corruption.channels == 3 else "")
        text = f"{path}: {count} channel(s); {families} {'needs' if ', ' not in families else 'need'} {need}"
        if say == "refused":
            raise UserInputError(f"{text}: leave {families} out (nothing was written)")
        warnings.warn(f"{text}: --family all leaves {families} out", stacklevel=2)
    return [c for c in conditions if c.name not in unfit]


# --- reading and writing -----------------------------------------------------------------------------

def _reader_writer(ending: str, example: Path):
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_file_ending
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    check_image_file(example)  # a truncated gzip is named as such, not as "no reader"
    # nnU-Net prints a traceback for each reader it tries and rejects (even with verbose=False): keep the
    # terminal to our one line
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            reader_writer = determine_reader_writer_from_file_ending(ending, str(example), verbose=False)
        except RuntimeError:
            raise UserInputError(f"{example}: no nnU-Net reader for files ending in {ending!r} can read it (a "
                                 "broken file, or not an image of 2 or 3 dimensions)") from None
    if not issubclass(reader_writer, (SimpleITKIO, NaturalImage2DIO)):
        raise UserInputError(f"{example}: files ending in {ending!r} are read by nnU-Net's "
                             f"{reader_writer.__name__}, which corrupt cannot write back yet; convert the "
                             f"folder to .nii.gz (SimpleITK) or .png")
    return reader_writer()


@dataclass
class _LoadedCase:
    data: np.ndarray  # float32 (C, *spatial) as nnU-Net reads it
    spacing: tuple[float, ...]
    label: np.ndarray | None
    files: list[Path]
    channels_per_file: list[int]


def _load_case(reader_writer, files: list[Path], labels: Path | None, case: str, ending: str) -> _LoadedCase:
    arrays, spacing = [], None
    for path in files:
        try:
            array, properties = reader_writer.read_images([str(path)])
        except Exception as e:  # noqa: BLE001 - any reader failure is a bad input file
            raise UserInputError(f"{path}: cannot be read by {type(reader_writer).__name__}: {e}") from None
        arrays.append(array)
        spacing = properties["spacing"] if spacing is None else spacing
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise UserInputError(f"case {case!r}: channel files have different shapes {sorted(shapes)}")
    label = None
    if labels is not None:
        label_path = labels / f"{case}{ending}"
        if not label_path.is_file():
            raise UserInputError(f"{label_path}: reference label of case {case!r} not found")
        label, _ = reader_writer.read_seg(str(label_path))
        if label.shape[1:] != arrays[0].shape[1:]:
            raise UserInputError(f"{label_path}: label shape {label.shape[1:]} differs from the image's "
                                 f"{arrays[0].shape[1:]}")
    return _LoadedCase(np.concatenate(arrays).astype(np.float32, copy=False), tuple(float(s) for s in spacing),
                       label, files, [a.shape[0] for a in arrays])


def _write_case(reader_writer, corrupted: np.ndarray, loaded: _LoadedCase, targets: list[Path]) -> None:
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    start = 0
    for target, count, source in zip(targets, loaded.channels_per_file, loaded.files):
        channels = corrupted[start:start + count]
        start += count
        try:
            if isinstance(reader_writer, SimpleITKIO):
                _write_sitk(channels, source, target)
            else:
                _write_natural(channels, source, target)
        except RuntimeError as e:  # SimpleITK's: e.g. a 4D source image, whose geometry cannot be copied
            why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise UserInputError(f"{source}: its corrupted version cannot be written like it ({why}); corrupt "
                                 "takes 2D and 3D images") from None


def _write_sitk(channels: np.ndarray, source: Path, target: Path) -> None:
    import SimpleITK as sitk

    from nnunet_robustness.corruptions._core import cast_to_dtype

    original = sitk.ReadImage(str(source))
    array = channels[0]
    if original.GetDimension() == 2:
        array = array[0]  # nnU-Net adds a leading axis to 2D images
    image = sitk.GetImageFromArray(cast_to_dtype(array, sitk.GetArrayViewFromImage(original).dtype))
    image.CopyInformation(original)  # origin, spacing, direction exactly as the input
    with atomic_path(target) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def _write_natural(channels: np.ndarray, source: Path, target: Path) -> None:
    from skimage import io

    from nnunet_robustness.corruptions._core import cast_to_dtype

    dtype = io.imread(str(source)).dtype
    array = channels[:, 0]  # (c, 1, X, Y) -> (c, X, Y)
    array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    with atomic_path(target) as tmp:
        io.imsave(str(tmp), cast_to_dtype(array, dtype), check_contrast=False)

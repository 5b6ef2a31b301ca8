"""``corrupt``: corrupted copies of an ``imagesTs``-style folder, one folder per condition.

The same cases, reading and checks as ``run`` (:mod:`.cases`), the same conditions and seeds
(:mod:`nnunet_robustness.conditions.parsing`, ``item_seed``), so both produce the same float32 arrays;
written back under ``OUT/<family>/<severity>/`` (presets: ``OUT/<group>/<name>/``) with each input file's
name, pixel type and geometry (:func:`.cases.write_like`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_robustness.conditions import Condition, ConditionKind, severity_label
from nnunet_robustness.corruptions import Corruption
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_json, read_json
from nnunet_robustness.runner.cases import (
    channels_per_file,
    list_cases,
    read_case,
    read_label,
    reader_writer_for_files,
    write_like,
)


@dataclass(frozen=True)
class CorruptSummary:
    written: int  # case-condition items written
    skipped: int  # items whose files were already there
    cases: int
    conditions: int


def condition_folder(condition: Condition) -> Path:
    """Where ``corrupt`` writes a condition: ``<family>/<severity>`` or ``<preset group>/<preset>``."""
    if condition.kind is ConditionKind.PRESET:
        group, _, short = condition.preset.partition(":")
        return Path(group) / short
    return Path(condition.family) / severity_label(condition.severity)


def corrupt_folder(input_folder: Path, output: Path, conditions: Sequence[Condition], labels: Path | None = None,
                   seed: int = 0, background: str = "keep", overwrite: bool = False,
                   named_families: Sequence[str] = (), progress: bool = True) -> CorruptSummary:
    """Write every case of ``input_folder`` under every condition (corruptions and presets) into ``output``.
    ``named_families``: the families the user named (a family that cannot apply to these images is refused);
    the others came with ``--family all`` and are left out with a warning."""
    from nnunet_robustness.corruptions.specs import corruption_for

    cases = list(list_cases(input_folder).items())
    corruptions = {c: corruption_for(c) for c in conditions}
    conditions = _applicable(corruptions, cases, set(named_families))
    ending = cases[0][1][0].name[len(cases[0][0]) + len("_0000"):]
    if any(corruptions[c].requires_label for c in conditions) and labels is None:
        needing = sorted({c.name for c in conditions if corruptions[c].requires_label})
        raise UserInputError(f"{', '.join(needing)} blur the background and need the reference labels: pass "
                             f"-l/--labels LABELS_FOLDER")
    if labels is not None and not labels.is_dir():
        raise UserInputError(f"{labels}: labels folder does not exist")
    reader_writer = reader_writer_for_files(ending, cases[0][1][0])
    _write_records(output, conditions, corruptions, seed, background, overwrite)
    written = skipped = 0
    from tqdm import tqdm

    with tqdm(total=len(cases) * len(conditions), desc="corrupt", unit="image", disable=not progress) as bar:
        for case, files in cases:
            done = _corrupt_case(reader_writer, case, files, conditions, corruptions, output, labels, ending, seed,
                                 background, overwrite, bar)
            written += done
            skipped += len(conditions) - done
    return CorruptSummary(written, skipped, len(cases), len(conditions))


def _write_records(output: Path, conditions: Sequence[Condition], corruptions: dict[Condition, Corruption],
                   seed: int, background: str, overwrite: bool) -> None:
    """Each condition folder's corruption.json, after refusing, before anything is written, a folder made
    with another seed (a folder holds one seed's images)."""
    for condition in conditions:
        record = output / condition_folder(condition) / "corruption.json"
        if record.is_file() and not overwrite:
            earlier = read_json(record, "corruption record").get("base_seed")
            if earlier != seed:
                raise UserInputError(f"{record}: these images were made with --seed {earlier}, not {seed}; use "
                                     "another output folder or pass --overwrite")
    for condition in conditions:
        corruption = corruptions[condition]
        atomic_write_json(output / condition_folder(condition) / "corruption.json", {
            "name": condition.name, "family": corruption.family,
            "severity": corruption.severity, "values": corruption.values,
            "settings": corruption.settings, "base_seed": seed, "background": background,
            "case_seed": "nnunet_robustness.corruptions.specs.item_seed(base_seed, case, condition)",
        })


def _corrupt_case(reader_writer, case: str, files: list[Path], conditions: Sequence[Condition],
                  corruptions: dict[Condition, Corruption], output: Path, labels: Path | None, ending: str,
                  seed: int, background: str, overwrite: bool, bar) -> int:
    """Write one case under every condition whose files are missing (all with ``overwrite``); the case is
    read once, at its first missing condition. Returns how many conditions were written."""
    from nnunet_robustness.corruptions._core import shared_image_statistics
    from nnunet_robustness.corruptions.background import body_mask, keep_background
    from nnunet_robustness.corruptions.specs import item_seed

    image = spacing = label = channels = None
    written = 0
    with shared_image_statistics():  # per-image statistics once for all conditions of the case
        for condition in conditions:
            targets = [output / condition_folder(condition) / f.name for f in files]
            if not overwrite and all(t.exists() for t in targets):
                bar.update()
                continue
            if image is None:
                image, properties = read_case(reader_writer, case, files)
                image = image.astype(np.float32, copy=False)
                spacing = tuple(float(s) for s in properties["spacing"])
                channels = channels_per_file(reader_writer, files, image)
                if labels is not None:
                    label = read_label(reader_writer, labels / f"{case}{ending}", case, image.shape)
            corruption = corruptions[condition]
            corrupted = keep_background(
                corruption(image, spacing, label=label if corruption.requires_label else None,
                           seed=item_seed(seed, case, condition)),
                body_mask(image) if background == "keep" else None)
            write_like(reader_writer, corrupted, files, channels, targets)
            written += 1
            bar.update()
    return written


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


def _applicable(corruptions: dict[Condition, Corruption], cases: Sequence[tuple[str, list[Path]]],
                named: set[str]) -> list[Condition]:
    """Leave out or refuse, before anything is written, the families that cannot apply to these images
    (he_stain needs 3 channels, an RGB image; a greyscale folder has 1). A family the user named (or a
    preset) is refused in one line naming an input file; families that "--family all" brought in are left
    out with a one-line warning: "all" means every family of the catalogue, which spans modalities, so on a
    greyscale folder it would otherwise always fail, after writing every family before he_stain."""
    conditions = list(corruptions)
    if all(c.channels is None for c in corruptions.values()):
        return conditions
    found: dict[int, Path] = {}  # channel count -> its first file
    for _, files in cases:
        count = _channel_count(files)
        if count is not None:
            found.setdefault(count, files[0])
    unfit = {c.name: next(((n, f) for n, f in found.items() if n != corruptions[c].channels), None)
             for c in conditions if corruptions[c].channels is not None}
    unfit = {name: where for name, where in unfit.items() if where is not None}
    if not unfit:
        return conditions
    explicit = [c for c in conditions if c.name in unfit and (c.kind is ConditionKind.PRESET or c.family in named)]
    left_out = [c for c in conditions if c.name in unfit and c not in explicit]
    for group, say in ((explicit, "refused"), (left_out, "left out")):
        if not group:
            continue
        count, path = unfit[group[0].name]
        needs = corruptions[group[0]].channels
        families = ", ".join(dict.fromkeys(corruptions[c].family for c in group))
        need = f"{needs} channels" + (" (an RGB image)" if needs == 3 else "")
        text = f"{path}: {count} channel(s); {families} {'needs' if ', ' not in families else 'need'} {need}"
        if say == "refused":
            raise UserInputError(f"{text}: leave {families} out (nothing was written)")
        warnings.warn(f"{text}: --family all leaves {families} out", stacklevel=3)
    return [c for c in conditions if c.name not in unfit]

"""Writes the schedule and sampling variants in :mod:`nnunet_robustness.trainers.generated`.

    python -m nnunet_robustness.trainers.generate           # rewrite the generated modules
    python -m nnunet_robustness.trainers.generate --check   # exit 1 if a committed module differs

Which variants exist is decided by the tables in :mod:`nnunet_robustness.trainers.variants`
(``SCHEDULE_BASES`` x ``SCHEDULES``, ``nnUNetTrainer`` x ``CPU_SCHEDULES``, ``FG_BASES`` x
``FOREGROUND_OVERSAMPLING`` [x ``FG_SCHEDULES``]). They are written out as literal classes, rather than
made with ``type()`` at import time, so that every ``-tr`` name is a ``class`` statement that grep finds,
with the hyper-parameters it changes right below it. ``tests/trainers/test_generated_trainers.py``
keeps the committed modules equal to what this writes. (This runs inside the package, which imports the
generated modules: if one no longer imports because a base was renamed, empty it before regenerating.)
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_robustness.io import atomic_write_text
from nnunet_robustness.trainers import variants as v
from nnunet_robustness.trainers.fbr_logging import FBRLoggingMixin

GENERATED_FOLDER = Path(__file__).resolve().parent / "generated"
MAX_LINE = 140  # ruff's line length (pyproject.toml): the generated text must pass ruff unchanged

# generated module -> the hand-written trainers whose variants it holds (one module for all of them
# would be far over the project's 600 lines per file)
MODULES: dict[str, tuple[type, ...]] = {
    "unet_variants": (nnUNetTrainer, v.nnUNetTrainerNoSkip, v.nnUNetTrainerAttentionGate),
    "learned_skip_variants": (v.nnUNetTrainerLearnedSkip, v.nnUNetTrainerLearnedSkipL1),
    "corruption_aug_variants": (v.nnUNetTrainerCorruptionAug, v.nnUNetTrainerNoSkipCorruptionAug,
                       v.nnUNetTrainerAttentionGateCorruptionAug),
    "adversarial_variants": (v.nnUNetTrainerAdversarial, v.nnUNetTrainerNoSkipAdversarial,
                    v.nnUNetTrainerAttentionGateAdversarial),
}


@dataclass(frozen=True)
class Variant:
    """One generated class: ``<base>_<suffix>`` with ``settings`` as class attributes."""

    base: str
    suffix: str
    settings: dict
    bases: tuple[type | str, ...]  # the class statement's bases: classes, or the name of a generated class

    @property
    def name(self) -> str:
        return f"{self.base}_{self.suffix}"


def variants_of(root: type) -> list[Variant]:
    """The variants generated for one hand-written trainer (or nnU-Net's own), in file order."""
    if root in v.SCHEDULE_BASES:
        schedules = v.SCHEDULES
    elif root is nnUNetTrainer:
        # nnU-Net ships nnUNetTrainer_<N>epochs itself; only the CPU schedules are new for the stock
        # U-Net (redefining nnU-Net's names would shadow them, since our shim is found first)
        schedules = {suffix: v.SCHEDULES[suffix] for suffix in v.CPU_SCHEDULES}
    else:
        schedules = {}
    found = [Variant(root.__name__, suffix, settings, v.variant_bases(root)) for suffix, settings in schedules.items()]
    if root in v.FG_BASES:
        # sampling is the variant, the schedule how long it runs: nnUNetTrainer_fg100_tiny
        for fg_suffix, percent in v.FOREGROUND_OVERSAMPLING.items():
            fg = Variant(root.__name__, fg_suffix, {"oversample_foreground_percent": percent},
                         v.variant_bases(root, (FBRLoggingMixin,)))
            found.append(fg)
            found += [Variant(fg.name, suffix, v.SCHEDULES[suffix], (fg.name,)) for suffix in v.FG_SCHEDULES]
    return found


def all_variants() -> dict[str, list[Variant]]:
    """generated module -> its variants. Refuses a base in the tables that no module takes."""
    placed = {root for roots in MODULES.values() for root in roots}
    unplaced = [b.__name__ for b in {nnUNetTrainer, *v.SCHEDULE_BASES, *v.FG_BASES} - placed]
    if unplaced:
        raise ValueError(f"add {', '.join(sorted(unplaced))} to MODULES in {__name__}")
    return {module: [variant for root in roots for variant in variants_of(root)] for module, roots in MODULES.items()}


def _name(base: type | str) -> str:
    return base if isinstance(base, str) else base.__name__


def _import_lines(variants: list[Variant]) -> list[str]:
    """Sorted as ruff's isort wants them: third-party, blank line, first-party; classes before the
    lower-case nnUNet names."""
    by_module: dict[str, set[str]] = {}
    for variant in variants:
        for base in variant.bases:
            if not isinstance(base, str):
                by_module.setdefault(base.__module__, set()).add(base.__name__)
    sections: list[list[str]] = [[], []]
    for module in sorted(by_module):
        names = sorted(by_module[module], key=lambda n: (not n[0].isupper(), n))
        line = f"from {module} import {', '.join(names)}"
        if len(line) > MAX_LINE:
            line = "\n".join([f"from {module} import (", *(f"    {n}," for n in names), ")"])
        sections[module.startswith("nnunet_robustness")].append(line)
    return [*sections[0], "", *sections[1]] if sections[0] else sections[1]


def render_module(module: str, variants: list[Variant]) -> str:
    roots = textwrap.wrap(f"Schedule and sampling variants of {', '.join(r.__name__ for r in MODULES[module])}.", 100)
    lines = [
        f'"""{roots[0]}', *roots[1:],
        "",
        "GENERATED by ``python -m nnunet_robustness.trainers.generate`` from the tables in",
        "``nnunet_robustness/trainers/variants.py``: do not edit, change the tables and regenerate.",
        '"""',
        "",
        *_import_lines(variants),
    ]
    for variant in variants:
        lines += ["", "", f"class {variant.name}({', '.join(_name(b) for b in variant.bases)}):",
                  f'    """{v.variant_doc(variant.base, variant.settings)}"""']
        lines += [f"    {key} = {value!r}" for key, value in variant.settings.items()]
    return "\n".join(lines) + "\n"


def render() -> dict[Path, str]:
    """path -> text of every generated module."""
    return {GENERATED_FOLDER / f"{module}.py": render_module(module, variants)
            for module, variants in all_variants().items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report modules that differ; exit 1 if any does")
    args = parser.parse_args(argv)
    stale = {path: text for path, text in render().items() if not path.is_file() or path.read_text() != text}
    for path, text in stale.items():
        if args.check:
            print(f"out of date: {path} (run python -m {__name__})")
        else:
            atomic_write_text(path, text)
            print(f"wrote {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

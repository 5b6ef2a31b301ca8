"""The generated trainer modules are what ``python -m nnunet_robustness.trainers.generate`` writes, and
every trainer name is a ``class`` statement in the package source (greppable, as nnU-Net's are)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from nnunet_robustness.trainers import TRAINERS, generate
from nnunet_robustness.trainers.registry import GENERATED_TRAINERS
from nnunet_robustness.trainers.variants import variant_settings

TRAINERS_FOLDER = Path(generate.__file__).resolve().parent


def test_the_committed_modules_are_what_the_generator_writes():
    rendered = generate.render()
    assert sorted(p.name for p in rendered) == sorted(p.name for p in generate.GENERATED_FOLDER.glob("*.py")
                                                       if p.name != "__init__.py")
    for path, text in rendered.items():
        assert path.read_text() == text, f"{path.name} is out of date: run python -m nnunet_robustness.trainers.generate"
    assert generate.main(["--check"]) == 0


def test_the_generated_classes_are_the_planned_variants():
    planned = {v.name: v for variants in generate.all_variants().values() for v in variants}
    assert set(planned) == set(GENERATED_TRAINERS)
    for name, variant in planned.items():
        cls = GENERATED_TRAINERS[name]
        assert cls.__doc__ == f"{variant.base} with {', '.join(f'{k}={v}' for k, v in variant.settings.items())}."
        assert variant_settings(cls) == {**variant_settings(TRAINERS.get(variant.base, object)), **variant.settings}


def test_every_trainer_name_is_a_class_statement():
    source = "\n".join(p.read_text() for p in TRAINERS_FOLDER.rglob("*.py"))
    defined = set(re.findall(r"^class (nnUNetTrainer\w*)\(", source, re.M))
    assert set(TRAINERS) <= defined


def test_check_reports_and_the_generator_repairs_a_stale_module(tmp_path, monkeypatch, capsys):
    committed = generate.GENERATED_FOLDER / "unet_variants.py"
    folder = tmp_path / "generated"
    shutil.copytree(generate.GENERATED_FOLDER, folder)
    monkeypatch.setattr(generate, "GENERATED_FOLDER", folder)
    stale = folder / "unet_variants.py"
    stale.write_text(stale.read_text().replace("num_epochs = 1\n", "num_epochs = 3\n", 1))
    assert generate.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().out and "num_epochs = 3" in stale.read_text()
    assert generate.main([]) == 0
    assert "wrote" in capsys.readouterr().out
    assert generate.main(["--check"]) == 0
    assert stale.read_text() == committed.read_text()

"""docs/studies/README.md's Scales table states what nnunet_robustness.studies.scales.SCALES holds: a claim in
the docs is a test (the smoke scale's test levels changed in code and the table kept the old ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnunet_robustness.studies.scales import SCALES

README = Path(__file__).resolve().parents[2] / "docs" / "studies" / "README.md"


def scales_table() -> dict[str, dict[str, str]]:
    """Row title -> {scale name: cell} of the first table under '## Scales'."""
    section = README.read_text().split("## Scales", 1)[1]
    lines = [line for line in section.strip().split("\n\n", 1)[0].splitlines() if line.startswith("|")]
    names = [cell.strip() for cell in lines[0].strip("|").split("|")][1:]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(names, cells[1:]))
    return rows


def levels(alphas: tuple[float, ...]) -> str:
    return ", ".join(str(a) for a in alphas) if len(alphas) <= 3 else f"{alphas[0]} ... {alphas[-1]}"


@pytest.mark.parametrize("name", sorted(SCALES))
def test_the_scales_table_states_the_code(name):
    scale, rows = SCALES[name], scales_table()
    cell = {row: cells[name] for row, cells in rows.items()}
    assert cell["image size"] == f"{scale.image_size} x {scale.image_size}"
    assert cell["training levels alpha"] == levels(scale.train_alphas)
    assert cell["test levels alpha"].split(" (")[0] == levels(scale.test_alphas)
    assert cell["training runs per architecture (nnU-Net folds)"].split(" (")[0] == str(len(scale.folds))
    assert cell["training / test images per level"] == f"{scale.num_train} / {scale.num_test}"
    def suffix(schedule: str) -> str:
        return f"`_fg033_{schedule}`" if schedule else "`_fg033`"

    assert cell["trainer schedule"].split(" (")[0] == suffix(scale.schedule)
    words = {"NoSkip": "No-Skip", "AttentionGate": "attention-gated", "UNet": "U-Net"}
    for architecture, schedule, *only in scale.longer_schedules:  # "; No-Skip `_fg033_50epochs` (...)"
        where = f" at patch scale {float(only[0].split('_ctx')[1]):g}" if only else ""  # "2d_ctx0.50" -> 0.5
        assert f"{words[architecture]} {suffix(schedule)}{where}" in cell["trainer schedule"]
    assert cell["trainer schedule"].count("; ") == len(scale.longer_schedules)
    assert cell["patch scales (F3)"] == ", ".join(str(c) for c in scale.contexts)
    assert cell["F3 wide test images"] == f"{scale.wide_factor}x the side"


def test_the_study_reports_training_note_names_each_architectures_schedule():
    """The report's training-curve note once printed the scale's one schedule and an ETA-only iteration count
    ("'20epochs'; about 6000 iterations") after No-Skip had moved to 50 epochs."""
    from nnunet_robustness.reports.study import _schedules

    assert _schedules(SCALES["cpu"].to_json()) == ("schedule '20epochs'; NoSkip '50epochs'; "
                                                   "AttentionGate '50epochs' (2d_ctx0.50)")
    assert _schedules(SCALES["gpu"].to_json()) == "schedule nnU-Net's 1000 epochs"

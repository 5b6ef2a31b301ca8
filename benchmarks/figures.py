"""Headline figures of a benchmark, written as JSON next to its Markdown results so that
``run_all.py`` can collect them into ``results/SUMMARY.md`` without parsing Markdown.

Each benchmark calls ``write_figures(markdown_path, benchmark, figures, device)`` once, after writing
its Markdown; the JSON lands at ``markdown_path.with_suffix(".json")``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Figure:
    """One headline number and its goal.

    ``ratio`` is expressed the way ``goal`` states it (ours / reference for "<=" goals on time,
    reference / ours for speed-ups), so ``met`` can be read off the row.
    """

    figure: str  # what is measured, with its unit
    ours: float | None
    reference: float | None
    ratio: float | None
    goal: str
    met: bool | None  # None: no goal for this figure (informational)


def write_figures(markdown_path: Path, benchmark: str, figures: list[Figure], device: str) -> Path:
    path = markdown_path.with_suffix(".json")
    payload = {
        "benchmark": benchmark,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "markdown": markdown_path.name,
        "figures": [dataclasses.asdict(figure) for figure in figures],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def read_figures(json_path: Path) -> dict:
    payload = json.loads(json_path.read_text())
    payload["figures"] = [Figure(**figure) for figure in payload["figures"]]
    return payload

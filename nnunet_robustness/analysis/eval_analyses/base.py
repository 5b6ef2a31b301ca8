"""What an analysis of ``evaluate`` is: the measured per-case table and the options it reads, the values it
adds, its part of ``summary.json``, the tables it writes and its sections of the report.

``evaluate`` runs the registry (``eval_analyses/__init__.py``) in two passes: ``run`` of every analysis
whose ``needs`` holds (the tests; an analysis may add rows to the comparisons), then one
Benjamini-Hochberg family over every test the report shows, then ``conclude`` (the sentences, which read
the adjusted p).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from nnunet_robustness.metrics.inputs import DatasetInfo

# an EvaluationResult (analysis/evaluation.py, which imports this package): the sections read its values
# as attributes (``result.statistics``, ``result.raters``)
Result = Any


@dataclass(frozen=True)
class Options:
    """``evaluate``'s settings, as given (``by`` parsed), for the stages it runs."""

    nsd_tolerance_mm: float
    seed: int
    n_bootstrap: int
    num_processes: int
    progress: bool
    consensus_method: str
    allow_weak_models: bool
    equivalence: float | None
    shift_file: str | os.PathLike | None
    strata_file: str | os.PathLike | None
    metadata_file: str | os.PathLike | None
    by: Any
    command: str | None
    dataset_json: str | os.PathLike
    device: str | None = None  # "cuda": surface distances on the GPU (metrics/surface_torch.py)


@dataclass(frozen=True)
class Measured:
    """What ``evaluate`` read and measured before any statistics: the per-case table and what it needs."""

    runs: dict[str, list[str]]
    dataset: DatasetInfo
    raters: list[Path]
    reference: Path
    predictions: list[Any]
    cases: Any
    strata: Any
    groupings: dict[str, Any]
    fbr_ranges: dict[str, dict | None]
    per_case: pd.DataFrame
    conditions: pd.DataFrame
    clean: str | None

    @property
    def groups(self) -> dict[str, Any]:
        return {name: members for grouping in self.groupings.values() for name, members in grouping.items()}


@dataclass
class State:
    """What the analyses of one evaluation share while they run: ``values`` (the outputs so far, by name),
    ``shared`` (intermediate tables one analysis leaves for later ones, not part of the result) and the
    ``settings`` they add to ``summary.json``'s settings."""

    measured: Measured
    options: Options
    values: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    """One section of the report: its place (``order``: smaller first; the report's own sections of the
    measured table sit at 30, 40, 90, 150 and 160), its title and its HTML body; ``shown``: whether the
    result has anything for it."""

    order: int
    title: str
    render: Callable[[Result], str]
    shown: Callable[[Result], bool] = lambda result: True


def _always(measured: Measured, options: Options) -> bool:
    return True


def _nothing(state: State) -> dict[str, Any]:
    return {}


def _no_summary(result: Result) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Analysis:
    """One analysis of ``evaluate``.

    ``outputs``: the values it adds to the result, each with the factory of its empty value (what the result
    holds when ``needs`` is false); ``run``/``conclude``: the two passes (module docstring), each returning
    some of ``outputs``; ``summary``: its keys of ``summary.json``; ``tables``: file name -> the output
    written as that CSV when not empty; ``sections``: its parts of the report.
    """

    name: str
    outputs: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    needs: Callable[[Measured, Options], bool] = _always
    run: Callable[[State], dict[str, Any]] = _nothing
    conclude: Callable[[State], dict[str, Any]] = _nothing
    summary: Callable[[Result], dict[str, Any]] = _no_summary
    tables: Mapping[str, str] = field(default_factory=dict)
    sections: tuple[Section, ...] = ()

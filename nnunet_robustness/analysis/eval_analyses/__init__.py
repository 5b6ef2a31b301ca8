"""The analyses of ``evaluate``, one module each (``base.Analysis``: what it needs, computes, writes and
shows), and the one list that registers them. A new analysis is a module here and an entry in ``ANALYSES``.

The list is the order they run in: each may read what an earlier one left (the summary statistics' tables
with the foreground mean, the verdict's sanity gate and per-case drops), and those that add comparisons
(strata, real shift) come before the report-wide FDR that ``run_analyses`` applies between the passes.
"""

from __future__ import annotations

from typing import Any

from nnunet_robustness.analysis import robustness
from nnunet_robustness.analysis.eval_analyses import (
    fbr,
    ranking,
    raters,
    real_shift,
    robust_training,
    rood_mri,
    strata,
    summary_statistics,
    verdict,
)
from nnunet_robustness.analysis.eval_analyses.base import Analysis, Measured, Options, State
from nnunet_robustness.analysis.statistics import FOREGROUND_MEAN

ANALYSES: tuple[Analysis, ...] = (
    summary_statistics.ANALYSIS,
    verdict.ANALYSIS,
    strata.ANALYSIS,
    real_shift.ANALYSIS,
    ranking.ANALYSIS,
    robust_training.ANALYSIS,
    rood_mri.ANALYSIS,
    raters.ANALYSIS,
    fbr.ANALYSIS,
)


def run_analyses(measured: Measured, options: Options) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The values of every analysis (the empty value of each output of an analysis that is not needed), the
    settings they add, and the number of tests in the report-wide Benjamini-Hochberg family."""
    analyses = ANALYSES  # read at call time: a test may register an analysis of its own
    state = State(measured, options)
    needed = [a for a in analyses if a.needs(measured, options)]
    for analysis in analyses:
        state.values.update({name: empty() for name, empty in analysis.outputs.items()})
    for analysis in needed:
        state.values.update(_declared(analysis, analysis.run(state), analyses))
    # one Benjamini-Hochberg family: every test the report shows (the verdict uses the adjusted p)
    fdr_tests = robustness.report_fdr(state.values["robustness_comparisons"], state.values["pairwise_tests"],
                                      FOREGROUND_MEAN)
    for analysis in needed:
        state.values.update(_declared(analysis, analysis.conclude(state), analyses))
    return state.values, state.settings, fdr_tests


def _declared(analysis: Analysis, values: dict[str, Any], analyses: tuple[Analysis, ...]) -> dict[str, Any]:
    """``values`` when they are outputs of ``analysis`` or of an earlier one (the comparisons, which strata
    and real shift extend); an undeclared name is a programming error."""
    unknown = [name for name in values if not any(name in a.outputs for a in analyses)]
    if unknown:
        raise KeyError(f"analysis {analysis.name!r} returned undeclared value(s) {', '.join(unknown)}")
    return values

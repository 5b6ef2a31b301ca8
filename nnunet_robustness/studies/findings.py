"""A published finding, tested on a study's own ``eval`` results: "reproduced", "not reproduced" or
"inconclusive".

Every finding is phrased as one paired difference per test case whose *expected* sign is positive
(e.g. ``Dice(No-Skip) - Dice(U-Net)`` on shifted test data, or ``degradation(U-Net) -
degradation(No-Skip)`` under speckle noise). It is tested with the statistics ``eval`` uses for its own
verdict (``analysis.robustness.paired_difference``: mean, median and Hodges-Lehmann, the 95 %
interval of the mean over cases (``analysis.intervals.mean_interval``), a two-sided Wilcoxon signed-rank test), with Benjamini-Hochberg FDR
over all findings of the study. The verdict:

- **reproduced**: the 95 % interval lies above 0 and the FDR-adjusted p < 0.05;
- **not reproduced**: the interval lies below 0 and the FDR-adjusted p < 0.05 (the opposite holds);
- **inconclusive**: otherwise (the interval spans 0, or the test does not confirm it), with the
  smallest p-value the test can reach at this number of cases when that is the reason;
- **not evaluated**: the study's scale did not produce the data (e.g. a level it does not train).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.robustness import FDR_LEVEL, benjamini_hochberg, paired_difference
from nnunet_robustness.reports.html import fmt

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_EVALUATED = "reproduced", "not reproduced", "inconclusive", \
    "not evaluated"
N_BOOTSTRAP = 2000


@dataclass
class Finding:
    """One claim of the paper and its test. ``difference`` says what is subtracted from what."""

    key: str
    claim: str
    difference: str
    published: str
    statistics: dict[str, Any] = field(default_factory=dict)
    p_fdr: float = math.nan
    verdict: str = NOT_EVALUATED
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "sentence": sentence(self)}


def case_scores(per_case: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Wide table (model, condition, case) -> metric, the per-case mean over the labels (eval's
    ``foreground_mean``)."""
    with_mean = stats.add_foreground_mean(per_case)
    rows = with_mean[with_mean["label"] == stats.FOREGROUND_MEAN]
    return rows.pivot_table(index=["condition", "case"], columns="model", values=metric, aggfunc="first")


def read_per_case(evaluation: Path) -> pd.DataFrame:
    return pd.read_parquet(evaluation / "per_case.parquet")


def score_difference(scores: pd.DataFrame, condition: str, cases: Sequence[str], a: str, b: str) -> pd.Series:
    """Per case: metric of model ``a`` minus model ``b`` under ``condition``."""
    if condition not in scores.index.get_level_values(0) or a not in scores or b not in scores:
        return pd.Series(dtype=float)
    table = scores.loc[condition]
    table = table[table.index.isin(list(cases))]
    return (table[a] - table[b]).dropna()


def degradation_difference(scores: pd.DataFrame, condition: str, clean: str, cases: Sequence[str], a: str,
                           b: str) -> pd.Series:
    """Per case: (clean - condition) of model ``a`` minus that of model ``b`` (metrics where higher is better)."""
    if condition not in scores.index.get_level_values(0) or a not in scores or b not in scores:
        return pd.Series(dtype=float)
    drop = scores.loc[clean] - scores.loc[condition]
    drop = drop[drop.index.isin(list(cases))]
    return (drop[a] - drop[b]).dropna()


def judge(findings: Sequence[Finding], differences: Sequence[pd.Series], seed: int = 0,
          n_bootstrap: int = N_BOOTSTRAP) -> list[Finding]:
    """Fill each finding's statistics and verdict from its paired differences (BH over the findings)."""
    for finding, d in zip(findings, differences):
        if len(d) == 0:
            finding.verdict, finding.reason = NOT_EVALUATED, finding.reason or "no data at this scale"
            continue
        finding.statistics = paired_difference(d.to_numpy(dtype=float), seed, n_bootstrap)
    tested = [f for f in findings if f.statistics]
    adjusted = benjamini_hochberg([f.statistics["p_value"] for f in tested])
    for finding, p_fdr in zip(tested, adjusted):
        finding.p_fdr = float(p_fdr)
        s = finding.statistics
        confirmed = p_fdr < FDR_LEVEL
        if s["ci_low"] > 0 and confirmed:
            finding.verdict, finding.reason = REPRODUCED, "the 95 % interval lies above 0"
        elif s["ci_high"] < 0 and confirmed:
            finding.verdict, finding.reason = NOT_REPRODUCED, "the 95 % interval lies below 0: the opposite holds"
        else:
            finding.verdict = INCONCLUSIVE
            if s["p_floor"] >= FDR_LEVEL:
                finding.reason = (f"with {s['n']} cases the signed-rank test cannot reach p < {s['p_floor']:.3g}")
            elif s["ci_low"] <= 0 <= s["ci_high"]:
                finding.reason = "the 95 % interval spans 0"
            else:
                finding.reason = f"the interval excludes 0 but the FDR-adjusted p is {p_fdr:.3g}"
    return list(findings)


def sentence(finding: Finding) -> str:
    """The verdict as a sentence a researcher can quote."""
    s = finding.statistics
    if not s:
        return f"{finding.claim}: {finding.verdict} ({finding.reason})."
    return (f"{finding.claim}: {finding.verdict.upper()} ({finding.reason}); {finding.difference} = "
            f"{s['mean_difference']:+.3f} on average, 95% CI [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}], "
            f"Hodges-Lehmann {s['hodges_lehmann']:+.3f}, n = {s['n']} cases, FDR-adjusted p "
            f"{'' if fmt(finding.p_fdr).startswith(('<', '>')) else '= '}{fmt(finding.p_fdr)}.")

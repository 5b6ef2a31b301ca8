"""A published finding, tested on a study's own ``eval`` results and judged on size as well as sign.

Every finding is one difference per test case whose *expected* sign is positive (e.g.
``Dice(No-Skip) - Dice(U-Net)`` on shifted test data), between two arms of training runs. Its
statistics are ``eval``'s (:mod:`nnunet_robustness.analysis.robustness`): with one run per arm the
paired interval of the mean over cases; with several, the two-level bootstrap (runs, then cases).
Benjamini-Hochberg runs over the findings of the study.

**The rule, stated before any result** (:data:`RULE`). ``P`` is the published effect in the finding's
own units, a value or a range ``[P_low, P_high]`` (two datasets); it is *consistent* with an interval
that overlaps ``[P_low / 2, 2 P_high]`` (:data:`CONSISTENCY_FACTOR`). The sign counts as detected when
the 95 % interval excludes 0 and the FDR-adjusted p < 0.05. In this order:

1. **not learned**: an arm's model does not beat the trivial baseline in distribution (its paired
   interval over the image-independent prediction of :mod:`~nnunet_robustness.studies.baseline` does
   not lie above 0);
2. **unconverged**: a training run of either arm has not converged
   (:mod:`~nnunet_robustness.studies.convergence`); the finding describes training length, not
   architecture;
3. **contradicted**: the opposite sign is detected, or the interval lies wholly below the published
   size's band (it excludes the published effect);
4. **reproduced**: the sign is detected and the interval overlaps the band;
5. **same direction, smaller** / **same direction, larger**: the sign is detected and the interval lies
   below / above the band;
6. **inconclusive**: the interval holds both 0 (or the sign is not confirmed) and a value consistent
   with the published effect;
7. without a published size (a claim the paper made only in words, or an arm the paper did not
   test): **same direction** when the sign is detected, **contradicted** when the opposite is,
   **inconclusive** otherwise;

and **not evaluated** where the study's scale did not produce the data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.robustness import FDR_LEVEL, benjamini_hochberg, paired_difference, runs_difference
from nnunet_robustness.reports.html import fmt

REPRODUCED = "reproduced"
SMALLER = "same direction, smaller"
LARGER = "same direction, larger"
SAME_DIRECTION = "same direction"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
UNCONVERGED = "unconverged"
NOT_LEARNED = "not learned"
NOT_EVALUATED = "not evaluated"
VERDICTS = (REPRODUCED, SMALLER, LARGER, SAME_DIRECTION, CONTRADICTED, INCONCLUSIVE, UNCONVERGED, NOT_LEARNED,
            NOT_EVALUATED)
CONSISTENCY_FACTOR = 2.0
N_BOOTSTRAP = 2000
RULE = ("In order: not learned (an arm does not beat the trivial baseline in distribution); unconverged (a "
        "training run of an arm has not converged); contradicted (the opposite sign is detected, or the 95 % "
        f"interval lies below the published effect's band [P_low/{CONSISTENCY_FACTOR:g}, "
        f"{CONSISTENCY_FACTOR:g} P_high]); reproduced (sign detected and the interval overlaps the band); same "
        "direction, smaller / larger (sign detected, interval below / above the band); inconclusive (otherwise: "
        "the interval holds 0 and a value consistent with the published effect). Without a published size: same "
        "direction / contradicted / inconclusive on the sign alone. Sign detected = the 95 % interval excludes 0 "
        "and the Benjamini-Hochberg-adjusted p over the study's findings < 0.05.")


@dataclass(frozen=True)
class Published:
    """The published effect in the finding's units (oriented positive), with how it was obtained."""

    low: float | None  # None: the paper states the direction only
    high: float | None
    source: str  # the published numbers, as reported
    conversion: str = ""  # how they became this finding's units (e.g. relative -> absolute Dice)

    @property
    def band(self) -> tuple[float, float] | None:
        if self.low is None or self.high is None:
            return None
        return self.low / CONSISTENCY_FACTOR, self.high * CONSISTENCY_FACTOR

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "band": list(self.band) if self.band else None}


@dataclass
class ArmState:
    """What is known about one arm (a model with its training runs) before its findings are judged."""

    model: str
    runs: list[str]
    convergence: list[dict] = field(default_factory=list)  # Convergence.to_json per run
    learned: dict | None = None  # paired statistics of model - baseline in distribution, and the verdict

    @property
    def converged(self) -> bool:
        return bool(self.convergence) and all(c["converged"] for c in self.convergence)

    @property
    def did_learn(self) -> bool:
        return self.learned is None or self.learned.get("learned") is not False  # unknown does not block

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "runs": len(self.runs), "run_names": self.runs, "converged": self.converged,
                "convergence": self.convergence, "learned": self.learned}


@dataclass
class Finding:
    """One claim of the paper and its test. ``difference`` says what is subtracted from what."""

    key: str
    claim: str
    difference: str
    published: Published
    arms: tuple[str, str] = ("", "")
    statistics: dict[str, Any] = field(default_factory=dict)
    beside: dict[str, Any] = field(default_factory=dict)  # a second view (e.g. the drop beside the score)
    p_fdr: float = math.nan
    verdict: str = NOT_EVALUATED
    reason: str = ""
    states: list[ArmState] = field(default_factory=list)
    baseline: dict | None = None
    # Each arm against the trivial baseline on the finding's own cases and condition, where that is not the
    # training distribution (a shifted level, noise): {arm: beats_baseline's record}. The verdict's rule does
    # not read it; the reason says when an arm has fallen to the level of an image-independent prediction,
    # because a difference between two models that both lost the task is not the architecture claim.
    under_condition: dict[str, dict] = field(default_factory=dict)

    def caveat(self) -> str:
        """'' unless an arm does not beat the trivial baseline under the finding's condition."""
        lost = [arm for arm, record in self.under_condition.items() if record.get("learned") is False]
        if not lost:
            return ""
        base = next(iter(self.under_condition.values()))["baseline_dice"]
        scores = ", ".join(f"{arm} {record['model_dice']:.3f}" for arm, record in self.under_condition.items())
        who = "neither arm beats" if len(lost) == len(self.under_condition) else f"{', '.join(lost)} does not beat"
        return (f"under this condition {who} the trivial baseline ({base:.3f}; {scores}): a difference between "
                "models at the level of an image-independent prediction")

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "claim": self.claim, "difference": self.difference,
                "published": self.published.to_json(), "arms": list(self.arms), "statistics": self.statistics,
                "beside": self.beside, "p_fdr": self.p_fdr, "verdict": self.verdict, "reason": self.reason,
                "rule": RULE, "runs_per_arm": {s.model: len(s.runs) for s in self.states},
                "converged": {s.model: s.converged for s in self.states}, "arm_states": [s.to_json() for s in self.states],
                "baseline": self.baseline, "under_condition": self.under_condition, "caveat": self.caveat(),
                "numbers_alone": self.numbers_alone(), "sentence": sentence(self)}

    def numbers_alone(self) -> str | None:
        """What the rule's size and sign steps would say were every arm learned and converged: shown beside an
        "unconverged" or "not learned" verdict, never instead of it."""
        if not self.statistics:
            return None
        return classify(self.statistics, self.p_fdr, self.published)[0]


@dataclass(frozen=True)
class Paired:
    """The two arms' values on the same cases: run x case arrays (one row per training run)."""

    a: np.ndarray
    b: np.ndarray

    @property
    def n(self) -> int:
        return int(self.a.shape[1]) if self.a.ndim == 2 else 0


def statistics_of(paired: Paired, seed: int = 0, n_bootstrap: int = N_BOOTSTRAP) -> dict[str, Any]:
    """``eval``'s statistics of ``mean(a) - mean(b)``: paired over cases with one run per arm, the two-level
    bootstrap with more."""
    if paired.a.shape[0] == 1 and paired.b.shape[0] == 1:
        result = paired_difference(paired.a[0] - paired.b[0], seed, n_bootstrap)
    else:
        result = runs_difference(paired.a, paired.b, seed, n_bootstrap)
    return {**result, "runs_a": int(paired.a.shape[0]), "runs_b": int(paired.b.shape[0]),
            "value_a": float(paired.a.mean()), "value_b": float(paired.b.mean())}


def classify(statistics: dict[str, Any], p_fdr: float, published: Published,
             states: Sequence[ArmState] = ()) -> tuple[str, str]:
    """The verdict word and its reason (the module docstring's rule, in its order)."""
    unlearned = [s.model for s in states if not s.did_learn]
    if unlearned:
        verb = "does" if len(unlearned) == 1 else "do"
        return NOT_LEARNED, f"{', '.join(unlearned)} {verb} not beat the trivial baseline in distribution"
    unconverged = [s.model for s in states if not s.converged]
    if unconverged:
        runs = sum(1 for s in states for c in s.convergence if not c["converged"])
        return UNCONVERGED, (f"{', '.join(unconverged)}: {runs} training run(s) not converged; the difference "
                             "reflects training length, not architecture")
    low, high = statistics["ci_low"], statistics["ci_high"]
    confirmed = p_fdr < FDR_LEVEL
    positive, negative = low > 0 and confirmed, high < 0 and confirmed
    band = published.band
    if negative:
        return CONTRADICTED, "the opposite sign holds (95 % interval below 0)"
    if band is None:
        if positive:
            return SAME_DIRECTION, "the 95 % interval lies above 0 (the paper gives no size to compare)"
        return INCONCLUSIVE, _unconfirmed(statistics, p_fdr)
    band_text = f"[{band[0]:+.3f}, {band[1]:+.3f}]"
    if high < band[0]:
        if positive:
            return SMALLER, f"the 95 % interval lies above 0 but below the published effect's band {band_text}"
        return CONTRADICTED, f"the 95 % interval excludes the published effect (band {band_text})"
    if positive:
        if low > band[1]:
            return LARGER, f"the 95 % interval lies above the published effect's band {band_text}"
        return REPRODUCED, f"the 95 % interval lies above 0 and overlaps the published effect's band {band_text}"
    return INCONCLUSIVE, f"{_unconfirmed(statistics, p_fdr)}, and it holds values of the published size {band_text}"


def _unconfirmed(statistics: dict[str, Any], p_fdr: float) -> str:
    if statistics["ci_low"] <= 0 <= statistics["ci_high"]:
        return "the 95 % interval holds 0"
    floor = statistics.get("p_floor", math.nan)
    if isinstance(floor, float) and math.isfinite(floor) and floor >= FDR_LEVEL:
        return f"with {statistics['n']} cases the signed-rank test cannot reach p < {floor:.3g}"
    return f"the interval excludes 0 but the FDR-adjusted p is {p_fdr:.3g}"


def judge(findings: Sequence[Finding], data: Sequence[Paired | None], seed: int = 0,
          n_bootstrap: int = N_BOOTSTRAP) -> list[Finding]:
    """Fill each finding's statistics and verdict from its data (BH over the findings with data)."""
    for finding, paired in zip(findings, data):
        if paired is None or paired.n == 0:
            finding.verdict, finding.reason = NOT_EVALUATED, finding.reason or "no data at this scale"
            continue
        finding.statistics = statistics_of(paired, seed, n_bootstrap)
    tested = [f for f in findings if f.statistics]
    for finding, p_fdr in zip(tested, benjamini_hochberg(np.array([f.statistics["p_value"] for f in tested]))):
        finding.p_fdr = float(p_fdr)
        finding.verdict, finding.reason = classify(finding.statistics, finding.p_fdr, finding.published,
                                                   finding.states)
        if caveat := finding.caveat():
            finding.reason = f"{finding.reason}; {caveat}"
    return list(findings)


def sentence(finding: Finding) -> str:
    """The verdict as a sentence a researcher can quote: the number, its interval, runs, and the published size."""
    s = finding.statistics
    if not s:
        return f"{finding.claim}: {finding.verdict} ({finding.reason})."
    runs = (f"{s['runs_a']} vs {s['runs_b']} training runs" if s.get("runs_a") else "one training run per arm")
    published = (f"published {finding.published.low:+.3f}" if finding.published.low == finding.published.high
                 else f"published {finding.published.low:+.3f} to {finding.published.high:+.3f}") \
        if finding.published.low is not None else "no published size"
    return (f"{finding.claim}: {finding.verdict.upper()} ({finding.reason}); {finding.difference} = "
            f"{s['mean_difference']:+.3f}, 95% CI [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}], {published}; "
            f"n = {s['n']} cases, {runs}, FDR-adjusted p "
            f"{'' if fmt(finding.p_fdr).startswith(('<', '>')) else '= '}{fmt(finding.p_fdr)}.")


# --- reading eval's per-case results ----------------------------------------------------------------------

def case_scores(per_case: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Wide table (condition, case) x model run -> metric, the per-case mean over the labels (eval's
    ``foreground_mean``)."""
    with_mean = stats.add_foreground_mean(per_case)
    rows = with_mean[with_mean["label"] == stats.FOREGROUND_MEAN]
    return rows.pivot_table(index=["condition", "case"], columns="model", values=metric, aggfunc="first")


def read_per_case(evaluation: Path) -> pd.DataFrame:
    return pd.read_parquet(evaluation / "per_case.parquet")


def runs_table(scores: pd.DataFrame, condition: str, cases: Sequence[str], runs: Sequence[str]) -> pd.DataFrame | None:
    """Rows: the ``cases`` under ``condition``; columns: ``runs`` (None when eval has either not)."""
    if condition not in scores.index.get_level_values(0) or not set(runs) <= set(scores.columns):
        return None
    table = scores.loc[condition]
    return table[table.index.isin(list(cases))][list(runs)]


def _paired(table: pd.DataFrame, runs_a: Sequence[str], runs_b: Sequence[str]) -> Paired:
    both = table.dropna()  # a case missing for any run drops out for both arms: the pairing holds
    return Paired(both[list(runs_a)].to_numpy(float).T, both[list(runs_b)].to_numpy(float).T)


def score_pair(scores: pd.DataFrame, condition: str, cases: Sequence[str], runs_a: Sequence[str],
               runs_b: Sequence[str]) -> Paired | None:
    """Arm ``a``'s and ``b``'s metric under ``condition`` on ``cases`` (rows: runs)."""
    table = runs_table(scores, condition, cases, [*runs_a, *runs_b])
    return None if table is None else _paired(table, runs_a, runs_b)


def drop_pair(scores: pd.DataFrame, condition: str, clean: str, cases: Sequence[str], runs_a: Sequence[str],
              runs_b: Sequence[str]) -> Paired | None:
    """Each run's drop (``clean - condition``, per case) for arms ``a`` and ``b``."""
    start = runs_table(scores, clean, cases, [*runs_a, *runs_b])
    shifted = runs_table(scores, condition, cases, [*runs_a, *runs_b])
    if start is None or shifted is None:
        return None
    return _paired(start - shifted, runs_a, runs_b)  # aligned by case, not by position

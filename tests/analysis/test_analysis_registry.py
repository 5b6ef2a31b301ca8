"""``evaluate`` is a registry of analyses (``analysis/eval_analyses``): an analysis registered there runs when
it is needed, and its outputs, summary.json keys, table and report section appear without any other change."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nnunet_robustness.analysis import eval_analyses
from nnunet_robustness.analysis.eval_analyses.base import Analysis, Section
from nnunet_robustness.reports.html import table

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance.*")


def _cases_per_model(state):
    per_case = state.measured.per_case
    return {"case_counts": per_case.groupby("model", sort=False)["case"].nunique().rename("cases").reset_index()}


TOY = Analysis(
    name="case counts",
    outputs={"case_counts": pd.DataFrame},
    needs=lambda measured, options: len(measured.runs) > 1,
    run=_cases_per_model,
    summary=lambda result: {"case_counts": result.case_counts.to_dict(orient="records")},
    tables={"case_counts.csv": "case_counts"},
    sections=(Section(55, "Cases per model (toy)", lambda result: table(
        ["model", "cases"], result.case_counts.to_numpy().tolist(), text_columns=(0,))),),
)


def test_the_registry_runs_each_analysis_once_in_its_order():
    names = [analysis.name for analysis in eval_analyses.ANALYSES]
    assert len(names) == len(set(names))
    # the analyses that add comparisons run after the verdict's pooled ones
    assert names.index("degradation and verdict") < names.index("strata and subgroups") < names.index("real shift")


def test_a_registered_analysis_reaches_the_result_the_files_and_the_report(study, tmp_path, monkeypatch):
    from nnunet_robustness.evaluation import evaluate, write_report

    monkeypatch.setattr(eval_analyses, "ANALYSES", (*eval_analyses.ANALYSES, TOY))
    output = tmp_path / "eval"
    result = evaluate({"A": study["A"], "B": study["B"]}, study["reference"], study["dataset_json"], output,
                      n_bootstrap=20, progress=False)
    assert result.case_counts.set_index("model")["cases"].to_dict() == {"A": 4, "B": 4}
    assert pd.read_csv(output / "case_counts.csv")["cases"].tolist() == [4, 4]
    assert '"case_counts"' in (output / "summary.json").read_text()
    html = Path(write_report(result, tmp_path / "report.html")).read_text()
    # placed by its order: after the summary table (50), before the curves (60)
    assert html.index("Summary (foreground mean") < html.index("Cases per model (toy)") < html.index("Metric vs severity")

    alone = evaluate({"A": study["A"]}, study["reference"], study["dataset_json"], n_bootstrap=20, progress=False)
    assert alone.case_counts.empty  # not needed with one model: its empty value

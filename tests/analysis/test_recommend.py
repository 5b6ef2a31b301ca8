"""`recommend` on fabricated eval results whose right answer is known by construction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from nnunet_robustness import cli
from nnunet_robustness.analysis.recommend import (
    INSUFFICIENT,
    NO_CLEAR_WINNER,
    WINNER,
    RuleSettings,
    fit_rule,
    load_evidence,
    make_bins,
    recommend,
)
from nnunet_robustness.errors import UserInputError
from tests.helpers.evidence import HIGH_TD, LOW_TD, NOISE, TRUE_DICE, write_study


def fit(sources: list[tuple[Path, Path]], n_bins: int = 2, **settings) -> object:
    rule_settings = RuleSettings(**settings)
    evidence = load_evidence(sources, rule_settings)
    bins = make_bins(evidence.drop_duplicates(["source", "case"])["td"].to_numpy(), n_bins=n_bins)
    return fit_rule(evidence, rule_settings, bins)


# --- a known answer --------------------------------------------------------------------------------------

def test_winners_match_the_fabricated_truth(tmp_path: Path) -> None:
    rule = fit([write_study(tmp_path / "eval", cases_per_group=30)])
    # Quantile bins of 30 low- and 30 high-TD cases split exactly between the groups.
    assert rule.bins.count == 2 and LOW_TD[1] < rule.bins.edges[0] < HIGH_TD[0]
    expected = {(0, "clean"): "A", (1, "clean"): "B", (0, NOISE): "B", (1, NOISE): "B"}
    for (bin_index, condition), winner in expected.items():
        cell = rule.cell(bin_index, condition)
        assert (cell.verdict, cell.best, cell.n_cases) == (WINNER, winner, 30)
        group = "low" if bin_index == 0 else "high"
        for comparison in cell.comparisons:
            # Centred noise: the reported effect is exactly the true one, and its CI brackets it tightly.
            truth = TRUE_DICE[(group, condition)][winner] - TRUE_DICE[(group, condition)][comparison.model]
            assert comparison.difference == pytest.approx(truth)
            assert truth - 0.03 < comparison.ci_low < truth < comparison.ci_high < truth + 0.03
            # Every resample favours the winner: p is the bootstrap's floor 1 / (B + 1), and Holm over
            # the two comparisons doubles both.
            assert comparison.p_value == pytest.approx(1 / 2001)
            assert comparison.p_adjusted == pytest.approx(2 / 2001)
            assert comparison.p_floor == pytest.approx(1 / 2001)  # 30 cases: the bootstrap's resolution binds
    few = fit([write_study(tmp_path / "few", cases_per_group=8)], min_cases=8).cell(0, "clean").comparisons[0]
    assert few.p_floor == pytest.approx(1 / 128)  # 8 cases: p = 0.0005 would claim more than the data hold
    unadjusted = fit([write_study(tmp_path / "eval", cases_per_group=30)], correction="none")
    assert all(c.p_adjusted == c.p_value for cell in unadjusted.cells for c in cell.comparisons)


@pytest.mark.parametrize("td, condition, expected", [
    (0.02, "clean", "A"),
    (0.30, "clean", "B"),
    (0.02, NOISE, "B"),
    (0.02, "gaussian_noise:2.6", "B"),  # nearest evaluated severity: 3
    (0.02, "gaussian_noise:1", "A"),  # nearest evaluated severity: 0 = clean
])
def test_query_returns_the_cells_winner(tmp_path: Path, td: float, condition: str, expected: str) -> None:
    rule = fit([write_study(tmp_path / "eval", cases_per_group=30)])
    answer = recommend(rule, np.array([td * 0.9, td, td * 1.1]), condition)
    assert (answer.verdict, answer.model) == (WINNER, expected)
    assert answer.share_of_cases_in_bin == 1.0 and answer.caveats == ()


def test_lower_is_better_metric_picks_the_smallest(tmp_path: Path) -> None:
    # hd95_mm = 10 (1 - Dice) in the fabricated table: same winners, chosen by the smallest distance.
    rule = fit([write_study(tmp_path / "eval", cases_per_group=30)], metric="hd95_mm")
    assert rule.cell(0, "clean").best == "A" and rule.cell(1, "clean").best == "B"
    assert all(c.difference > 0 for c in rule.cell(0, "clean").comparisons)  # positive = winner is better


def test_label_option_compares_one_label(tmp_path: Path) -> None:
    rule = fit([write_study(tmp_path / "eval", cases_per_group=30)], label="tumour")
    mean_rule = fit([write_study(tmp_path / "eval", cases_per_group=30)])
    cell, mean_cell = rule.cell(0, "clean"), mean_rule.cell(0, "clean")
    assert cell.means["A"] == pytest.approx(mean_cell.means["A"] - 0.05)


# --- insufficient evidence -------------------------------------------------------------------------------

def test_no_real_difference_gives_no_winner(tmp_path: Path) -> None:
    # Same true Dice for every model, independent noise: the sample means differ by chance only.
    study = write_study(tmp_path / "eval", cases_per_group=30, mean_dice=lambda *_: 0.8, noise_sd=0.05,
                        centred_noise=False)
    rule = fit([study])
    for cell in rule.cells:
        assert cell.verdict == NO_CLEAR_WINNER, cell
        assert set(cell.tied) == {"A", "B", "C"}
    answer = recommend(rule, np.array([0.02, 0.025]), "clean")
    assert (answer.verdict, answer.model) == (INSUFFICIENT, None)
    assert NO_CLEAR_WINNER in answer.reason and answer.cell is not None


def test_too_few_cases_gives_insufficient_evidence(tmp_path: Path) -> None:
    # A large true effect, but 6 cases per bin: below --min-cases, nothing is claimed.
    rule = fit([write_study(tmp_path / "eval", cases_per_group=6)], min_cases=10)
    assert {c.verdict for c in rule.cells} == {INSUFFICIENT}
    assert all(c.comparisons == () and c.best is None for c in rule.cells)
    answer = recommend(rule, np.array([0.02]), "clean")
    assert answer.verdict == INSUFFICIENT and "fewer than the minimum of 10" in answer.reason


def test_tiny_consistent_advantage_needs_to_exceed_min_difference(tmp_path: Path) -> None:
    study = write_study(tmp_path / "eval", cases_per_group=30, noise_sd=0.002, models=("A", "B"),
                        mean_dice=lambda group, condition, model: 0.804 if model == "A" else 0.8)
    assert fit([study]).cell(0, "clean").verdict == WINNER  # real, but about 0.004 Dice
    with_margin = fit([study], min_difference=0.01).cell(0, "clean")
    assert with_margin.verdict == NO_CLEAR_WINNER and with_margin.tied == ("A", "B")


# --- extrapolation ---------------------------------------------------------------------------------------

def test_outside_the_observed_td_range_is_insufficient_evidence(tmp_path: Path) -> None:
    rule = fit([write_study(tmp_path / "eval", cases_per_group=30)])
    for td in (0.001, 2.0):  # below the hardest and above the easiest evaluated case
        answer = recommend(rule, np.array([td]), "clean")
        assert (answer.verdict, answer.model, answer.cell) == (INSUFFICIENT, None, None)
        assert "outside the evidence's TD range" in answer.reason


def test_outside_the_evaluated_severities_is_insufficient_evidence(tmp_path: Path) -> None:
    rule = fit([write_study(tmp_path / "eval", cases_per_group=30)])
    answer = recommend(rule, np.array([0.02]), "gaussian_noise:4.5")
    assert answer.verdict == INSUFFICIENT and "outside the evaluated severities 0..3" in answer.reason
    with pytest.raises(UserInputError, match="family 'motion' was not evaluated"):
        recommend(rule, np.array([0.02]), "motion:2")


def test_cases_outside_the_bin_are_flagged(tmp_path: Path) -> None:
    rule = fit([write_study(tmp_path / "eval", cases_per_group=30)])
    answer = recommend(rule, np.array([0.02, 0.02, 0.3, 0.3, 5.0]), "clean")  # median in the high bin
    assert answer.model == "B" and answer.share_of_cases_in_bin == pytest.approx(0.4)
    assert any("fall in this TD bin" in c for c in answer.caveats)
    assert any("20% of the dataset's cases lie outside" in c for c in answer.caveats)


# --- determinism and pooling -----------------------------------------------------------------------------

def test_same_seed_same_rule_and_cells_independent_of_other_conditions(tmp_path: Path) -> None:
    study = write_study(tmp_path / "eval", cases_per_group=30)
    assert fit([study], seed=3).to_json() == fit([study], seed=3).to_json()
    other_seed = fit([study], seed=4).cell(0, "clean").comparisons[0]
    assert other_seed.ci_low != fit([study], seed=3).cell(0, "clean").comparisons[0].ci_low
    # The clean cells' bootstrap depends on the cell's name only, not on which other conditions exist.
    per_case = pd.read_csv(study[0] / "per_case.csv")
    (tmp_path / "clean_only").mkdir()
    per_case[per_case["condition"] == "clean"].to_csv(tmp_path / "clean_only" / "per_case.csv", index=False)
    clean_only = (tmp_path / "clean_only", study[1])
    assert fit([clean_only], seed=3).cell(0, "clean") == fit([study], seed=3).cell(0, "clean")


def test_shared_test_images_are_resampled_together(tmp_path: Path) -> None:
    # The study's protocol: several datasets (training levels) evaluated on the same test images. Scoring
    # the same images twice with the same results must add no evidence: the CIs stay those of one copy.
    first = write_study(tmp_path / "eval_501", cases_per_group=12)
    copy = tmp_path / "eval_509"
    copy.mkdir()
    (copy / "per_case.csv").write_text((first[0] / "per_case.csv").read_text())
    single, pooled = fit([first]).cell(0, "clean"), fit([first, (copy, first[1])]).cell(0, "clean")
    assert (pooled.n_cases, pooled.n_observations) == (12, 24)
    for pooled_comparison, single_comparison in zip(pooled.comparisons, single.comparisons, strict=True):
        assert pooled_comparison.model == single_comparison.model
        for field in ("difference", "ci_low", "ci_high", "p_value", "p_adjusted"):
            assert getattr(pooled_comparison, field) == pytest.approx(getattr(single_comparison, field), rel=1e-12)


def test_in_distribution_keeps_cases_at_a_training_alpha(tmp_path: Path) -> None:
    eval_folder, complexity_csv = write_study(tmp_path / "eval", cases_per_group=12)
    table = pd.read_csv(complexity_csv)
    # Trained at alpha 0.1 (easy); the hard test cases are at 0.9, a level the models never saw.
    table["alpha"] = np.where(table["case"].str.startswith("ts_low"), 0.9, 0.1)
    training = pd.DataFrame({"case": ["tr_0", "tr_1"], "split": "train", "alpha": 0.1, "texture_disparity_bits": 0.3})
    pd.concat([table, training]).to_csv(complexity_csv, index=False)
    pooled = fit([(eval_folder, complexity_csv)])
    assert pooled.shifted_cases == 12
    assert any("not trained at" in c for c in recommend(pooled, np.array([0.3]), "clean").caveats)
    settings = RuleSettings()
    matched = load_evidence([(eval_folder, complexity_csv)], settings, in_distribution=True)
    assert set(matched["case"].str[:7]) == {"ts_high"}
    with pytest.raises(UserInputError, match="needs the alpha"):
        load_evidence([write_study(tmp_path / "no_alpha", cases_per_group=10)], settings, in_distribution=True)


def test_eval_outputs_with_different_models_are_refused(tmp_path: Path) -> None:
    first = write_study(tmp_path / "eval_1", cases_per_group=10)
    second = write_study(tmp_path / "eval_2", cases_per_group=10, models=("A", "B"))
    with pytest.raises(UserInputError, match="different models"):
        load_evidence([first, second], RuleSettings())


# --- command line ----------------------------------------------------------------------------------------

@pytest.fixture
def nnunet_robust(monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    """`nnunet-robust`'s entry point with only this command registered: the others import torch,
    seconds that test nothing here."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("nnunet_robustness.cli.recommend",))
    return lambda *argv: cli.main([str(a) for a in argv])


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str], nnunet_robust: Callable[..., int]) -> None:
    eval_folder, complexity_csv = write_study(tmp_path / "eval", cases_per_group=30)
    user_csv = tmp_path / "complexity_Dataset042_Mine.csv"
    pd.DataFrame({"case": ["u1", "u2", "u3"], "split": "train", "alpha": "",
                  "texture_disparity_bits": [0.015, 0.02, float("nan")]}).to_csv(user_csv, index=False)
    output = tmp_path / "out" / "recommendation.json"
    status = nnunet_robust("recommend", "--evidence", f"{eval_folder}={complexity_csv}", "--bins", 2,
                           "--dataset", user_csv, "--condition", "clean", "-o", output)
    printed = capsys.readouterr().out
    assert status == 0
    assert "recommendation: A" in printed and "A vs B: +0.1" in printed
    report = json.loads(output.read_text())
    assert report["query"]["model"] == "A" and report["query"]["td_cases"] == 2  # NaN TD left out
    assert len(report["cells"]) == 4 and report["bins"]["method"] == "quantile"
    assert {(c["bin_index"], c["condition"], c["verdict"], c["best"]) for c in report["cells"]} == {
        (0, "clean", WINNER, "A"), (1, "clean", WINNER, "B"), (0, NOISE, WINNER, "B"), (1, NOISE, WINNER, "B")}


def test_cli_names_the_file_when_cases_lack_complexity(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      nnunet_robust: Callable[..., int]) -> None:
    eval_folder, complexity_csv = write_study(tmp_path / "eval", cases_per_group=10)
    table = pd.read_csv(complexity_csv)
    table.iloc[1:].to_csv(complexity_csv, index=False)
    status = nnunet_robust("recommend", "--evidence", f"{eval_folder}={complexity_csv}", "-o", tmp_path / "r.json")
    error = capsys.readouterr().err
    assert status == 2 and str(complexity_csv) in error and "ts_low_000" in error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()

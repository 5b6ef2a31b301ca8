"""The benchmarks' stability rule (benchmarks/figures.py): a measurement is repeated until the last
three ratios lie within 10 %, at most 7 times; goals are judged on the median of those ratios, and not
at all when they never settle (nor on a busy machine). Fake measurements: deterministic and fast."""

from __future__ import annotations

import json

import pytest

from tests.helpers.benchmarks import import_benchmark

figures = import_benchmark("figures")


def fake_measurements(*peer_seconds: float, ours: float = 1.0):
    """measure() for repeat_until_stable: each call takes the next of ``peer_seconds``."""
    sequence = iter(peer_seconds)
    return lambda: {"ours": ours, "peer": next(sequence)}


def peer_ratio(times):
    return {"peer": times["peer"] / times["ours"]}


def test_repeats_until_the_last_three_ratios_settle_and_takes_their_median():
    result = figures.repeat_until_stable(fake_measurements(1.0, 2.0, 1.5, 1.52, 1.55, 9.0), peer_ratio)
    assert result.rounds == 5  # (2.0, 1.5, 1.52) spread 33 %; (1.5, 1.52, 1.55) 3.3 %: stop
    assert result.stable and result.ratios == {"peer": 1.52} and result.times == {"ours": 1.0, "peer": 1.52}
    assert result.spread == pytest.approx(1.55 / 1.5 - 1)
    assert result.judge(True) is True and result.judge(False) is False


def test_three_measurements_are_the_minimum():
    result = figures.repeat_until_stable(fake_measurements(2.0, 2.0, 2.0, 5.0), peer_ratio)
    assert (result.rounds, result.stable, result.spread, result.ratios["peer"]) == (3, True, 0.0, 2.0)


def test_a_spread_equal_to_the_limit_is_not_stable():
    # 1.25 / 1.0 - 1 is exactly 0.25 in floating point (1.1 / 1.0 - 1 is not exactly 0.1)
    result = figures.repeat_until_stable(fake_measurements(1.0, 1.25, 1.0, 1.2, 1.1, 1.1), peer_ratio, max_spread=0.25)
    assert result.rounds == 5 and result.stable and result.ratios["peer"] == 1.1


def test_unstable_after_the_cap_leaves_goals_unjudged():
    result = figures.repeat_until_stable(fake_measurements(*[1.0, 2.0] * 10), peer_ratio)
    assert result.rounds == figures.MAX_ROUNDS == 7 and not result.stable
    assert result.spread == pytest.approx(1.0) and result.ratios["peer"] == 1.0  # the median of the last (1, 2, 1)
    assert result.judge(True) is None and result.judge(False) is None


def test_every_ratio_must_settle():
    slow = iter([3.0, 3.0, 3.0, 5.0, 4.0, 4.0, 4.0])
    fast = iter([2.0] * 7)
    result = figures.repeat_until_stable(lambda: {"ours": 1.0, "a": next(slow), "b": next(fast)},
                                         lambda t: {"a": t["a"] / t["ours"], "b": t["b"] / t["ours"]},
                                         max_spread=0.1)
    assert result.rounds == 3  # both settled at once
    slow, fast = iter([2.0] * 7), iter([3.0, 5.0, 3.0, 3.0, 3.0, 3.0, 3.0])
    result = figures.repeat_until_stable(lambda: {"ours": 1.0, "a": next(slow), "b": next(fast)},
                                         lambda t: {"a": t["a"] / t["ours"], "b": t["b"] / t["ours"]})
    assert result.rounds == 5 and result.ratios == {"a": 2.0, "b": 3.0}


def test_least_settled_summarises_several_measurements():
    settled = figures.Stable(times={}, ratios={}, spread=0.02, rounds=3, stable=True)
    unsettled = figures.Stable(times={}, ratios={}, spread=0.4, rounds=7, stable=False)
    combined = figures.least_settled([settled, unsettled])
    assert (combined.spread, combined.rounds, combined.stable) == (0.4, 7, False)
    assert figures.least_settled([settled, settled]).stable


def _figure(stable):
    return figures.Figure.timed(stable, figure="t (ms)", ours=1.0, reference=3.0, ratio=3.0, goal="ref / ours >= 2",
                                met=True)


@pytest.mark.parametrize("busy", [False, True])
def test_written_figures_record_spread_and_rounds_and_judge_only_stable_quiet_runs(tmp_path, monkeypatch, busy):
    monkeypatch.setattr(figures, "machine_is_busy", lambda: busy)
    stable = figures.Stable(times={}, ratios={}, spread=0.03, rounds=4, stable=True)
    unstable = figures.Stable(times={}, ratios={}, spread=0.25, rounds=7, stable=False)
    informational = figures.Figure(figure="count", ours=1, reference=None, ratio=None, goal="informational", met=None)
    path = figures.write_figures(tmp_path / "x.md", "x", [_figure(stable), _figure(unstable), informational], "CPU")
    payload = json.loads(path.read_text())
    assert payload["busy"] is busy and payload["unstable"] == 1
    first, second, third = payload["figures"]
    assert (first["spread"], first["rounds"], first["stable"]) == (0.03, 4, True)
    assert first["met"] is (None if busy else True)  # a busy machine still leaves every goal unjudged
    assert second["met"] is None and second["stable"] is False
    assert third["spread"] is None and third["met"] is None
    read = figures.read_figures(path)
    assert read["figures"][1].rounds == 7


def test_older_results_without_the_stability_fields_still_read(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"benchmark": "old", "generated": "then", "device": "CPU", "markdown": "old.md",
                                "figures": [{"figure": "f", "ours": 1.0, "reference": 2.0, "ratio": 2.0,
                                             "goal": "g", "met": True}]}))
    payload = figures.read_figures(path)
    assert payload["unstable"] is None and payload["figures"][0].spread is None


def test_summary_row_shows_spread_and_rounds_and_an_unstable_figure_as_not_judged():
    run_all = import_benchmark("run_all")
    unstable = figures.Stable(times={}, ratios={}, spread=0.25, rounds=7, stable=False)
    row = run_all.table_row(_figure(unstable), "metrics")
    assert "| 25% (7) |" in row and row.endswith("| unstable: not judged |")
    stable = figures.Stable(times={}, ratios={}, spread=0.034, rounds=3, stable=True)
    assert run_all.table_row(_figure(stable), "metrics").endswith("| 3% (3) | ref / ours >= 2 | yes |")
    assert run_all.table_row(_figure(stable), "metrics", busy=True).endswith("| busy: not judged |")


def test_a_measurement_without_a_ratio_is_taken_once_with_a_window_of_one():
    calls = []
    result = figures.repeat_until_stable(lambda: calls.append(1) or {"ours": 0.5}, lambda t: {}, window=1)
    assert len(calls) == result.rounds == 1 and result.stable and result.times == {"ours": 0.5}
    with pytest.raises(ValueError):
        figures.repeat_until_stable(lambda: {"ours": 0.5}, lambda t: {}, window=8)

"""The robust-training benchmark's stability wiring (benchmarks/bench_robust_training.py): a measurement
is one process per trainer, in turn, repeated until both ratios to nnUNetTrainer settle; the goal is
judged on the median ratio only when stable, and the Markdown states the spread and the measurements.
Fake trainer runs: nothing is trained."""

from __future__ import annotations

import pytest

from tests.helpers.benchmarks import import_benchmark

bench = import_benchmark("bench_robust_training")

PLANS = {"patch_size": [128, 128], "batch_size": 12}


def fake_runs(seconds: dict[str, list[float]]):
    """One trainer process's seconds per iteration: the next of its label's list; ``calls`` keeps the order."""
    sequences = {label: iter(values) for label, values in seconds.items()}
    calls: list[str] = []

    def run(label: str) -> float:
        calls.append(label)
        return next(sequences[label])
    return run, calls


def test_measurements_run_each_trainer_in_turn_until_both_ratios_settle():
    run, calls = fake_runs({bench.BASELINE: [0.4] * 5,
                            bench.DEFAULT: [0.6, 0.44, 0.42, 0.43, 0.43],  # settles at 1.05-1.1x from the 2nd
                            bench.EVERY: [0.4, 0.8, 0.5, 0.52, 0.5]})  # 1.25-1.3x from the 3rd
    timing, runs = bench.measure_until_stable(run)
    assert timing.rounds == 5 and timing.stable
    assert calls == list(bench.LABELS) * 5 and runs[bench.DEFAULT] == [0.6, 0.44, 0.42, 0.43, 0.43]
    assert timing.ratios[bench.DEFAULT] == pytest.approx(0.43 / 0.4)
    goal, worst = bench.headline_figures(timing)
    assert (goal.met, goal.stable, goal.rounds, goal.reference) == (True, True, 5, 0.4)
    assert worst.met is None and worst.ratio == pytest.approx(0.5 / 0.4) and worst.rounds == 5


def test_an_unstable_series_stops_at_the_cap_and_leaves_the_goal_unjudged():
    run, calls = fake_runs({bench.BASELINE: [0.4] * 7, bench.DEFAULT: [0.4, 0.6] * 4, bench.EVERY: [0.5] * 7})
    timing, runs = bench.measure_until_stable(run)
    assert timing.rounds == bench.MAX_ROUNDS == 7 and not timing.stable and len(calls) == 21
    goal = bench.headline_figures(timing)[0]
    assert goal.ratio == pytest.approx(1.0) and goal.met is None and goal.stable is False  # 1.0 <= 1.15, not judged
    text = bench.markdown(timing, runs, PLANS, 30)
    assert "Spread of the ratios: 50% (7 measurements, unstable: goal not judged)." in text
    assert "| nnUNetTrainerCorruptionAug | 0.400 (0.400, 0.600, 0.400, 0.600, 0.400, 0.600, 0.400) | 1.00x |" in text


def test_one_measurement_with_max_rounds_one():
    run, calls = fake_runs({bench.BASELINE: [0.4], bench.DEFAULT: [0.5], bench.EVERY: [0.6]})
    timing, _ = bench.measure_until_stable(run, max_rounds=1)
    assert (timing.rounds, timing.stable, len(calls)) == (1, True, 3)
    assert bench.headline_figures(timing)[0].met is False  # 1.25x > 1.15x, judged


def test_the_worst_case_runs_with_its_options_file_and_removes_it(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "measure", lambda trainer, iterations, env: seen.append(
        (trainer, (tmp_path / "o.json").is_file())) or 0.5)
    run = bench.trainer_runs(30, {}, tmp_path / "o.json")
    assert [run(label) for label in bench.LABELS] == [0.5] * 3
    assert seen == [("nnUNetTrainer", False), ("nnUNetTrainerCorruptionAug", False),
                    ("nnUNetTrainerCorruptionAug", True)] and not (tmp_path / "o.json").exists()

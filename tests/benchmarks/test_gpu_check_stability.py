"""The GPU check's stability wiring (benchmarks/gpu_check.py): corruptions and surface metrics measure
ours and the reference interleaved, run vs the naive loop one ``run`` then one naive loop, each repeated
until its ratio settles; goals are judged on the median only when stable (never in dry mode). Fake
timings: nothing runs on a device. tests/benchmarks/test_gpu_check.py runs the dry mode itself."""

from __future__ import annotations

import pytest

from tests.helpers.benchmarks import import_benchmark

bench = import_benchmark("gpu_check")

CONDITIONS = bench.CONDITIONS[:1]
COUNTS = {"clean_identical": 8, "clean": 8, "corrupted_identical": 0, "corrupted": 8}


def fake_timer(seconds: dict[str, list[float]], calls: list[str]):
    """timed()'s stand-in: the function's name picks its next seconds."""
    sequences = {name: iter(values) for name, values in seconds.items()}

    def timer(function, synchronize=lambda: None):
        calls.append(function.__name__)
        return next(sequences[function.__name__])
    return timer


def ours():
    pass


def torchio():
    pass


def judge(ok):
    return bool(ok)


def test_corruption_measurements_interleave_ours_and_torchio_until_the_speedup_settles():
    calls: list[str] = []
    # medians of 3 per measurement: ours 1 ms throughout; TorchIO 20, 12, 11, 11.5 ms
    timer = fake_timer({"ours": [0.001] * 12, "torchio": [0.02] * 3 + [0.012] * 3 + [0.011] * 3 + [0.0115] * 3}, calls)
    timing = bench.interleaved_until_stable(ours, torchio, 3, timer=timer)
    assert (timing.rounds, timing.stable) == (4, True) and calls == ["ours", "torchio"] * 12
    assert timing.ratios["speedup"] == pytest.approx(11.5)
    row = {"family": "motion", "ours": timing.times["ours"], "torchio": timing.times["reference"], "timing": timing}
    figure = bench.corruption_figures([row], "cuda", (128,) * 3, judge)[0]
    assert (figure.met, figure.rounds, figure.stable, figure.ratio) == (True, 4, True, pytest.approx(11.5))
    dry = bench.corruption_figures([row], "cpu", (32,) * 3, lambda ok: None)[0]
    assert dry.met is None and bench.verdict(dry) == "not judged"  # the dry mode judges no goal


def test_an_unstable_surface_speedup_stops_at_the_cap_and_leaves_the_goal_unjudged():
    calls: list[str] = []
    timer = fake_timer({"ours": [1.0] * 21, "torchio": [4.0, 8.0] * 4}, calls)  # the CPU code: once per measurement
    timing = bench.interleaved_until_stable(ours, torchio, 3, theirs_repeats=1, timer=timer)
    assert timing.rounds == bench.MAX_ROUNDS == 7 and not timing.stable
    assert calls == ["ours", "torchio", "ours", "ours"] * 7
    row = {"family": "x", "ours": 1.0, "torchio": 4.0, "timing": timing}
    figure = bench.corruption_figures([row], "cuda", (128,) * 3, judge)[0]
    assert figure.met is None and bench.verdict(figure) == "unstable: not judged"  # 4x >= 10x or not: unjudged


def fake_workflows(run_walls: list[float], naive_seconds: list[float]):
    walls, naives, calls = iter(run_walls), iter(naive_seconds), []

    def run():
        calls.append("run")
        wall = next(walls)
        return {"wall": wall, "loop": 0.8 * wall, "predictor": 0.78 * wall, "input_space": 0.01 * wall}

    def naive():
        calls.append("naive")
        return next(naives)
    return run, naive, calls


def test_run_measurements_take_one_run_then_one_naive_loop_until_the_speedup_settles():
    run, naive, calls = fake_workflows([40.0, 38.0, 39.0, 38.0], [400.0, 300.0, 310.0, 300.0])  # 10x, then ~7.9x
    timing = bench.run_vs_naive(run, naive, max_rounds=5)
    assert (timing.rounds, timing.stable) == (4, True) and calls == ["run", "naive"] * 4
    assert timing.times["naive"] == 300.0 and timing.times["busy"] == pytest.approx(0.975)
    busy, speed, agreement = bench.run_figures(timing, COUNTS, (1.0, 1.0), 8, CONDITIONS, "cuda", judge)
    assert (speed.met, speed.rounds, speed.stable, speed.ratio) == (True, 4, True, pytest.approx(300 / 38))
    assert busy.met is True and busy.spread is None and agreement.met is True


def test_the_run_comparison_stops_after_three_measurements_by_default():
    # ~6 min per measurement on an H200: a cap of 3, the least a window of 3 needs
    run, naive, calls = fake_workflows([40.0] * 5, [300.0, 200.0] * 3)
    timing = bench.run_vs_naive(run, naive)
    assert (timing.rounds, timing.stable, len(calls)) == (bench.RUN_MAX_ROUNDS, False, 6) and bench.RUN_MAX_ROUNDS == 3
    speed = bench.run_figures(timing, COUNTS, (1.0, 1.0), 8, CONDITIONS, "cuda", judge)[1]
    assert speed.met is None and speed.stable is False  # 7.5x > 1, but unsettled: not judged
    run, naive, calls = fake_workflows([40.0], [300.0])
    assert bench.run_vs_naive(run, naive, max_rounds=1).rounds == 1 and calls == ["run", "naive"]  # the dry mode's

"""The scale benchmark's stability wiring (benchmarks/bench_scale.py): an eval measurement is, per size,
one process of ours then one of nnU-Net's, repeated until ours / nnU-Net at the largest size and the
eval slope settle; a run measurement is one run per number of items, repeated until the slope settles.
Goals are judged on the medians only when stable; memory figures come from the first measurement.
Fake processes and fake loop times: nothing is evaluated or predicted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.benchmarks import import_benchmark

bench = import_benchmark("bench_scale")

VOXELS = [75 * 128 * 128, 150 * 256 * 256, 300 * 512 * 512]


def fake_eval(ours_seconds: list[list[float]], nnunet_seconds: float = 1.0):
    """child() for eval_scaling: ours takes the next measurement's seconds per size (x1, x8, x64),
    nnU-Net always ``nnunet_seconds`` at every size x 8 per step; ``calls`` keeps the order."""
    measurements = iter(ours_seconds)
    current: list[float] = []
    calls: list[tuple[str, tuple]] = []
    peaks = iter(range(100, 10_000, 100))  # every process its own peak: the first measurement's are kept

    def child(side, shape, prediction, dataset_json, repeats):  # the fake write_pair gives the shape as a path
        index = bench_shapes().index(shape)
        if side == "ours" and index == 0:
            current[:] = next(measurements)
        calls.append((side, shape))
        seconds = current[index] if side == "ours" else nnunet_seconds * 8 ** index
        return {"seconds": seconds, "peak_mib": float(next(peaks)), "dice": [0.9, 0.5]}
    return child, calls


def bench_shapes():
    return [(75, 128, 128), (150, 256, 256), bench.CT_SHAPE]


def eval_scaling(ours_seconds, **stability):
    child, calls = fake_eval(ours_seconds)
    timing, rows = bench.eval_scaling(Path("unwritten"), 3, False, child=child, memory=lambda *a: {"peak_mib": 4000.0},
                                      write=lambda folder, shape: (shape, shape, "dataset.json"), **stability)
    return timing, rows, calls


def run_scaling(loops, **stability):
    sequence = iter(loops)
    calls = []
    loop = lambda n_cases, n_conditions: calls.append((n_cases, n_conditions)) or next(sequence)  # noqa: E731
    timing, rows = bench.run_scaling(bench.run_plan(False), loop, **stability)
    return timing, rows, calls


def test_eval_measurements_interleave_both_sides_per_size_until_ratio_and_slope_settle():
    linear = [1.0, 8.0, 64.0]
    # 2nd measurement: the largest case twice as slow (ratio 2x, slope 1.17); then three linear ones
    timing, rows, calls = eval_scaling([linear, [1.0, 8.0, 128.0], linear, linear, linear, [9.0, 9.0, 9.0]])
    assert (timing.rounds, timing.stable) == (5, True)
    assert calls == [(side, shape) for shape in bench_shapes() for side in ("ours", "nnunet")] * 5
    assert timing.ratios["eval"] == pytest.approx(1.0) and timing.ratios["eval_slope"] == pytest.approx(1.0)
    assert rows[-1]["ours"]["seconds"] == 64.0 and rows[-1]["ours"]["peak_mib"] == 500.0  # median; first peak
    run_timing, run_rows, _ = run_scaling([4.0, 16.0, 64.0] * 3)  # 4, 16, 64 items: linear
    figures = bench.headline_figures(timing, rows, run_timing, bool)
    ratio, memory, rate, eval_slope, run_slope = figures
    assert (ratio.met, ratio.rounds, ratio.stable, eval_slope.met, eval_slope.rounds) == (True, 5, True, True, 5)
    assert memory.spread is None and memory.ours == 500.0 and rate.ours == 4000.0  # memory stays as it was
    assert (run_slope.met, run_slope.rounds, run_slope.ours) == (True, 3, pytest.approx(1.0))
    assert [(r["items"], r["loop"]) for r in run_rows] == [(4, 4.0), (16, 16.0), (64, 64.0)]


def test_an_unstable_run_slope_stops_at_the_cap_and_leaves_its_goal_unjudged():
    # the 64-item loop alternates 64 s and 30 s: slopes 1.0 and 0.73, never within 10 %
    run_timing, _, calls = run_scaling([4.0, 16.0, 64.0, 4.0, 16.0, 30.0] * 4)
    assert run_timing.rounds == bench.MAX_ROUNDS == 7 and not run_timing.stable and len(calls) == 21
    timing, rows, _ = eval_scaling([[1.0, 8.0, 64.0]] * 3)
    figures = bench.headline_figures(timing, rows, run_timing, bool)
    assert figures[0].met is True and figures[-1].met is None and figures[-1].stable is False  # median 1.0 <= 1.1, unjudged
    assert bench.verdict(figures[-1]) == "unstable: not judged" and bench.verdict(figures[0]) == "yes"
    quick = bench.headline_figures(timing, rows, run_timing, lambda ok: None)  # --quick or busy: nothing judged
    assert [f.met for f in quick] == [None] * 5 and bench.verdict(quick[0]) == "not judged"


def test_one_measurement_with_max_rounds_one():
    timing, _, calls = eval_scaling([[1.0, 8.0, 640.0]], max_rounds=1)
    assert (timing.rounds, timing.stable, len(calls)) == (1, True, 6)
    assert timing.ratios["eval"] == pytest.approx(10.0)

"""The adversarial benchmark's stability wiring (benchmarks/bench_adversarial.py): a measurement is the
median of 3 clean predictions then one PGD attack, repeated until attack / clean settles; the goal is
judged on the median only when stable, and the Markdown states the spread and the measurements. Fake
prediction, fake attack and a fake clock: nothing is predicted or attacked."""

from __future__ import annotations

import types

import pytest

from tests.helpers.benchmarks import import_benchmark

bench = import_benchmark("bench_adversarial")

MEMORY = {"clean": {"peak_mib": 800.0, "after_load_mib": 500.0, "tiles": None},
          "attack": {"peak_mib": 1000.0, "after_load_mib": 500.0, "tiles": 8}}
RESULT = types.SimpleNamespace(num_tiles=8, network_calls=168, loss_clean=0.1, loss_final=0.9, flipped_fraction=0.25)


class FakePipeline:
    """Every clean prediction takes the next of ``clean`` seconds and every attack the next of ``attack``;
    ``calls`` records the order, to check that each measurement interleaves both."""

    def __init__(self, clean, attack):
        self.now, self.clean, self.attack, self.calls = 0.0, iter(clean), iter(attack), []

    def clock(self) -> float:
        return self.now

    def predict(self):
        self.calls.append("clean")
        self.now += next(self.clean)

    def attack_case(self):
        self.calls.append("attack")
        self.now += next(self.attack)
        return RESULT if self.calls.count("attack") == 1 else None  # the first attack's result is reported


def measure(clean, attack, **stability):
    fake = FakePipeline(clean, attack)
    timing, result = bench.measure_until_stable(fake.predict, fake.attack_case, clock=fake.clock, **stability)
    return timing, result, fake


def test_measurements_interleave_clean_and_attack_until_the_ratio_settles():
    # clean medians 2, 2, 2, 2; attacks 100, 80, 82, 84: ratios 50, 40, 41, 42 settle after 4
    timing, result, fake = measure([1.0, 2.0, 3.0] * 4, [100.0, 80.0, 82.0, 84.0, 999.0])
    assert (timing.rounds, timing.stable, result) == (4, True, RESULT)
    assert fake.calls == (["clean"] * 3 + ["attack"]) * 4
    assert timing.times == {"clean": 2.0, "attack": 82.0} and timing.ratios["ratio"] == pytest.approx(41.0)
    assert timing.spread == pytest.approx(42 / 40 - 1)
    figures = bench.headline_figures(timing, MEMORY, 64, 128)
    assert (figures[0].met, figures[0].rounds, figures[0].stable) == (True, 4, True)
    assert figures[1].ratio == 1.25 and figures[1].met is None and figures[1].spread is None  # memory stays as it was


def test_an_unstable_series_stops_at_the_cap_and_leaves_the_goal_unjudged():
    timing, _, fake = measure([1.0] * 30, [30.0, 70.0] * 5)  # 30x and 70x alternate: never within 10 %
    assert timing.rounds == bench.MAX_ROUNDS == 5 and not timing.stable and fake.calls.count("attack") == 5
    figure = bench.headline_figures(timing, MEMORY, 64, 128)[0]
    assert figure.ratio == 30.0 and figure.met is None and figure.stable is False  # 30 <= 60, but not judged
    text = bench.markdown(timing, RESULT, MEMORY, 64, 128, threads=2)
    assert "| spread of the ratios (max / min - 1) | 133% (5 measurements, unstable: goal not judged) |" in text
    assert "repeated until the last 3 ratios lie within 10 % (max / min - 1), at most 5 times" in text


def test_one_measurement_with_max_rounds_one():
    timing, _, fake = measure([1.0] * 3, [90.0], max_rounds=1)
    assert (timing.rounds, timing.stable, len(fake.calls)) == (1, True, 4)
    assert bench.headline_figures(timing, MEMORY, 64, 128)[0].met is False  # 90x > 60x, judged
    text = bench.markdown(timing, RESULT, MEMORY, 64, 128, threads=2, max_rounds=1)
    assert "| 0% (1 measurement) |" in text and "taken once (a cap of one measurement" in text

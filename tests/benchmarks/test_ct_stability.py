"""The CT benchmark's stability wiring (benchmarks/bench_ct.py): a measurement is one run of every CT
family then one scikit-image round trip (scaled to the volume), repeated until every family's ratio
settles; the goals are judged on the median ratios only when stable, and the Markdown states the spread
and the measurements. Fake timings: no CT family or radon transform runs."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.benchmarks import import_benchmark

bench = import_benchmark("bench_ct")

FAMILIES = ["ct_low_dose", "ct_rings"]
VOLUME = torch.zeros(1, 100, 2, 2)  # 100 slices: the reference is scaled from its slices to these


def fake(seconds: dict[str, list[float]]):
    """ours() and reference() for measure_until_stable: each call takes the next of its list (the
    reference's are seconds per slice); ``calls`` keeps the order."""
    sequences = {name: iter(values) for name, values in seconds.items()}
    calls: list[str] = []

    def ours(family, volume):
        calls.append(family)
        return next(sequences[family])

    def reference(volume, slices, views):
        assert (slices, views) == (2, 360)
        calls.append("reference")
        return next(sequences["reference"])
    return ours, reference, calls


def measure(seconds, **stability):
    ours, reference, calls = fake(seconds)
    return bench.measure_until_stable(VOLUME, FAMILIES, 2, 360, ours=ours, reference=reference, **stability), calls


def test_measurements_run_every_family_then_the_reference_until_every_ratio_settles():
    (timing, calls) = measure({"ct_low_dose": [20.0, 10.0, 20.0, 20.5, 21.0, 99.0], "ct_rings": [5.0] * 6,
                               "reference": [4.0] * 6})  # 400 s per volume: 20x, 40x, 20x, 19.5x, 19x
    assert (timing.rounds, timing.stable) == (5, True)
    assert calls == [*FAMILIES, "reference"] * 5
    assert timing.times["reference"] == 400.0 and timing.ratios["ct_low_dose"] == pytest.approx(400 / 20.5)
    low_dose, rings = bench.headline_figures(timing, FAMILIES, 100)
    assert (low_dose.met, low_dose.rounds, low_dose.stable, low_dose.ratio) == (True, 5, True, 19.51)
    assert rings.ratio == 80.0 and rings.reference == 400.0


def test_an_unstable_series_stops_at_the_cap_and_leaves_the_goals_unjudged():
    (timing, calls) = measure({"ct_low_dose": [300.0, 500.0] * 4, "ct_rings": [5.0] * 7, "reference": [4.0] * 7})
    assert timing.rounds == bench.MAX_ROUNDS == 7 and not timing.stable and calls.count("reference") == 7
    low_dose, rings = bench.headline_figures(timing, FAMILIES, 100)
    assert low_dose.ratio == pytest.approx(400 / 300, abs=0.01) and low_dose.met is None  # faster, but not judged
    assert rings.met is None and rings.stable is False  # one family unsettled: the measurement is
    text = bench.markdown(timing, FAMILIES, 100, 2, 360, "CPU", (0.1, 0.2))
    assert "Spread of the ratios: 67% (7 measurements, unstable: goal not judged)." in text
    assert "at most 7 times" in text and "| `ct_rings` | 5.0 | 0.050 | 80.0x |" in text


def test_a_measurement_is_the_median_of_interleaved_repeats():
    (timing, calls) = measure({"ct_low_dose": [20.0, 90.0, 21.0] * 3, "ct_rings": [5.0] * 9,
                               "reference": [4.0, 4.4, 2.0] * 3}, repeats=3)
    assert calls[:6] == [*FAMILIES, "reference"] * 2 and calls.count("reference") == 9  # 3 measurements
    assert timing.times == {"ct_low_dose": 21.0, "ct_rings": 5.0, "reference": 400.0} and timing.stable
    assert "the median of 3 interleaved run(s)" in bench.markdown(timing, FAMILIES, 100, 2, 360, "CPU", (0, 0),
                                                                  repeats=3)


def test_one_measurement_with_max_rounds_one():
    (timing, calls) = measure({"ct_low_dose": [500.0], "ct_rings": [5.0], "reference": [4.0]}, max_rounds=1)
    assert (timing.rounds, timing.stable, len(calls)) == (1, True, 3)
    assert bench.headline_figures(timing, FAMILIES, 100)[0].met is False  # 500 s > 400 s, judged

"""The metrics benchmark's peers (benchmarks/bench_metrics.py): their values on tiny mask pairs against
ours where the definitions agree (surface-distance; MONAI's subvoxel NSD) and where they differ (as
benchmarks/README.md states), the skip of a missing peer, and the stability rule through the timing
loop with a fake clock. No real benchmark run."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
from scipy import ndimage

from tests.helpers.benchmarks import import_benchmark

bench = import_benchmark("bench_metrics")


def cube_pair(shift: int = 2) -> tuple[np.ndarray, np.ndarray]:
    reference = np.zeros((16, 16, 16), bool)
    reference[4:11, 4:12, 3:11] = True
    return reference, np.roll(reference, shift, axis=0)


def peer(name: str):
    module = {"surface-distance": "surface_distance", "MONAI": "monai", "MedPy": "medpy"}[name]
    pytest.importorskip(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # surface-distance's and MONAI's deprecation warnings
        return next(p for p in bench.installed_peers()[0] if p.name == name)


def compute(peer_, reference, prediction, spacing):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peer_.compute(reference, prediction, spacing)


def test_surface_distance_gives_our_values_on_the_quick_pairs():
    deepmind = peer("surface-distance")
    for _, reference, prediction, spacing in bench.pairs(bench.QUICK_SHAPE)[1:4]:
        assert reference.any() and prediction.any()
        differences = bench.value_differences(bench.ours(reference, prediction, spacing),
                                              compute(deepmind, reference, prediction, spacing))
        assert set(differences) == {"hd95", "assd", "nsd"} and max(differences.values()) <= bench.SAME_VALUES_TOLERANCE


@pytest.mark.parametrize("name", ["MONAI", "MedPy"])
def test_peers_handle_spacing_and_identical_masks(name):
    peer_ = peer(name)
    reference, prediction = cube_pair()
    unit, double = (compute(peer_, reference, prediction, s) for s in ((1.0, 1.0, 1.0), (2.0, 2.0, 2.0)))
    assert unit["hd95"] > 0 and unit["assd"] > 0
    assert double["hd95"] == pytest.approx(2 * unit["hd95"]) and double["assd"] == pytest.approx(2 * unit["assd"])
    # a shift along the thick axis costs more in mm than along a thin one: the spacing reaches the distances
    anisotropic = compute(peer_, reference, prediction, (3.0, 1.0, 1.0))
    assert anisotropic["hd95"] == pytest.approx(3 * unit["hd95"])
    same = compute(peer_, reference, reference, (1.0, 1.0, 1.0))
    assert same["hd95"] == 0 and same["assd"] == 0 and same.get("nsd", 1.0) == 1.0


def test_monai_subvoxel_nsd_is_ours_while_its_voxel_surface_distances_differ():
    monai = peer("MONAI")
    reference, shifted = cube_pair()
    for prediction in (shifted, ndimage.binary_erosion(reference)):
        for spacing in ((1.0, 1.0, 1.0), (2.5, 0.8, 0.8)):
            mine, theirs = bench.ours(reference, prediction, spacing), compute(monai, reference, prediction, spacing)
            assert theirs["nsd"] == pytest.approx(mine["nsd"], abs=1e-6)  # same surfels and areas, float32
    # The organ and its erosion: MONAI's voxel-centre surfaces lie 1 voxel apart (ASSD ~1 mm); our
    # surfels at the corners, weighted by area, are closer on the curved faces (README: +73 % at 128^3)
    _, reference, prediction, spacing = bench.pairs(bench.QUICK_SHAPE)[0]
    mine, theirs = bench.ours(reference, prediction, spacing), compute(monai, reference, prediction, spacing)
    assert theirs["assd"] == pytest.approx(1.0, abs=0.05) and theirs["assd"] > 1.5 * mine["assd"]


def test_medpy_pools_both_directions_so_its_hd95_is_at_most_monais():
    monai, medpy = peer("MONAI"), peer("MedPy")
    for _, reference, prediction, spacing in bench.pairs(bench.QUICK_SHAPE):
        theirs = compute(medpy, reference, prediction, spacing)
        assert set(theirs) == {"hd95", "assd"}  # MedPy has no NSD
        assert theirs["hd95"] <= compute(monai, reference, prediction, spacing)["hd95"] + 1e-5


def test_value_differences_cover_only_the_peers_metrics():
    ours = {"hd95": 2.0, "assd": 1.0, "nsd": 0.9}
    assert bench.value_differences(ours, {"hd95": 1.5, "assd": 1.25}) == {"hd95": 0.5, "assd": 0.25}


def test_a_missing_peer_is_skipped_with_a_message(monkeypatch):
    real = importlib.util.find_spec
    # every peer but surface-distance reads as missing, whatever this machine has installed (CI has no bench extra)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: real(name, *a) if name == "surface_distance" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peers, skipped = bench.installed_peers()
    assert [p.name for p in peers] == ["surface-distance"]
    assert skipped == [f"{name} not installed (`pip install {package}`, or `pip install -e '.[bench]'`): skipped"
                       for name, package in (("MONAI", "monai"), ("MedPy", "medpy"))]


class FakeClock:
    """Time advances only when a fake implementation runs, by the seconds it is given."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def implementation(self, seconds, values):
        sequence = iter(seconds)

        def compute(reference, prediction, spacing):
            self.now += next(sequence)
            return values
        return compute


def test_timing_loop_repeats_until_stable_and_the_figures_judge_the_median(monkeypatch):
    clock = FakeClock()
    ours_values = {"hd95": 1.0, "assd": 0.5, "nsd": 0.9}
    # Per pair: a warm-up call, then one timed call per measurement (repeats=1).
    monkeypatch.setattr(bench, "ours", clock.implementation([0.0] + [1.0] * 20, ours_values))
    slow = bench.Peer("MONAI", "monai", "monai", clock.implementation([0.0, 4.0, 2.0, 3.0, 3.0, 3.0] + [2.0, 5.0] * 4,
                                                                    {"hd95": 1.5, "assd": 0.75, "nsd": 0.9}),
                      bench.METRICS)
    mask = np.ones((2, 2, 2), bool)
    pair_list = [("settles", mask, mask, (1.0, 1.0, 1.0)), ("never settles", mask, mask, (1.0, 1.0, 1.0))]
    first, second = bench.run_pairs(pair_list, [slow], repeats=1, clock=clock)
    assert (first.timing.rounds, first.timing.stable, first.timing.ratios) == (5, True, {"MONAI": 3.0})
    assert (second.timing.rounds, second.timing.stable) == (7, False)
    assert first.values["MONAI"]["hd95"] - first.values["ours"]["hd95"] == 0.5
    figures = bench.headline_figures([first], [slow])
    speed, *values = figures
    assert speed.ratio == 3.0 and speed.met is True and speed.rounds == 5 and speed.spread == 0.0
    assert [(f.ours, f.reference, f.met) for f in values] == [(1.0, 1.5, None), (0.5, 0.75, None), (0.9, 0.9, None)]
    unjudged = bench.headline_figures([first, second], [slow])[0]
    assert unjudged.met is None and unjudged.stable is False and unjudged.rounds == 7  # "never settles" is the slowest
    text = bench.markdown([first, second], [slow], ["MedPy not installed (...): skipped"], repeats=1, quick=True)
    assert "- MedPy not installed (...): skipped" in text and "| 0% (5) |" in text and "(7), unstable |" in text
    assert "hd95 +0.5 (+50%)" in text

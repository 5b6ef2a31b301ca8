"""The architectures benchmark's stability wiring (benchmarks/bench_architectures.py): per setting and
family, a measurement is the median of interleaved rounds of every network, repeated until each
variant's ratio to nnU-Net's network settles; the figures judge the goal on the median only when stable.
Fake networks and fake iteration times: nothing is trained."""

from __future__ import annotations

import pytest
from torch import nn

from tests.helpers.benchmarks import import_benchmark

bench = import_benchmark("bench_architectures")


def fake_iterations(seconds: dict[str, list[float]], nets: dict):
    """one_iteration's stand-in: each network's next time (the first call of each is the warm-up)."""
    sequences = {variant: iter(values) for variant, values in seconds.items()}

    def iteration(net, optimizer, x, device):
        return next(sequences[nets[id(net)]])
    return iteration


def test_ratios_repeat_until_stable_and_the_figures_judge_their_median(monkeypatch):
    monkeypatch.setattr(bench, "SETTINGS", {"2D 4^2": ((4, 4), 1)})
    monkeypatch.setattr(bench, "FAMILIES", {"PlainConvUNet": bench.FAMILIES["PlainConvUNet"]})
    nets = {}

    def build(family, variant, patch, device):
        net = nn.Linear(1, 1)
        nets[id(net)] = variant
        return net
    monkeypatch.setattr(bench, "build", build)
    # warm-up, then one round per measurement: No-Skip settles at 0.9x after 5, attention never (cap 7)
    seconds = {"nnU-Net": [9.0] + [1.0] * 7,
               "No-Skip": [9.0, 2.0, 0.5, 0.9, 0.9, 0.92, 0.9, 0.9],
               "Attention-gated": [9.0] + [1.0, 2.0] * 4}
    rows = bench.run(1, "cpu", iteration=fake_iterations(seconds, nets), max_rounds=7)
    timing = rows[0]["timing"]
    assert timing.rounds == 7 and not timing.stable  # every ratio of the setting must settle
    by_variant = {r["variant"]: r for r in rows}
    assert by_variant["No-Skip"]["ratio"] == pytest.approx(0.9) and by_variant["nnU-Net"]["ratio"] == 1.0
    figures = bench.headline_figures(rows)
    assert [f.met for f in figures] == [None, None] and all(f.rounds == 7 and f.stable is False for f in figures)
    assert "| 100% (7), unstable |" in bench.to_markdown(rows, 1, bench.torch.device("cpu"))

    nets.clear()
    seconds = {"nnU-Net": [9.0] + [1.0] * 3, "No-Skip": [9.0, 0.9, 0.95, 0.92], "Attention-gated": [9.0, 1.4, 1.4, 1.4]}
    rows = bench.run(1, "cpu", iteration=fake_iterations(seconds, nets))
    no_skip, attention = bench.headline_figures(rows)
    assert (no_skip.rounds, no_skip.stable, no_skip.met, no_skip.ratio) == (3, True, True, pytest.approx(0.92))
    assert attention.met is False and attention.ratio == pytest.approx(1.4)  # above 1.3, judged: stable

"""The runner benchmark's stability wiring (benchmarks/bench_runner.py): a measurement is one naive loop
(K - 1 ``corrupt`` calls, K ``nnUNetv2_predict`` calls) then one ``run``, each into empty folders,
repeated until the last speed-ups settle; the predictions are compared once; the figures record the
spread and the number of measurements and judge the goal on the median only when stable. Fake commands
and a fake clock: nothing is run."""

from __future__ import annotations

import pytest

from tests.helpers.benchmarks import import_benchmark

bench = import_benchmark("bench_runner")

CORRUPT_SECONDS, PREDICT_SECONDS = 2.0, 10.0  # per call: naive = 7 x 2 + 8 x 10 = 94 s
NAIVE_SECONDS = 7 * CORRUPT_SECONDS + 8 * PREDICT_SECONDS


class FakeWorkflows:
    """Stands in for ``sh``: every call advances the clock by its command's seconds; ``run`` takes the next
    of ``run_seconds`` and prints run's last line (loop = 80 % of the process, predictor 96 % of the loop)."""

    def __init__(self, run_seconds, runs):
        self.now = 0.0
        self.run_seconds = iter(run_seconds)
        self.runs = runs
        self.calls: list[str] = []
        self.leftovers: list[bool] = []  # at each run call: were the previous measurement's outputs gone?

    def clock(self) -> float:
        return self.now

    def __call__(self, args, env):
        name = " ".join(str(a) for a in args[:2]).split("/")[-1]
        self.calls.append(name)
        if name.startswith("nnunet-robust run"):
            self.leftovers.append((self.runs / "run" / "stale").exists())
            (self.runs / "run").mkdir(parents=True, exist_ok=True)
            (self.runs / "run" / "stale").touch()  # what a later measurement must not find
            wall = next(self.run_seconds)
            self.now += wall
            loop = 0.8 * wall
            return wall, (f"64 item(s) predicted, 0 already done, of 64 in this part (8 cases x 8 conditions in all); "
                          f"{loop:.2f} s, {0.96 * loop:.2f} s in nnU-Net's predictor, {0.02 * loop:.2f} s measuring "
                          "what the model saw\n")
        seconds = CORRUPT_SECONDS if name.startswith("nnunet-robust corrupt") else PREDICT_SECONDS
        self.now += seconds
        return seconds, ""


def measure(tmp_path, run_seconds, **stability):
    fake = FakeWorkflows(run_seconds, tmp_path / "runs")
    comparisons = []
    timing, compared = bench.measure_until_stable({}, tmp_path / "raw", tmp_path / "model", tmp_path / "runs", "cpu",
                                                  command=fake, clock=fake.clock,
                                                  compare=lambda naive, run: comparisons.append((naive, run)) or 64,
                                                  **stability)
    return timing, compared, fake, comparisons


def test_measurements_repeat_until_the_speedups_settle_and_the_predictions_are_compared_once(tmp_path):
    # speed-ups 94/9.4 = 10, 94/18.8 = 5, 94/11.75 = 8, 94/11.75 = 8, 94/11.5 = 8.17: settled after 5
    timing, compared, fake, comparisons = measure(tmp_path, [9.4, 18.8, 11.75, 11.75, 11.5, 99.0])
    assert timing.rounds == 5 and timing.stable and compared == 64
    assert timing.ratios["speedup"] == pytest.approx(8.0) and timing.spread == pytest.approx(94 / 11.5 / 8 - 1)
    assert comparisons == [(tmp_path / "runs" / "naive" / "predictions", tmp_path / "runs" / "run")]
    # every measurement: the 7 corrupt calls, the 8 predict calls, then run, in that order
    one = ["nnunet-robust corrupt"] * 7 + ["nnUNetv2_predict -i"] * 8 + ["nnunet-robust run"]
    assert fake.calls == one * 5
    assert fake.leftovers == [False] * 5  # run would skip the items it finds done: every measurement starts empty
    t = timing.times
    assert (t["naive"], t["naive_corrupt"], t["naive_predict"]) == (NAIVE_SECONDS, 14.0, 80.0)
    assert t["run"] == 11.75 and t["run_loop"] == pytest.approx(9.4)  # medians of the last three
    assert t["outside_share"] == pytest.approx(0.04, abs=1e-3) and t["input_space_share"] == pytest.approx(0.02, abs=1e-3)


def test_figures_record_the_spread_and_judge_the_median_only_when_stable(tmp_path):
    stable, compared, _, _ = measure(tmp_path, [31.0, 31.5, 32.0])  # ~3x, within 10 %
    speed, outside, input_space, identical = bench.headline_figures(stable, compared, cases=8)
    assert (speed.rounds, speed.stable, speed.ours, speed.reference) == (3, True, 31.5, NAIVE_SECONDS)
    assert speed.ratio == pytest.approx(NAIVE_SECONDS / 31.5) and speed.met is False  # 2.98x < 3
    assert speed.spread == pytest.approx(32.0 / 31.0 - 1)
    assert outside.met is True and input_space.met is True and identical.met is True and identical.reference == 64

    unstable, compared, _, _ = measure(tmp_path, [10.0, 20.0] * 3, max_rounds=5)  # 9.4x and 4.7x alternate
    speed = bench.headline_figures(unstable, compared, cases=8)[0]
    assert (unstable.rounds, speed.stable, speed.met) == (5, False, None)  # capped at 5, goal not judged
    assert speed.ratio == pytest.approx(NAIVE_SECONDS / 10.0)  # still the median of the last three (10, 20, 10)
    text = bench.markdown(unstable, compared, cases=8, size=48, device_name="CPU")
    assert "| spread of the speed-ups (max / min - 1) | 100% (5 measurements, unstable: goal not judged) |" in text
    assert "| naive: the K - 1 `nnunet-robust corrupt` calls (s) | 14.0 |" in text


def test_one_measurement_with_a_window_of_one(tmp_path):
    timing, compared, fake, _ = measure(tmp_path, [20.0, 5.0], window=1, max_rounds=1)
    assert (timing.rounds, timing.stable, timing.spread) == (1, True, 0.0) and len(fake.calls) == 16
    assert "| 0% (1 measurement) |" in bench.markdown(timing, compared, 8, 48, "CPU", window=1)


def test_the_benchmark_runs_at_most_five_measurements_by_default():
    # ~4 min each on 2 CPU cores: 12 to 20 minutes, as benchmarks/README.md says
    assert bench.MAX_ROUNDS == 5 and bench.STABLE_WINDOW == 3

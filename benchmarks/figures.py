"""Headline figures of a benchmark, written as JSON next to its Markdown results so that
``run_all.py`` can collect them into ``results/SUMMARY.md`` without parsing Markdown.

Each benchmark calls ``write_figures(markdown_path, benchmark, figures, device)`` once, after writing
its Markdown; the JSON lands at ``markdown_path.with_suffix(".json")``.

Timed comparisons go through ``repeat_until_stable``: one measurement (e.g. the median of a few
interleaved runs of ours and the reference) is repeated until the ratios of the last
``STABLE_WINDOW`` measurements lie within ``STABLE_SPREAD`` of each other, at most ``MAX_ROUNDS``
times, and goals are judged on the median of those last ratios. A figure still unstable after the cap
is written with its goal unjudged, as on a busy machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Callable, Mapping

# Another process using more than this many cores on average makes a run "busy": its timings are
# reported but no goal is judged (on a 2-core machine, half a core of other work moved ratios 0.5x -> 1.8x).
BUSY_OTHER_CORES = 0.5


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent since boot (user + nice + system + irq + softirq + steal)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:  # not Linux
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class LoadMonitor:
    """How many cores *other* processes used while a benchmark ran: the machine's busy CPU time minus
    the benchmark's own (itself and its children), over the wall time. Unlike the load average, this
    does not count the benchmark's own work as load."""

    def __init__(self) -> None:
        self.start_wall, self.start_busy, self.start_own = time.monotonic(), _busy_cpu_seconds(), _own_cpu_seconds()

    def other_cores(self) -> float | None:
        busy = _busy_cpu_seconds()
        if busy is None or self.start_busy is None:
            return None
        wall = max(time.monotonic() - self.start_wall, 1e-9)
        return max(0.0, (busy - self.start_busy) - (_own_cpu_seconds() - self.start_own)) / wall


_MONITOR = LoadMonitor()  # started when a benchmark imports this module


def machine_is_busy() -> bool:
    """Whether other processes used more than ``BUSY_OTHER_CORES`` cores on average since this
    benchmark started (unknown off Linux: then not busy, and ``load_note`` says so)."""
    other = _MONITOR.other_cores()
    return other is not None and other > BUSY_OTHER_CORES


def load_note() -> str:
    other = _MONITOR.other_cores()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    measured = ("other processes' CPU use not measurable here" if other is None else
                f"other processes used {other:.2f} cores on average during the run")
    return f"{measured} (load average at the end {load}; busy above {BUSY_OTHER_CORES:g} cores: goals not judged)"


# Ratios of one benchmark moved by more than their goals' margins between runs on the same machine;
# a figure is judged only once the last STABLE_WINDOW measurements agree within STABLE_SPREAD
# (max / min - 1), repeating the measurement up to MAX_ROUNDS times.
STABLE_WINDOW, STABLE_SPREAD, MAX_ROUNDS = 3, 0.10, 7


def spread(values: list[float]) -> float:
    """max / min - 1 (infinite when a value is not positive: no ratio of such values is stable)."""
    low = min(values)
    return max(values) / low - 1 if low > 0 else float("inf")


@dataclasses.dataclass(frozen=True)
class Stable:
    """Outcome of ``repeat_until_stable``: medians over the last ``STABLE_WINDOW`` measurements."""

    times: dict[str, float]  # median of each measured value
    ratios: dict[str, float]  # median of each ratio: what goals are judged on
    spread: float  # the largest spread of the last ratios, over the ratios
    rounds: int  # measurements taken
    stable: bool  # spread < max_spread; False: goals on these ratios are left unjudged

    def judge(self, met: bool) -> bool | None:
        return met if self.stable else None


def least_settled(stables: list[Stable]) -> Stable:
    """For a figure over several measurements (e.g. a geometric mean over cases): the largest spread,
    the most rounds, and stable only when every measurement is."""
    return Stable(times={}, ratios={}, spread=max(s.spread for s in stables), rounds=max(s.rounds for s in stables),
                  stable=all(s.stable for s in stables))


def repeat_until_stable(measure: Callable[[], Mapping[str, float]],
                        ratios: Callable[[Mapping[str, float]], Mapping[str, float]], *,
                        window: int = STABLE_WINDOW, max_spread: float = STABLE_SPREAD,
                        max_rounds: int = MAX_ROUNDS) -> Stable:
    """Call ``measure`` (named times of one interleaved measurement) until, for every ratio that
    ``ratios`` derives from it, the last ``window`` values have a spread below ``max_spread``; stop
    after ``max_rounds`` measurements either way."""
    if not 1 <= window <= max_rounds:
        raise ValueError(f"need 1 <= window <= max_rounds, got {window} and {max_rounds}")
    measured: list[Mapping[str, float]] = []
    derived: list[Mapping[str, float]] = []
    while True:
        measured.append(dict(measure()))
        derived.append(dict(ratios(measured[-1])))
        if len(measured) < window:
            continue
        last = derived[-window:]
        largest = max((spread([r[name] for r in last]) for name in last[-1]), default=0.0)
        if largest < max_spread or len(measured) >= max_rounds:
            break
    return Stable(times={name: statistics.median(m[name] for m in measured[-window:]) for name in measured[-1]},
                  ratios={name: statistics.median(r[name] for r in last) for name in last[-1]},
                  spread=largest, rounds=len(measured), stable=largest < max_spread)


def settled(stable: Stable) -> str:
    """How a timed figure settled, for a benchmark's Markdown: e.g. "4% (3 measurements)", and
    ", unstable: goal not judged" when the spread stayed above the limit."""
    return (f"{100 * stable.spread:.0f}% ({stable.rounds} measurement{'s' if stable.rounds != 1 else ''}"
            f"{'' if stable.stable else ', unstable: goal not judged'})")


def rule(window: int, max_rounds: int, what: str = "ratios") -> str:
    """The stability rule in a benchmark's Markdown, with the window and cap of its run."""
    if max_rounds == 1:
        return "taken once (a cap of one measurement: no repeat, as before the stability rule)"
    return (f"repeated until the last {window} {what} lie within {100 * STABLE_SPREAD:g} % (max / min - 1), at most "
            f"{max_rounds} times; the figures are the median of those {window} (still unstable: goal not judged)")


def window_for(max_rounds: int) -> int:
    """The window of a benchmark capped at ``max_rounds`` measurements: ``STABLE_WINDOW``, or all of them
    when fewer (``--max-rounds 1``: one measurement, as before the rule)."""
    return min(STABLE_WINDOW, max_rounds)


def max_rounds_option(value: str) -> int:
    """argparse type of ``--max-rounds``: at least one measurement."""
    rounds = int(value)
    if rounds < 1:
        raise argparse.ArgumentTypeError(f"need at least 1 measurement, got {rounds}")
    return rounds


@dataclasses.dataclass(frozen=True)
class Figure:
    """One headline number and its goal.

    ``ratio`` is expressed the way ``goal`` states it (ours / reference for "<=" goals on time,
    reference / ours for speed-ups), so ``met`` can be read off the row.
    """

    figure: str  # what is measured, with its unit
    ours: float | None
    reference: float | None
    ratio: float | None
    goal: str
    met: bool | None  # None: no goal for this figure (informational), or not judged (busy, unstable)
    # Of the measurements behind ``ratio`` (``repeat_until_stable``): the spread of the last ratios
    # (max / min - 1), how many measurements were taken, and whether the spread stayed under the
    # limit. None: a figure not measured that way (older results, counts, values).
    spread: float | None = None
    rounds: int | None = None
    stable: bool | None = None

    @classmethod
    def timed(cls, stable: Stable, **fields) -> "Figure":
        """A figure whose ratio comes from ``stable``: its goal is left unjudged when unstable."""
        fields["met"] = stable.judge(fields["met"]) if fields.get("met") is not None else None
        return cls(**fields, spread=stable.spread, rounds=stable.rounds, stable=stable.stable)


def write_figures(markdown_path: Path, benchmark: str, figures: list[Figure], device: str) -> Path:
    """Write the figures; on a busy machine every goal is left unjudged (``met`` None) and the payload
    says so, so that no summary calls a goal met from a disturbed run. So is every figure whose
    measurements did not settle (``stable`` False)."""
    path = markdown_path.with_suffix(".json")
    busy = machine_is_busy()
    figures = [dataclasses.replace(f, met=None) if busy or f.stable is False else f for f in figures]
    payload = {
        "benchmark": benchmark,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "markdown": markdown_path.name,
        "other_cores": _MONITOR.other_cores(),
        "load_average": list(os.getloadavg()),
        "busy": busy,
        "unstable": sum(f.stable is False for f in figures),
        "figures": [dataclasses.asdict(figure) for figure in figures],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def read_figures(json_path: Path) -> dict:
    payload = json.loads(json_path.read_text())
    payload.setdefault("busy", None)  # results written before the load was recorded
    payload.setdefault("unstable", None)  # results written before the stability rule
    payload["figures"] = [Figure(**figure) for figure in payload["figures"]]
    return payload

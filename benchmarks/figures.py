"""Headline figures of a benchmark, written as JSON next to its Markdown results so that
``run_all.py`` can collect them into ``results/SUMMARY.md`` without parsing Markdown.

Each benchmark calls ``write_figures(markdown_path, benchmark, figures, device)`` once, after writing
its Markdown; the JSON lands at ``markdown_path.with_suffix(".json")``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import resource
import time
from pathlib import Path

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
    met: bool | None  # None: no goal for this figure (informational)


def write_figures(markdown_path: Path, benchmark: str, figures: list[Figure], device: str) -> Path:
    """Write the figures; on a busy machine every goal is left unjudged (``met`` None) and the payload
    says so, so that no summary calls a goal met from a disturbed run."""
    path = markdown_path.with_suffix(".json")
    busy = machine_is_busy()
    if busy:
        figures = [dataclasses.replace(f, met=None) for f in figures]
    payload = {
        "benchmark": benchmark,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "markdown": markdown_path.name,
        "other_cores": _MONITOR.other_cores(),
        "load_average": list(os.getloadavg()),
        "busy": busy,
        "figures": [dataclasses.asdict(figure) for figure in figures],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def read_figures(json_path: Path) -> dict:
    payload = json.loads(json_path.read_text())
    payload.setdefault("busy", None)  # results written before the load was recorded
    payload["figures"] = [Figure(**figure) for figure in payload["figures"]]
    return payload

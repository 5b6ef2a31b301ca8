"""First contact: how long ``nnunet-robust --help`` and ``--version`` take, as a user types them.

Each is started as a fresh process (the console script, so interpreter start-up and our imports count)
``--repeat`` times; the median is reported with the load average, and a goal is called met only when
the machine was quiet (1-minute load below the number of cores).

    python benchmarks/bench_cli.py [--repeat 7]

Writes ``benchmarks/results/cli.md`` and ``cli.json``. Goal: <= 1 s each (issue: it took 5-9 s when
the parser imported nnU-Net's trainers, torch._dynamo and seaborn).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from figures import Figure, write_figures

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 1.0


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "cli.md")
    args = parser.parse_args()
    script = str(Path(sys.executable).parent / "nnunet-robust")
    timed([script, "--version"])  # warm the file cache once, as a user's second call would be
    load = os.getloadavg()[0]
    quiet = load < (os.cpu_count() or 1)
    results = {flag: statistics.median(timed([script, flag]) for _ in range(args.repeat))
               for flag in ("--help", "--version")}
    load = max(load, os.getloadavg()[0])
    quiet = quiet and load < (os.cpu_count() or 1)
    rows = [f"| `nnunet-robust {flag}` | {seconds:.2f} s | <= {GOAL_SECONDS:g} s |" for flag, seconds in results.items()]
    text = "\n".join(["# CLI start-up", "",
                      f"Median of {args.repeat} fresh processes each; load average {load:.2f} on {os.cpu_count()} "
                      f"cores ({'quiet' if quiet else 'busy: goals not judged'}).", "",
                      "| command | median | goal |", "|---|---|---|", *rows, ""])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    write_figures(args.output, "cli", [
        Figure(figure=f"nnunet-robust {flag} (s, median)", ours=seconds, reference=None, ratio=None,
               goal=f"<= {GOAL_SECONDS:g} s", met=(seconds <= GOAL_SECONDS) if quiet else None)
        for flag, seconds in results.items()], device="CPU")
    print(text)


if __name__ == "__main__":
    main()

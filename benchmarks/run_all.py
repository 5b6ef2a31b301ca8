"""Run every benchmark of the project and collect their headline figures into one table.

    .venv/bin/python benchmarks/run_all.py [--only NAME ...] [--device cpu|cuda]

Each benchmark runs as its own subprocess (a crash in one does not stop the others) and writes
``benchmarks/results/<name>.md`` plus its headline figures as ``<name>.json``; this script then writes
``benchmarks/results/SUMMARY.md`` from every ``<name>.json`` present, so figures of benchmarks left
out with ``--only`` are kept from their last run (the table says when each was generated).
``--device`` goes to the benchmarks that have a device; the metrics benchmark is CPU-only (numpy).
The same table is copied into ``benchmarks/README.md`` between its summary markers.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import torch
from figures import MAX_ROUNDS, STABLE_SPREAD, Figure, read_figures

BENCHMARKS_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
README = BENCHMARKS_DIR / "README.md"
# The README shows the latest summary between these markers; run_all.py rewrites what is between them.
README_START, README_END = "<!-- summary:start (written by run_all.py) -->", "<!-- summary:end -->"


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    measures: str
    takes_device: bool
    cuda_only: bool = False  # run only with --device cuda; its last figures stay in the summary otherwise


# In the order they run: the quick ones first, so their results exist early.
BENCHMARKS = {b.name: b for b in (
    Benchmark("cli", "bench_cli.py", "`nnunet-robust --help`/`--version` start-up time", takes_device=False),
    Benchmark("corruptions", "bench_corruptions.py", "corruption CPU time vs TorchIO", takes_device=True),
    Benchmark("metrics", "bench_metrics.py", "HD95/ASSD/NSD time and values vs surface-distance, MONAI, MedPy",
              takes_device=False),
    Benchmark("architectures", "bench_architectures.py", "training iteration time vs nnU-Net's U-Nets",
              takes_device=True),
    Benchmark("runner", "bench_runner.py", "`nnunet-robust run` vs a naive nnUNetv2_predict loop", takes_device=True),
    Benchmark("ct", "bench_ct.py", "CT family time per 512x512x100 volume vs skimage radon/iradon", takes_device=False),
    Benchmark("adversarial", "bench_adversarial.py", "PGD-10 through the sliding window vs a clean prediction",
              takes_device=False),
    Benchmark("robust_training", "bench_robust_training.py",
              "training iteration time with corruption augmentation vs nnUNetTrainer", takes_device=False),
    Benchmark("gpu", "gpu_check.py", "the GPU checks: corruptions on the GPU vs TorchIO, run on a 3D model",
              takes_device=True, cuda_only=True),
    Benchmark("scale", "bench_scale.py", "eval on a 512x512x300 case vs nnU-Net; eval and run against size",
              takes_device=False),
)}


@dataclasses.dataclass
class Outcome:
    benchmark: Benchmark
    return_code: int
    seconds: float


def run_until_quiet(benchmark: Benchmark, device: str, retries: int, wait_seconds: float = 60.0) -> Outcome:
    """Run; while the run was busy (other processes used the cores, so no goal was judged), wait and
    run again, at most ``retries`` more times."""
    outcome = run_benchmark(benchmark, device)
    json_path = RESULTS_DIR / f"{benchmark.name}.json"
    for attempt in range(retries):
        if outcome.return_code or not json_path.is_file() or not read_figures(json_path)["busy"]:
            break
        print(f"=== {benchmark.name}: the machine was busy; waiting {wait_seconds:.0f} s and repeating "
              f"({attempt + 1}/{retries})", flush=True)
        time.sleep(wait_seconds)
        outcome = run_benchmark(benchmark, device)
    return outcome


def run_benchmark(benchmark: Benchmark, device: str) -> Outcome:
    output = RESULTS_DIR / f"{benchmark.name}.md"
    # A stale JSON would put the previous run's figures in the summary if this run fails.
    output.with_suffix(".json").unlink(missing_ok=True)
    command = [sys.executable, str(BENCHMARKS_DIR / benchmark.script), "--output", str(output)]
    if benchmark.takes_device:
        command += ["--device", device]
    print(f"\n=== {benchmark.name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    return_code = subprocess.run(command, cwd=BENCHMARKS_DIR.parent).returncode
    seconds = time.perf_counter() - start
    print(f"=== {benchmark.name}: exit code {return_code} after {seconds:.0f} s", flush=True)
    return Outcome(benchmark, return_code, seconds)


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 100 or (float(value).is_integer() and magnitude < 1e5):  # counts read as integers
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 1e-3 or value == 0:
        return f"{value:.3g}"
    return f"{value:.1e}"


def table_row(figure: Figure, benchmark: str, busy: bool = False) -> str:
    judged = "informational" not in figure.goal
    met = ("busy: not judged" if busy and judged else "unstable: not judged" if figure.stable is False and judged
           else {True: "yes", False: "**no**", None: "-"}[figure.met])
    ratio = f"{figure.ratio:.2f}" if figure.ratio is not None else "-"
    settled = f"{100 * figure.spread:.0f}% ({figure.rounds})" if figure.spread is not None else "-"
    cells = [f"{benchmark}: {figure.figure}", format_number(figure.ours), format_number(figure.reference), ratio,
             settled, figure.goal, met]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def summary(outcomes: dict[str, Outcome], link_prefix: str = "") -> str:
    """The summary in Markdown; ``link_prefix`` is the results folder relative to where the text is put."""
    rows, sources = [], []
    for name, benchmark in BENCHMARKS.items():
        json_path = RESULTS_DIR / f"{name}.json"
        outcome = outcomes.get(name)
        status = ("not run this time" if outcome is None else
                  f"ran in {outcome.seconds:.0f} s" if outcome.return_code == 0 else
                  f"**failed** (exit code {outcome.return_code}; see its output)")
        if not json_path.is_file():
            met = "-" if outcome is None else "**no**"
            rows.append(f"| {name}: no figures ({status}) | - | - | - | - | - | {met} |")
            sources.append(f"- `{name}` ({benchmark.measures}): no figures; {status}.")
            continue
        payload = read_figures(json_path)
        rows += [table_row(figure, name, bool(payload["busy"])) for figure in payload["figures"]]
        load = ("load not recorded" if payload["busy"] is None else
                f"other processes used {payload['other_cores']:.2f} cores" if payload.get("other_cores") is not None
                else "load not measurable")
        unstable = f"; {payload['unstable']} figures unstable, not judged" if payload["unstable"] else ""
        sources.append(f"- `{name}` ({benchmark.measures}): [{payload['markdown']}]({link_prefix}{payload['markdown']}), "
                       f"generated {payload['generated']} on {payload['device']} ({load}"
                       f"{': busy, goals not judged' if payload['busy'] else ''}{unstable}); {status}.")
    return "\n".join([
        "Generated by `.venv/bin/python benchmarks/run_all.py`: the headline figures of every benchmark, "
        "read from `benchmarks/results/<name>.json`. Times are medians; \"ratio\" is expressed the way the "
        "goal states it; \"spread (runs)\" is max / min - 1 of the last ratios that the ratio is the median of, "
        f"and how many measurements it took to bring it under {100 * STABLE_SPREAD:g} % (at most {MAX_ROUNDS}; "
        "still above: not judged). "
        "The per-benchmark files have the full tables, the conditions and the explanations.",
        "",
        "| figure | ours | reference | ratio | spread (runs) | goal | met? |",
        "|---|---:|---:|---:|---:|---|---|",
        *rows,
        "",
        "Sources:",
        "",
        *sources,
        "",
    ])


def update_readme(section: str) -> None:
    text = README.read_text() if README.is_file() else ""
    if README_START not in text or README_END not in text:
        print(f"note: {README} has no summary markers; not updated", flush=True)
        return
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    README.write_text(f"{head}{README_START}\n{section}\n{README_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only these benchmarks ({', '.join(BENCHMARKS)}); the others keep their last figures")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu",
                        help="passed to the benchmarks that take one (default: cuda when available)")
    parser.add_argument("--retries", type=int, default=2,
                        help="re-runs of a benchmark whose run was busy (other processes on the cores), default 2")
    args = parser.parse_args()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    selected = [name for name in (args.only or list(BENCHMARKS))
                if args.device == "cuda" or not BENCHMARKS[name].cuda_only]
    outcomes = {name: run_until_quiet(BENCHMARKS[name], args.device, args.retries)
                for name in BENCHMARKS if name in selected}
    text = "# Benchmark summary\n\n" + summary(outcomes)
    (RESULTS_DIR / "SUMMARY.md").write_text(text)
    update_readme(summary(outcomes, link_prefix="results/"))
    print("\n" + text)
    failed = [name for name, outcome in outcomes.items() if outcome.return_code != 0]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

"""``run --devices 0,1,2,3``: one ``run`` worker process per device on one node, over the shard scheme.

Each worker is ``python -m nnunet_robustness.runner.worker`` given its :class:`~.worker.RunJob` (the job
``run`` resolved, with the worker's shard and device) as JSON on its standard input: it calls the
runner's Python entry point, not the command line again.

Worker ``i`` of ``n`` devices runs shard ``part_id * n + i`` of ``num_parts * n`` (so ``--devices`` also
composes with a SLURM array that gives each node ``--num-parts/--part-id``). The shards write into the
same folder and the same ``run.json``, so the result is merged by construction, exactly as with
separate ``--part-id`` processes. GPU workers see one card each (``CUDA_VISIBLE_DEVICES``), because
nnU-Net's ``-device cuda`` means the first visible card; a ``cpu`` entry starts a CPU worker (a way to
check a multi-device command on a machine without GPUs, or to use idle cores next to a GPU).

Each worker's output goes to ``<out>/.worker<i>.log``; the parent shows one progress bar over the
folder's finished items and, if a worker fails, names its device, its last line and its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.records.run_manifest import RunManifest
from nnunet_robustness.runner.worker import RunJob

POLL_SECONDS = 1.0


def parse_devices(text: str) -> list[str]:
    """``"0,1"`` -> ``["0", "1"]`` (CUDA indices); ``cpu`` entries allowed; GPU indices at most once."""
    devices = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in devices if not (d.isdigit() or d == "cpu")]
    if not devices or bad:
        raise UserInputError(f"--devices {text!r}: give CUDA device indices and/or cpu, separated by commas "
                             "(e.g. 0,1,2,3)")
    gpus = [d for d in devices if d != "cpu"]
    if len(set(gpus)) != len(gpus):
        raise UserInputError(f"--devices {text!r}: a GPU is named twice (one worker per card)")
    if gpus:
        import torch

        available = torch.cuda.device_count()
        missing = [d for d in gpus if int(d) >= available]
        if missing:
            raise UserInputError(f"--devices {text!r}: torch sees {available} CUDA device(s), so there is no "
                                 f"device {missing[0]}")
    return devices


def worker_jobs(job: RunJob, devices: Sequence[str]) -> list[tuple[RunJob, dict[str, str]]]:
    """(job, environment) of each worker: worker ``i`` of ``n`` takes shard ``part_id * n + i`` of
    ``num_parts * n`` on its device, without a progress bar of its own (the parent shows one)."""
    n = len(devices)
    jobs = []
    for i, device in enumerate(devices):
        env = dict(os.environ)
        if device != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = device
        settings = replace(job.settings, device="cpu" if device == "cpu" else "cuda")
        jobs.append((replace(job, settings=settings, num_parts=job.num_parts * n, part_id=job.part_id * n + i,
                             progress=False), env))
    return jobs


def _start(job: RunJob, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``python -m nnunet_robustness.runner.worker`` with the job as JSON on its standard input."""
    with open(log, "w") as stream:
        process = subprocess.Popen([sys.executable, "-m", "nnunet_robustness.runner.worker"], env=env,
                                   stdin=subprocess.PIPE, stdout=stream, stderr=subprocess.STDOUT, text=True)
    process.stdin.write(json.dumps(job.to_json()))
    process.stdin.close()
    return process


def _finished_items(output: Path) -> tuple[int, int] | None:
    """(finished, total) items of the folder's run, from its run.json; None before a worker wrote it."""
    try:
        manifest = RunManifest.read_if_present(output)
    except UserInputError:  # being replaced this instant
        return None
    if manifest is None:
        return None
    done = sum((output / c.name / f"{case}{manifest.file_ending}").is_file()
               for c in manifest.conditions for case in manifest.cases)
    return done, len(manifest.conditions) * len(manifest.cases)


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.is_file() else []
    return lines[-1].strip() if lines else "no output"


def run_on_devices(job: RunJob, devices: Sequence[str]) -> int:
    """Start one worker per device, each on its share of ``job``, wait for all, and report. Returns the exit
    status."""
    output, progress = Path(job.output), job.progress
    output.mkdir(parents=True, exist_ok=True)
    workers = []
    for i, (worker_job, env) in enumerate(worker_jobs(job, devices)):
        log = output / f".worker{i}.log"
        workers.append((devices[i], log, _start(worker_job, env, log)))
    print(f"{len(workers)} worker(s) on device(s) {', '.join(devices)}; logs: {output}/.worker<i>.log", flush=True)
    bar = tqdm(desc="run (all devices)", unit="item", disable=not progress)

    def show_progress() -> None:
        counts = _finished_items(output)
        if counts:
            bar.total, bar.n = counts[1], counts[0]
            bar.refresh()

    try:
        while any(process.poll() is None for _, _, process in workers):
            time.sleep(POLL_SECONDS)
            show_progress()
    except KeyboardInterrupt:
        for _, _, process in workers:  # each worker finishes what it is writing (atomic writes) and stops
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for _, _, process in workers:
            process.wait()
        raise
    finally:
        show_progress()
        bar.close()
    failed = [(device, log, process.returncode) for device, log, process in workers if process.returncode]
    for device, log, code in failed:
        print(f"nnunet-robust: error: the worker on device {device} failed (exit {code}): {_last_line(log)} "
              f"(log: {log}); re-run the same command to finish its items", file=sys.stderr)
    for device, log, process in workers:
        if not process.returncode:
            summary = [line for line in log.read_text(errors="replace").splitlines() if "item(s) predicted" in line]
            print(f"device {device}: {summary[-1] if summary else _last_line(log)}")
    if not failed:
        print(f"predictions: {output}/<condition>/, manifest: {output}/run.json")
    return 2 if failed else 0

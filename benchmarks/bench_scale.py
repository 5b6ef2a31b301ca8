"""How ``eval`` and ``run`` scale: a CT-sized case, time against voxels, time against work items.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--output benchmarks/results/scale.md] [--quick] [--max-rounds 7]``

1. **eval on a 512x512x300 case** (two labels: a liver-sized organ and a small lesion, prediction shifted
   and eroded, spacing 0.8 x 0.8 x 1.5 mm): our per-case evaluation (reading both files, Dice, HD95,
   ASSD, NSD per label: what ``eval`` does for one case) against nnU-Net's ``compute_metrics`` (reading
   both files, Dice/IoU/counts per label). Each side runs in a fresh process, which reports its time
   and peak resident memory. Goal: ours <= 2x nnU-Net's time (nnU-Net dropped HD95 from its evaluator
   because it cost 75 % of the time).
2. **eval time against voxels**: the same scene at 128x128x75, 256x256x150 and 512x512x300 (x1, x8,
   x64 voxels); the slope of log(time) against log(voxels) says whether a super-linear term exists
   (goal: slope <= 1.1).
3. **run time against work items**: ``nnunet-robust run`` with the benchmark model of
   ``bench_runner.py`` (trained once, cached) on 1x, 4x and 16x (case x condition) items; the loop
   time per item must stay flat (goal: slope of log(loop time) against log(items) <= 1.1).

The timed goals follow the stability rule (``figures.repeat_until_stable``). An eval measurement is, for
every size, one fresh process of ours then one of nnU-Net's (each the fastest of ``--repeats`` timed
evaluations after a warm-up); it is repeated until the last 3 values of ours / nnU-Net at the largest
size and of the eval slope lie within 10 % of each other, at most ``--max-rounds`` times (about 45 s
per measurement on 2 CPU cores). A run measurement is one ``run`` per number of items, repeated until
the last 3 slopes settle the same way (about 40 s each). Goals are judged on the median of those
values (still unstable: not judged); the peak memories are those of the first measurement's
processes. ``--quick`` takes one measurement (``--max-rounds 1``) unless ``--max-rounds`` says more.

Every result states the machine's load average; on a busy machine (other processes using more than
half a core) the goals are not judged (``figures.machine_is_busy``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
from figures import (
    MAX_ROUNDS,
    Figure,
    Stable,
    load_note,
    machine_is_busy,
    max_rounds_option,
    repeat_until_stable,
    rule,
    settled,
    window_for,
    write_figures,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CT_SHAPE = (300, 512, 512)  # (z, y, x) as SimpleITK arrays: 512 x 512 in-plane, 300 slices
SPACING_XYZ = (0.8, 0.8, 1.5)
EVAL_GOAL = 2.0
SLOPE_GOAL = 1.1

_CHILD_EVAL = r"""
import json, resource, sys, time
from pathlib import Path
ours, ref, pred, dataset_json = sys.argv[1] == "ours", sys.argv[2], sys.argv[3], sys.argv[4]
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
if ours:
    from nnunet_robustness.metrics.inputs import load_dataset_json
    from nnunet_robustness.metrics.per_case import _CaseJob, _evaluate_case
    dataset = load_dataset_json(Path(dataset_json))
    job = _CaseJob("case", Path(ref), [("model", "clean", Path(pred))], SimpleITKIO, dataset, 1.0)
    evaluate = lambda: [r["dice"] for r in _evaluate_case(job)]
else:
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    evaluate = lambda: [compute_metrics(ref, pred, SimpleITKIO(), [1, 2])["metrics"][k]["Dice"] for k in (1, 2)]
dice = evaluate()  # warm-up: lazy imports and per-spacing tables are paid once per eval, not per case
seconds = []
for _ in range(int(sys.argv[5])):
    start = time.perf_counter(); evaluate(); seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": min(seconds), "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "dice": dice}))
"""


_CHILD_RATE = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
from scipy import ndimage
from nnunet_robustness.trust.calibrator import analyse_case
from nnunet_robustness.trust.rating_inputs import CaseArrays, load_dataset
sys.path.insert(0, sys.argv[3])
from bench_scale import scene
dataset_json, example = Path(sys.argv[1]), Path(sys.argv[2])
context = load_dataset(dataset_json, example)
reference, segmentation = scene(tuple(json.loads(sys.argv[4])))
# softmax-like probabilities: confident away from the predicted boundaries, uncertain near them
logits = np.stack([ndimage.gaussian_filter((segmentation == k).astype(np.float32), 2) * 8 for k in range(3)])
probabilities = np.exp(logits - logits.max(0)); probabilities /= probabilities.sum(0)
probabilities = probabilities.astype(np.float32); del logits
arrays = CaseArrays(probabilities, [], segmentation, [], reference, (1.5, 0.8, 0.8), {}, False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
analyse_case(context, arrays, 1.3, 3, {})
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "inputs_mib": (probabilities.nbytes + segmentation.nbytes + reference.nbytes) / 2**20,
                  "before_mib": before}))
"""


def rate_memory(reference: Path, dataset_json: Path, shape: tuple[int, int, int]) -> dict:
    """Peak memory of rate's per-case work (features, Dice, FNR curves, reliability; temperature
    scaling on) on one case with 3-channel float32 probabilities, in a fresh process."""
    result = subprocess.run([sys.executable, "-c", _CHILD_RATE, dataset_json, reference,
                             str(Path(__file__).parent), json.dumps(list(shape))],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if result.returncode:
        raise SystemExit(f"rate measurement failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def scene(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Reference and prediction label maps (0 background, 1 organ, 2 lesion), scaled with ``shape``."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    z, y, x = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]

    def ellipsoid(c, r):
        return ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1

    reference = np.zeros(shape, np.uint8)
    reference[ellipsoid((0.0, -0.1, 0.25), (0.45, 0.35, 0.4))] = 1
    reference[ellipsoid((0.1, -0.05, 0.3), (0.06, 0.05, 0.05))] = 2
    prediction = np.zeros(shape, np.uint8)
    prediction[ellipsoid((0.02, -0.08, 0.26), (0.43, 0.36, 0.39))] = 1
    prediction[ellipsoid((0.11, -0.04, 0.31), (0.05, 0.055, 0.045))] = 2
    return reference, prediction


def write_pair(folder: Path, shape: tuple[int, int, int]) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, array in zip(("reference", "prediction"), scene(shape)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(SPACING_XYZ)
        paths.append(folder / f"{name}.nii.gz")
        sitk.WriteImage(image, str(paths[-1]))
    dataset_json = folder / "dataset.json"
    dataset_json.write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1,
                                        "lesion": 2}, "numTraining": 1, "file_ending": ".nii.gz"}))
    return paths[0], paths[1], dataset_json


def eval_in_child(side: str, reference: Path, prediction: Path, dataset_json: Path, repeats: int) -> dict:
    """One case evaluated in a fresh process: the fastest of ``repeats`` timings after a warm-up, and the
    process's peak memory."""
    result = subprocess.run([sys.executable, "-c", _CHILD_EVAL, side, reference, prediction, dataset_json,
                             str(repeats)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if result.returncode:
        raise SystemExit(f"{side} evaluation failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def slope(sizes: list[float], seconds: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def eval_ratios(voxels: list[int]) -> Callable[[dict], dict[str, float]]:
    """ours / nnU-Net at the largest size and the slope of ours' log time against log voxels."""
    last = len(voxels) - 1
    return lambda t: {"eval": t[f"ours_{last}"] / t[f"nnunet_{last}"],
                      "eval_slope": slope(voxels, [t[f"ours_{i}"] for i in range(len(voxels))])}


def eval_scaling(workdir: Path, repeats: int, quick: bool, max_rounds: int = MAX_ROUNDS,
                 child: Callable[..., dict] = eval_in_child, memory: Callable[..., dict] = rate_memory,
                 write: Callable[[Path, tuple], tuple] = write_pair) -> tuple[Stable, list[dict]]:
    """Measurements (per size, one process of ours then one of nnU-Net's) until ours / nnU-Net at the
    largest size and the eval slope settle; the rows give the median times and the first measurement's
    peak memories."""
    shapes = [(75, 128, 128), (150, 256, 256)] + ([] if quick else [CT_SHAPE])
    files = [write(workdir / "x".join(map(str, shape)), shape) for shape in shapes]
    rows = [{"shape": shape, "voxels": int(np.prod(shape)), "rate": memory(f[0], f[2], shape)}
            for shape, f in zip(shapes, files)]

    def measure() -> dict[str, float]:
        times = {}
        for i, (row, pair) in enumerate(zip(rows, files)):
            ours, theirs = child("ours", *pair, repeats), child("nnunet", *pair, repeats)
            np.testing.assert_allclose(ours["dice"], theirs["dice"], rtol=1e-9)  # the same Dice before any timing
            row.setdefault("ours", ours)  # the first measurement's processes give the peak memory
            row.setdefault("nnunet", theirs)
            times[f"ours_{i}"], times[f"nnunet_{i}"] = ours["seconds"], theirs["seconds"]
            print(f"eval {row['shape']}: ours {ours['seconds']:.2f} s ({ours['peak_mib']:.0f} MiB), nnU-Net "
                  f"{theirs['seconds']:.2f} s ({theirs['peak_mib']:.0f} MiB)", flush=True)
        return times

    timing = repeat_until_stable(measure, eval_ratios([r["voxels"] for r in rows]), window=window_for(max_rounds),
                                 max_rounds=max_rounds)
    for i, row in enumerate(rows):
        row["ours"] = {**row["ours"], "seconds": timing.times[f"ours_{i}"]}
        row["nnunet"] = {**row["nnunet"], "seconds": timing.times[f"nnunet_{i}"]}
    return timing, rows


def run_plan(quick: bool) -> list[tuple[int, int]]:
    return [(2, 1), (4, 3), (8, 7)] if not quick else [(1, 1), (2, 1)]  # cases, corruptions (+ clean)


def run_loop() -> Callable[[int, int], float]:
    """Loop seconds of one ``nnunet-robust run`` on the first ``n_cases`` cases and ``n_conditions``
    corruptions (+ clean), into an empty folder (run skips the items it finds done)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_runner import BIN, prepare

    env, raw, model = prepare(REPO / "benchmarks" / ".work" / "runner", 8, 48)
    cases = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))
    families = ["gaussian_noise:3", "bias_field:3", "gaussian_blur:2", "spike:2", "rician_noise:3", "motion:2",
                "ghosting:2"]

    def loop(n_cases: int, n_conditions: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            listing = Path(tmp) / f"cases{n_cases}.txt"
            listing.write_text("\n".join(str(c) for c in cases[:n_cases]) + "\n")
            result = subprocess.run([BIN / "nnunet-robust", "run", "-i", listing, "-o", Path(tmp) / "run", "-m", model,
                                     "-f", "0", "-device", "cpu", "--disable_tta", "--no-progress", "--conditions",
                                     *families[:n_conditions]], env=env, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"run failed:\n{result.stderr[-3000:]}")
        return float(re.search(r"; ([\d.]+) s, ", result.stdout).group(1))
    return loop


def run_scaling(plan: list[tuple[int, int]], loop: Callable[[int, int], float],
                max_rounds: int = MAX_ROUNDS) -> tuple[Stable, list[dict]]:
    """Measurements (one run per number of items) until the slope of log loop time against log items
    settles; the rows give the median loop times."""
    items = [n_cases * (n_conditions + 1) for n_cases, n_conditions in plan]

    def measure() -> dict[str, float]:
        times = {}
        for n, (n_cases, n_conditions) in zip(items, plan):
            times[f"loop_{n}"] = loop(n_cases, n_conditions)
            print(f"run: {n} items, loop {times[f'loop_{n}']:.2f} s ({times[f'loop_{n}'] / n:.3f} s/item)", flush=True)
        return times

    timing = repeat_until_stable(measure, lambda t: {"run_slope": slope(items, [t[f"loop_{n}"] for n in items])},
                                 window=window_for(max_rounds), max_rounds=max_rounds)
    return timing, [{"items": n, "loop": timing.times[f"loop_{n}"]} for n in items]


def headline_figures(eval_timing: Stable, eval_rows: list[dict], run_timing: Stable, judge) -> list[Figure]:
    ours, theirs = eval_rows[-1]["ours"], eval_rows[-1]["nnunet"]
    size = "x".join(map(str, eval_rows[-1]["shape"][::-1]))
    eval_ratio, eval_slope = eval_timing.ratios["eval"], eval_timing.ratios["eval_slope"]
    run_slope = run_timing.ratios["run_slope"]
    return [
        Figure.timed(eval_timing, figure=f"eval per 3D case {size} (Dice+HD95+ASSD+NSD, 2 labels) vs nnU-Net "
                                         "compute_metrics (s)", ours=ours["seconds"], reference=theirs["seconds"],
                     ratio=eval_ratio, goal=f"ours / nnU-Net <= {EVAL_GOAL:g}", met=judge(eval_ratio <= EVAL_GOAL)),
        Figure(figure=f"eval peak memory per 3D case {size} (MiB)", ours=ours["peak_mib"],
               reference=theirs["peak_mib"], ratio=ours["peak_mib"] / theirs["peak_mib"], goal="informational",
               met=None),
        Figure(figure=f"rate per-case work, peak memory {size}, 3 float32 channels (MiB)",
               ours=eval_rows[-1]["rate"]["peak_mib"], reference=None, ratio=None, goal="informational", met=None),
        Figure.timed(eval_timing, figure="eval: slope of log time vs log voxels (x1, x8, x64)", ours=eval_slope,
                     reference=None, ratio=None, goal=f"<= {SLOPE_GOAL:g} (no super-linear term)",
                     met=judge(eval_slope <= SLOPE_GOAL)),
        Figure.timed(run_timing, figure="run: slope of log loop time vs log items (1x, 4x, 16x)", ours=run_slope,
                     reference=None, ratio=None, goal=f"<= {SLOPE_GOAL:g} (no super-linear term)",
                     met=judge(run_slope <= SLOPE_GOAL)),
    ]


def verdict(figure: Figure) -> str:
    if figure.met is None:
        return "unstable: not judged" if figure.stable is False else "not judged"
    return "yes" if figure.met else "**no**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "scale.md")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / ".work" / "scale")
    parser.add_argument("--quick", action="store_true", help="small sizes only (a check that the script works)")
    parser.add_argument("--max-rounds", type=max_rounds_option, default=None,
                        help=f"measurements at most of each timed part (default {MAX_ROUNDS}; --quick: 1)")
    args = parser.parse_args()
    max_rounds = args.max_rounds or (1 if args.quick else MAX_ROUNDS)
    repeats = 1 if args.quick else args.repeats
    eval_timing, eval_rows = eval_scaling(args.workdir, repeats, args.quick, max_rounds)
    run_timing, run_rows = run_scaling(run_plan(args.quick), run_loop(), max_rounds)
    busy = machine_is_busy()
    judge = (lambda ok: None) if (busy or args.quick) else bool
    figures = headline_figures(eval_timing, eval_rows, run_timing, judge)
    window = window_for(max_rounds)
    lines = [
        "# Scaling: a CT-sized case, time against voxels and against work items",
        "",
        f"Generated by `.venv/bin/python benchmarks/bench_scale.py{' --quick' if args.quick else ''}` on "
        f"{os.cpu_count()} CPUs ({platform.machine()}); {load_note()}.",
        "",
        "| eval: case size (x, y, z) | voxels | ours (s) | ours peak (MiB) | nnU-Net compute_metrics (s) | "
        "nnU-Net peak (MiB) | ours / nnU-Net |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[f"| {'x'.join(map(str, r['shape'][::-1]))} | {r['voxels']:,} | {r['ours']['seconds']:.2f} | "
          f"{r['ours']['peak_mib']:.0f} | {r['nnunet']['seconds']:.2f} | {r['nnunet']['peak_mib']:.0f} | "
          f"{r['ours']['seconds'] / r['nnunet']['seconds']:.2f} |" for r in eval_rows],
        "",
        "Both sides read the two label maps (SimpleITK) and compare two labels; ours adds HD95, ASSD and NSD "
        "(surface distances inside the bounding box of both masks). Each side runs in a fresh process: one "
        f"warm-up evaluation of the case (lazy imports, per-spacing tables: paid once per `eval`), then the "
        f"fastest of {repeats} timed ones; peak memory is the process's maximum resident set (interpreter and "
        "imports included), in the first measurement. A measurement is one process of each side per size, "
        f"ours then nnU-Net's; it is {rule(window, max_rounds, 'values of ours / nnU-Net at the largest size and of the slope')}; "
        f"the table gives the median times. Spread: {settled(eval_timing)}.",
        "",
        "| rate: case size (x, y, z) | probabilities + label maps (MiB) | peak before the work (MiB) | "
        "peak (MiB) | time (s) |",
        "|---|---:|---:|---:|---:|",
        *[f"| {'x'.join(map(str, r['shape'][::-1]))} | {r['rate']['inputs_mib']:.0f} | {r['rate']['before_mib']:.0f} | "
          f"{r['rate']['peak_mib']:.0f} | {r['rate']['seconds']:.1f} |" for r in eval_rows],
        "",
        "`rate`'s per-case work (`analyse_case`: features of each label, Dice, FNR curves, reliability "
        "counts, temperature scaling on) on 3-channel float32 probabilities, in a fresh process; the "
        "peak before the work includes making the inputs.",
        "",
        "| run: items (cases x conditions) | loop (s) | s per item |",
        "|---:|---:|---:|",
        *[f"| {r['items']} | {r['loop']:.2f} | {r['loop'] / r['items']:.3f} |" for r in run_rows],
        "",
        "`nnunet-robust run` on the CPU with the 48^3 benchmark model of `bench_runner.py`, no TTA; the loop "
        "excludes start-up and the model load, which are paid once. A measurement is one run per number of "
        f"items; it is {rule(window, max_rounds, 'slopes')}; the table gives the median loop times. Spread: "
        f"{settled(run_timing)}.",
        "",
        "| figure | value | spread (measurements) | goal | met? |",
        "|---|---:|---:|---|---|",
        *[f"| {f.figure} | {f.ours:.2f} | {'-' if f.rounds is None else f'{100 * f.spread:.0f}% ({f.rounds})'} | "
          f"{f.goal} | {verdict(f)} |" for f in figures],
        "",
    ]
    if busy:
        lines.append("The machine was busy during this run, so no goal was judged; run again on a quiet machine.\n")
    text = "\n".join(lines)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    write_figures(args.output, "scale", figures, device="CPU")
    print(text)


if __name__ == "__main__":
    main()

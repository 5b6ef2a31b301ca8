"""``nnunet-robust run`` vs the naive workflow, same model, same images, same predictions.

Naive workflow: write corrupted copies of the test folder (``nnunet-robust corrupt``, one folder per
condition), then call ``nnUNetv2_predict`` once per folder (the model is loaded K times, and every
corrupted image goes through disk). ``run`` loads the model once and corrupts in memory. Both use
the same seeds, so the predictions must be identical; the benchmark checks that (on its first
measurement) before it reports.

    python benchmarks/bench_runner.py [--workdir benchmarks/.work/runner] [--cases 8] [--size 48] [--device cpu]
                                      [--window 3] [--max-rounds 5]

A measurement is one timed naive loop followed by one timed ``run``, each into empty folders; it is
repeated until the last ``--window`` speed-ups (naive / run) lie within 10 % of each other, at most
``--max-rounds`` times (``figures.repeat_until_stable``), and the goal is judged on the median of those
speed-ups (still unstable: not judged). One measurement takes about 4 minutes on 2 quiet CPU cores, so
a run takes 12 to 20 minutes (``--window 1 --max-rounds 1``: one measurement, as before the stability
rule).

The first call creates a synthetic 3D dataset and trains ``nnUNetTrainer_tiny`` on it (a few
minutes on a CPU); later calls reuse it. Writes ``benchmarks/results/runner.md`` and its headline
figures to ``runner.json``. ``--device`` is the prediction device of both workflows (training stays on
the CPU, so the cached model does not depend on the machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
from figures import STABLE_SPREAD, STABLE_WINDOW, Figure, Stable, repeat_until_stable, write_figures

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers.synthetic import write_nnunet_dataset  # noqa: E402

BIN = Path(sys.executable).parent
DATASET_ID, CONFIGURATION, TRAINER = 990, "3d_fullres", "nnUNetTrainer_tiny"
# 8 conditions: clean + 7 corruptions across the families' kinds (noise, blur, intensity, k-space)
CORRUPTIONS = [("gaussian_noise", 3), ("rician_noise", 3), ("speckle_noise", 3), ("gaussian_blur", 2),
               ("bias_field", 3), ("motion", 2), ("spike", 2)]
SPEEDUP_GOAL = 3.0  # naive workflow time / run time
OUTSIDE_SHARE_GOAL = 0.05  # share of the (case x condition) loop spent outside nnU-Net's predictor
INPUT_SPACE_SHARE_GOAL = 0.05  # share of the loop spent normalising and comparing inputs (what the model saw)
# A measurement takes ~4 min on 2 quiet cores: at most 5 of them (20 min), not figures.MAX_ROUNDS (7, 28 min)
MAX_ROUNDS = 5

Command = Callable[[list, dict], tuple[float, str]]


def sh(args: list, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - start, result.stdout


def prepare(workdir: Path, cases: int, size: int) -> tuple[dict, Path, Path]:
    env = {**os.environ, "nnUNet_n_proc_DA": "2", "nnUNet_def_n_proc": "2", "nnUNet_compile": "false",
           **{n: str(workdir / n) for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    raw = Path(env["nnUNet_raw"]) / "Dataset990_Blobs3D"
    model = Path(env["nnUNet_results"]) / raw.name / f"{TRAINER}__nnUNetPlans__{CONFIGURATION}"
    if not (model / "fold_0" / "checkpoint_final.pth").is_file():
        print("preparing: dataset, plan, train (once)", flush=True)
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            Path(env[name]).mkdir(parents=True, exist_ok=True)
        write_nnunet_dataset(Path(env["nnUNet_raw"]), DATASET_ID, 3, n_train=6, n_test=cases, size=size, seed=0)
        sh([BIN / "nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c", CONFIGURATION, "-np", "1", "-npfp", "1"],
           env)
        sh([BIN / "nnUNetv2_train", DATASET_ID, CONFIGURATION, "0", "-tr", TRAINER, "-device", "cpu"], env)
    return env, raw, model


def naive(env: dict, raw: Path, out: Path, device: str, command: Command = sh,
          clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Seconds of the naive workflow, in all and split into its corrupt and its predict calls."""
    start = clock()
    corrupted = out / "corrupted"
    for family, severity in CORRUPTIONS:
        command([BIN / "nnunet-robust", "corrupt", "-i", raw / "imagesTs", "-o", corrupted, "--family", family,
                 "--severity", severity], env)
    corrupt_end = clock()
    folders = {"clean": raw / "imagesTs"}
    folders.update({f"{f}_sev{s}": corrupted / f / str(s) for f, s in CORRUPTIONS})
    for name, folder in folders.items():
        command([BIN / "nnUNetv2_predict", "-i", folder, "-o", out / "predictions" / name, "-d", DATASET_ID,
                 "-c", CONFIGURATION, "-tr", TRAINER, "-f", "0", "-device", device, "--disable_tta"], env)
    end = clock()
    return {"naive": end - start, "naive_corrupt": corrupt_end - start, "naive_predict": end - corrupt_end}


def ours(env: dict, raw: Path, model: Path, out: Path, device: str, command: Command = sh) -> dict[str, float]:
    """Seconds of ``run``: the whole process, its (case x condition) loop, the predictor's share of the
    loop and the time measuring what the model saw, as its last line reports them."""
    specs = [f"{f}:{s}" for f, s in CORRUPTIONS]
    wall, stdout = command([BIN / "nnunet-robust", "run", "-i", raw / "imagesTs", "-o", out, "-m", model, "-f", "0",
                            "-device", device, "--disable_tta", "--no-progress", "--conditions", *specs], env)
    loop, predictor, input_space = (float(x) for x in re.search(
        r"; ([\d.]+) s, ([\d.]+) s in nnU-Net's predictor, ([\d.]+) s measuring", stdout).groups())
    return {"run": wall, "run_loop": loop, "run_predictor": predictor, "run_input_space": input_space}


def same_predictions(naive_root: Path, run_root: Path) -> int:
    compared = 0
    for path in sorted(naive_root.glob("*/*.nii.gz")):
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        mine = sitk.GetArrayFromImage(sitk.ReadImage(str(run_root / path.parent.name / path.name)))
        if not np.array_equal(theirs, mine):
            raise SystemExit(f"predictions differ: {path} vs {run_root / path.parent.name / path.name}")
        compared += 1
    return compared


def speedup(times: dict[str, float]) -> dict[str, float]:
    return {"speedup": times["naive"] / times["run"]}


def measure_until_stable(env: dict, raw: Path, model: Path, runs: Path, device: str, command: Command = sh,
                         clock: Callable[[], float] = time.perf_counter,
                         compare: Callable[[Path, Path], int] = same_predictions, **stability) -> tuple[Stable, int]:
    """Measurements (one naive loop, then one ``run``) until the speed-ups settle; the predictions are
    compared once, after the first (both workflows are deterministic: later ones predict the same)."""
    compared: list[int] = []

    def measure() -> dict[str, float]:
        shutil.rmtree(runs, ignore_errors=True)  # run skips finished items: every measurement starts empty
        times = naive(env, raw, runs / "naive", device, command, clock)
        times.update(ours(env, raw, model, runs / "run", device, command))
        if not compared:
            compared.append(compare(runs / "naive" / "predictions", runs / "run"))
        # shares per measurement, so that the figures give their median like the times'
        times["outside_share"] = 1 - times["run_predictor"] / times["run_loop"]
        times["input_space_share"] = times["run_input_space"] / times["run_loop"]
        print(f"measurement: naive {times['naive']:.1f} s (corrupt {times['naive_corrupt']:.1f} s, predict "
              f"{times['naive_predict']:.1f} s), run {times['run']:.1f} s (loop {times['run_loop']:.1f} s): "
              f"{times['naive'] / times['run']:.2f}x", flush=True)
        return times

    return repeat_until_stable(measure, speedup, **stability), compared[0]


def headline_figures(timing: Stable, compared: int, cases: int) -> list[Figure]:
    k = len(CORRUPTIONS) + 1
    t = timing.times
    return [
        Figure.timed(timing, figure=f"{cases} cases x {k} conditions, whole workflow (s)", ours=t["run"],
                     reference=t["naive"], ratio=timing.ratios["speedup"], goal=f"naive / run >= {SPEEDUP_GOAL:g}",
                     met=timing.ratios["speedup"] >= SPEEDUP_GOAL),
        Figure(figure="share of the run loop outside nnU-Net's predictor (%)", ours=100 * t["outside_share"],
               reference=None, ratio=None, goal=f"<= {100 * OUTSIDE_SHARE_GOAL:g}%",
               met=t["outside_share"] <= OUTSIDE_SHARE_GOAL),
        Figure(figure="share of the run loop measuring what the model saw (%)", ours=100 * t["input_space_share"],
               reference=None, ratio=None, goal=f"<= {100 * INPUT_SPACE_SHARE_GOAL:g}%",
               met=t["input_space_share"] <= INPUT_SPACE_SHARE_GOAL),
        Figure(figure="identical predictions (run vs naive)", ours=compared, reference=k * cases, ratio=None,
               goal="all identical", met=compared == k * cases),
    ]


def markdown(timing: Stable, compared: int, cases: int, size: int, device_name: str,
             window: int = STABLE_WINDOW) -> str:
    k = len(CORRUPTIONS) + 1
    t = timing.times
    settled = (f"{100 * timing.spread:.0f}% ({timing.rounds} measurement{'s' if timing.rounds > 1 else ''}"
               f"{'' if timing.stable else ', unstable: goal not judged'})")
    rows = [
        ("naive: corrupt K folders + K x nnUNetv2_predict (s)", f"{t['naive']:.1f}"),
        ("naive: the K - 1 `nnunet-robust corrupt` calls (s)", f"{t['naive_corrupt']:.1f}"),
        ("naive: the K `nnUNetv2_predict` calls (s)", f"{t['naive_predict']:.1f}"),
        ("nnunet-robust run, whole process (s)", f"{t['run']:.1f}"),
        (f"speed-up (goal >= {SPEEDUP_GOAL:g}x)", f"{timing.ratios['speedup']:.2f}x"),
        ("spread of the speed-ups (max / min - 1)", settled),
        ("run: (case x condition) loop (s)", f"{t['run_loop']:.1f}"),
        ("run: inside nnU-Net's predictor (s)", f"{t['run_predictor']:.1f}"),
        (f"share of the loop outside the predictor (goal <= {100 * OUTSIDE_SHARE_GOAL:g}%)",
         f"{100 * t['outside_share']:.1f}%"),
        ("share of the whole process outside the predictor", f"{100 * (1 - t['run_predictor'] / t['run']):.1f}%"),
        (f"share of the loop measuring what the model saw (goal <= {100 * INPUT_SPACE_SHARE_GOAL:g}%)",
         f"{100 * t['input_space_share']:.1f}%"),
        ("identical predictions compared (first measurement)", f"{compared} of {k * cases}"),
    ]
    return "\n".join([
        "# Runner vs naive workflow",
        "",
        f"{cases} synthetic 3D cases of {size}^3, K = {k} conditions (clean + "
        f"{', '.join(f'{f}:{s}' for f, s in CORRUPTIONS)}), model `{TRAINER}` (3d_fullres, fold 0), "
        f"no TTA, prediction on {device_name} ({os.cpu_count()} CPU cores, {platform.machine()}). Both workflows use "
        "the same seeds; every prediction was checked identical before timing was reported. A measurement is one "
        "naive loop then one `run`; it is repeated until the last "
        f"{window} speed-up(s) lie within {100 * STABLE_SPREAD:g} % (max / min - 1), and every figure is the "
        "median over those measurements.",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        "The whole-process figure includes interpreter start-up, imports and loading the model once; the "
        "loop figure is what grows with cases x conditions.",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / ".work" / "runner")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="prediction device of both workflows")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "runner.md")
    parser.add_argument("--window", type=int, default=STABLE_WINDOW,
                        help=f"speed-ups that must agree within {100 * STABLE_SPREAD:g} %% (default {STABLE_WINDOW})")
    parser.add_argument("--max-rounds", type=int, default=MAX_ROUNDS,
                        help=f"measurements at most (default {MAX_ROUNDS}; ~4 min each on 2 CPU cores)")
    args = parser.parse_args()
    if not 1 <= args.window <= args.max_rounds:
        parser.error(f"need 1 <= --window <= --max-rounds, got {args.window} and {args.max_rounds}")
    env, raw, model = prepare(args.workdir, args.cases, args.size)
    timing, compared = measure_until_stable(env, raw, model, args.workdir / "runs", args.device, window=args.window,
                                            max_rounds=args.max_rounds)
    if args.device == "cpu":
        device_name = "CPU"
    else:
        import torch  # only for the GPU's name

        device_name = torch.cuda.get_device_name(0)
    text = markdown(timing, compared, args.cases, args.size, device_name, args.window)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    write_figures(args.output, "runner", headline_figures(timing, compared, args.cases), device=device_name)
    print(text)


if __name__ == "__main__":
    main()

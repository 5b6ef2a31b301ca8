"""``nnunet-robust run`` vs the naive workflow, same model, same images, same predictions.

Naive workflow: write corrupted copies of the test folder (``nnunet-robust corrupt``, one folder per
condition), then call ``nnUNetv2_predict`` once per folder (the model is loaded K times, and every
corrupted image goes through disk). ``run`` loads the model once and corrupts in memory. Both use
the same seeds, so the predictions must be identical; the benchmark checks that before it reports.

    python benchmarks/bench_runner.py [--workdir benchmarks/.work/runner] [--cases 8] [--size 48] [--device cpu]

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

import numpy as np
import SimpleITK as sitk
import torch
from figures import Figure, write_figures

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


def naive(env: dict, raw: Path, model: Path, out: Path, device: str) -> float:
    start = time.perf_counter()
    corrupted = out / "corrupted"
    for family, severity in CORRUPTIONS:
        sh([BIN / "nnunet-robust", "corrupt", "-i", raw / "imagesTs", "-o", corrupted, "--family", family,
            "--severity", severity], env)
    folders = {"clean": raw / "imagesTs"}
    folders.update({f"{f}_sev{s}": corrupted / f / str(s) for f, s in CORRUPTIONS})
    for name, folder in folders.items():
        sh([BIN / "nnUNetv2_predict", "-i", folder, "-o", out / "predictions" / name, "-d", DATASET_ID,
            "-c", CONFIGURATION, "-tr", TRAINER, "-f", "0", "-device", device, "--disable_tta"], env)
    return time.perf_counter() - start


def ours(env: dict, raw: Path, model: Path, out: Path, device: str) -> tuple[float, float, float, float]:
    specs = [f"{f}:{s}" for f, s in CORRUPTIONS]
    wall, stdout = sh([BIN / "nnunet-robust", "run", "-i", raw / "imagesTs", "-o", out, "-m", model, "-f", "0",
                       "-device", device, "--disable_tta", "--no-progress", "--conditions", *specs], env)
    loop, predictor, input_space = (float(x) for x in re.search(
        r"; ([\d.]+) s, ([\d.]+) s in nnU-Net's predictor, ([\d.]+) s measuring", stdout).groups())
    return wall, loop, predictor, input_space


def same_predictions(naive_root: Path, run_root: Path) -> int:
    compared = 0
    for path in sorted(naive_root.glob("*/*.nii.gz")):
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        mine = sitk.GetArrayFromImage(sitk.ReadImage(str(run_root / path.parent.name / path.name)))
        if not np.array_equal(theirs, mine):
            raise SystemExit(f"predictions differ: {path} vs {run_root / path.parent.name / path.name}")
        compared += 1
    return compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / ".work" / "runner")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="prediction device of both workflows")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "runner.md")
    args = parser.parse_args()
    env, raw, model = prepare(args.workdir, args.cases, args.size)
    runs = args.workdir / "runs"
    shutil.rmtree(runs, ignore_errors=True)

    naive_seconds = naive(env, raw, model, runs / "naive", args.device)
    run_wall, run_loop, run_predictor, run_input_space = ours(env, raw, model, runs / "run", args.device)
    compared = same_predictions(runs / "naive" / "predictions", runs / "run")
    k = len(CORRUPTIONS) + 1
    device_name = "CPU" if args.device == "cpu" else torch.cuda.get_device_name(0)
    outside_share = 1 - run_predictor / run_loop
    rows = [
        ("naive: corrupt K folders + K x nnUNetv2_predict (s)", f"{naive_seconds:.1f}"),
        ("nnunet-robust run, whole process (s)", f"{run_wall:.1f}"),
        (f"speed-up (goal >= {SPEEDUP_GOAL:g}x)", f"{naive_seconds / run_wall:.2f}x"),
        ("run: (case x condition) loop (s)", f"{run_loop:.1f}"),
        ("run: inside nnU-Net's predictor (s)", f"{run_predictor:.1f}"),
        (f"share of the loop outside the predictor (goal <= {100 * OUTSIDE_SHARE_GOAL:g}%)", f"{100 * outside_share:.1f}%"),
        ("share of the whole process outside the predictor", f"{100 * (1 - run_predictor / run_wall):.1f}%"),
        (f"share of the loop measuring what the model saw (goal <= {100 * INPUT_SPACE_SHARE_GOAL:g}%)",
         f"{100 * run_input_space / run_loop:.1f}%"),
        ("identical predictions compared", f"{compared} of {k * args.cases}"),
    ]
    text = "\n".join([
        "# Runner vs naive workflow",
        "",
        f"{args.cases} synthetic 3D cases of {args.size}^3, K = {k} conditions (clean + "
        f"{', '.join(f'{f}:{s}' for f, s in CORRUPTIONS)}), model `{TRAINER}` (3d_fullres, fold 0), "
        f"no TTA, prediction on {device_name} ({os.cpu_count()} CPU cores, {platform.machine()}). Both workflows use the same seeds; "
        "every prediction was checked identical before timing was reported.",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        "The whole-process figure includes interpreter start-up, imports and loading the model once; the "
        "loop figure is what grows with cases x conditions.",
        "",
    ])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    write_figures(args.output, "runner", [
        Figure(figure=f"{args.cases} cases x {k} conditions, whole workflow (s)", ours=run_wall, reference=naive_seconds,
               ratio=naive_seconds / run_wall, goal=f"naive / run >= {SPEEDUP_GOAL:g}",
               met=naive_seconds / run_wall >= SPEEDUP_GOAL),
        Figure(figure="share of the run loop outside nnU-Net's predictor (%)", ours=100 * outside_share,
               reference=None, ratio=None, goal=f"<= {100 * OUTSIDE_SHARE_GOAL:g}%",
               met=outside_share <= OUTSIDE_SHARE_GOAL),
        Figure(figure="share of the run loop measuring what the model saw (%)", ours=100 * run_input_space / run_loop,
               reference=None, ratio=None, goal=f"<= {100 * INPUT_SPACE_SHARE_GOAL:g}%",
               met=run_input_space / run_loop <= INPUT_SPACE_SHARE_GOAL),
        Figure(figure="identical predictions (run vs naive)", ours=compared, reference=k * args.cases, ratio=None,
               goal="all identical", met=compared == k * args.cases),
    ], device=device_name)
    print(text)


if __name__ == "__main__":
    main()

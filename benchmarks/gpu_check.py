"""The GPU checks of the project in one run (~20 min on one GPU, ~8 min with ``--run-max-rounds 1``):
writes ``results/gpu.md``.

    python benchmarks/gpu_check.py                  # on a CUDA machine: the real check
    python benchmarks/gpu_check.py --device cpu     # dry mode: the same steps, tiny, goals not judged (CI)
    [--max-rounds 7] [--run-max-rounds 3]           # the stability rule's caps (below)

1. **Corruptions on the device** vs TorchIO on the CPU, per family TorchIO shares, on a 128^3 volume
   (goal: ours on the GPU >= 10x faster than TorchIO's CPU time).
2. **``run`` on a 3D model**: a 3d_fullres nnU-Net model planned by nnU-Net on a synthetic dataset of
   128^3 cases, its weights left at their random initialisation (the predictor's work does not depend
   on the weight values, so no training is needed to time it). Its K conditions are predicted by
   ``nnunet-robust run -device cuda`` and by the naive loop (``nnunet-robust corrupt`` per condition,
   then ``nnUNetv2_predict -device cuda`` per folder). Goals: the predictor busy >= 95 % of ``run``'s
   loop, and ``run`` faster than the naive loop. Clean predictions must be identical; corrupted ones
   are counted (on a GPU, ``run`` draws its noise from the GPU's generator and ``corrupt`` from the CPU's,
   so noisy inputs differ by design).

3. **Surface metrics on the device**: HD95, ASSD and NSD of a SegTHOR-sized synthetic pair (512 x 512 x
   200 at 2.5 x 0.98 x 0.98 mm, four organs, the prediction shifted and grown with two false-positive
   islands) with ``compare_masks``' torch path (``eval -device cuda``, ``metrics/surface_torch.py``) vs
   the CPU code. Goals: values equal (<= 1e-6), the device >= 3x faster. Against the peer a GPU user would
   pick: MONAI's metrics with the masks on the device (with cuCIM when installed), goal: ours faster.

Timed ratios follow the stability rule (``figures.repeat_until_stable``): a measurement is repeated
until the last 3 ratios lie within 10 % of each other, and goals are judged on the median of those
(still unstable: not judged). A corruption measurement is the median of 5 runs of ours and of TorchIO,
interleaved; a surface-metric measurement the median of 3 runs of ours, then one of the CPU code; both
at most ``--max-rounds`` times (default ``figures.MAX_ROUNDS``, 7: seconds each). A run measurement is
one ``run`` then one naive loop, each into empty folders, at most ``--run-max-rounds`` times: the naive
loop alone takes ~5 min on an H200, so the default is 3 (~18 min: the least that can show 3 ratios
agreeing; still unsettled after them, the goal is left unjudged), not 7 (~40 min). The predictions are
compared once, after the last measurement. ``--run-max-rounds 1``: one measurement, as before the rule.
The dry mode takes 1 run measurement and at most 3 of the others (enough to exercise the rule).
A lent device of this project gives 15 min in all and 10 per command: run the parts as separate
commands (``--part metrics``, then ``--part run`` with fewer ``--cases`` and ``--conditions``, which
shorten each run measurement) rather than cut the run comparison to one measurement.

Every figure states the card, the CPU count and the load average. The dry mode (``--device cpu``)
runs every step on 32^3 volumes with two conditions (the surface metrics: torch on CPU tensors, 20 x 48
x 48) so that CI proves the script works; it writes its Markdown where ``--output`` says and judges no goal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
import torch
from bench_corruptions import SPACING, phantom, timed, torchio_equivalent
from bench_runner import sh
from figures import MAX_ROUNDS, Figure, Stable, max_rounds_option, repeat_until_stable, rule, window_for, write_figures

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers.synthetic import write_nnunet_dataset  # noqa: E402

DATASET_ID, CONFIGURATION, TRAINER = 991, "3d_fullres", "nnUNetTrainer"
TORCHIO_SPEEDUP_GOAL = 10.0
SURFACE_SPEEDUP_GOAL = 3.0
SURFACE_VALUES_GOAL = 1e-6
SEGTHOR_SPACING = (2.5, 0.98, 0.98)
# SegTHOR's organs, roughly: label, centre and radii (z, y, x) as fractions of the image
ORGANS = [(1, (0.50, 0.45, 0.50), (0.35, 0.02, 0.02)),  # esophagus, a thin tube
          (2, (0.40, 0.55, 0.55), (0.12, 0.12, 0.10)),  # heart
          (3, (0.75, 0.45, 0.50), (0.25, 0.03, 0.03)),  # trachea
          (4, (0.50, 0.50, 0.42), (0.40, 0.035, 0.035))]  # aorta
BUSY_GOAL = 0.95
RUN_MAX_ROUNDS = 3  # a run measurement takes ~6 min on an H200: 3 (~18 min), the least a window of 3 needs
# dry mode: 3 measurements of each corruption and of the surface metrics exercise the rule without its full cost
# (the torch surface path takes seconds on CPU tensors)
DRY_MAX_ROUNDS = 3
CONDITIONS = [("gaussian_noise", 3), ("rician_noise", 3), ("gaussian_blur", 2), ("bias_field", 3), ("motion", 2),
              ("ghosting", 2), ("spike", 2)]


def executable(name: str) -> str:
    """A console script next to this interpreter (a venv), else on PATH (``pip install --target``)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name}: not found next to {sys.executable} nor on PATH; install the project first")
    return found


# ---------------------------------------------------------------- 1. corruptions on the device


def interleaved_until_stable(ours: Callable[[], object], theirs: Callable[[], object], repeats: int,
                             max_rounds: int = MAX_ROUNDS, theirs_repeats: int | None = None,
                             synchronize: Callable[[], None] = lambda: None, timer=timed) -> Stable:
    """Measurements (the medians of ``repeats`` runs of ours and ``theirs_repeats`` (default the same) of
    theirs, interleaved) until theirs / ours settles; times "ours" and "reference", ratio "speedup"."""
    theirs_repeats = repeats if theirs_repeats is None else theirs_repeats

    def measure() -> dict[str, float]:
        ours_times, theirs_times = [], []
        for i in range(max(repeats, theirs_repeats)):
            if i < repeats:
                ours_times.append(timer(ours, synchronize))
            if i < theirs_repeats:
                theirs_times.append(timer(theirs))
        return {"ours": statistics.median(ours_times), "reference": statistics.median(theirs_times)}

    return repeat_until_stable(measure, lambda t: {"speedup": t["reference"] / t["ours"]},
                               window=window_for(max_rounds), max_rounds=max_rounds)


def corruptions_on_device(device: str, shape: tuple[int, ...], repeats: int, max_rounds: int = MAX_ROUNDS) -> list[dict]:
    from nnunet_robustness.corruptions import get_corruption

    image, label = phantom("cpu", shape)
    on_device, label_on_device = image.to(device), label.to(device)
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for family in ("gaussian_noise", "gaussian_blur", "anisotropy", "bias_field", "motion", "ghosting", "spike"):
        corruption = get_corruption(family, severity=3)
        params = corruption.sample_parameters(image, SPACING, torch.Generator().manual_seed(0))
        theirs = torchio_equivalent(family, params, image)
        ours = lambda: corruption(on_device, SPACING, seed=0, label=label_on_device)  # noqa: E731
        ours(), theirs()  # warm-up (CUDA kernels, FFT plans)
        timing = interleaved_until_stable(ours, theirs, repeats, max_rounds, synchronize=synchronize)
        rows.append({"family": family, "ours": timing.times["ours"], "torchio": timing.times["reference"],
                     "timing": timing})
        print(f"{family:16s} ours ({device}) {rows[-1]['ours'] * 1e3:8.2f} ms   TorchIO (CPU) "
              f"{rows[-1]['torchio'] * 1e3:8.1f} ms   spread {100 * timing.spread:.0f}% ({timing.rounds})", flush=True)
    return rows


# ---------------------------------------------------------------- 2. run on a 3D model


def untrained_model(workdir: Path, cases: int, size: int, workers: int = 2) -> tuple[dict, Path, Path]:
    """nnU-Net's own plan for a synthetic 3D dataset, and a checkpoint of that network at its random
    initialisation (nnUNetTrainer.initialize + save_checkpoint, the files a trained model folder has).
    ``workers``: nnU-Net's fingerprint and preprocessing processes (each one imports torch)."""
    env = {**os.environ, "nnUNet_n_proc_DA": "2", "nnUNet_def_n_proc": "2", "nnUNet_compile": "false",
           **{n: str(workdir / n) for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    raw = write_nnunet_dataset(Path(env["nnUNet_raw"]), DATASET_ID, 3, n_train=2, n_test=cases, size=size, seed=0)
    sh([executable("nnUNetv2_plan_and_preprocess"), "-d", DATASET_ID, "-c", CONFIGURATION, "-np", workers,
        "-npfp", workers], env)
    model = Path(env["nnUNet_results"]) / raw.name / f"{TRAINER}__nnUNetPlans__{CONFIGURATION}"
    preprocessed = Path(env["nnUNet_preprocessed"]) / raw.name
    code = (
        "import shutil, sys, torch\n"
        "from nnunetv2.run.run_training import get_trainer_from_args\n"
        "pre, model = sys.argv[1], sys.argv[2]\n"
        f"trainer = get_trainer_from_args('{DATASET_ID}', '{CONFIGURATION}', 0, '{TRAINER}', 'nnUNetPlans', "
        "device=torch.device('cpu'))\n"
        "trainer.initialize()\n"
        "trainer.save_checkpoint(model + '/fold_0/checkpoint_final.pth')\n"
        "shutil.copy(pre + '/nnUNetPlans.json', model + '/plans.json')\n"
        "shutil.copy(pre + '/dataset.json', model + '/dataset.json')\n"
    )
    (model / "fold_0").mkdir(parents=True, exist_ok=True)
    sh([sys.executable, "-c", code, preprocessed, model], env)
    return env, raw, model


def naive_loop(env: dict, raw: Path, out: Path, device: str, conditions: list[tuple[str, int]]) -> float:
    start = time.perf_counter()
    folders = {"clean": raw / "imagesTs"}
    for family, severity in conditions:
        sh([executable("nnunet-robust"), "corrupt", "-i", raw / "imagesTs", "-o", out / "corrupted", "--family",
            family, "--severity", severity], env)
        folders[f"{family}_sev{severity}"] = out / "corrupted" / family / str(severity)
    for name, folder in folders.items():
        sh([executable("nnUNetv2_predict"), "-i", folder, "-o", out / "predictions" / name, "-d", DATASET_ID,
            "-c", CONFIGURATION, "-tr", TRAINER, "-f", "0", "-device", device, "--disable_tta"], env)
    return time.perf_counter() - start


def run_command(env: dict, raw: Path, model: Path, out: Path, device: str,
                conditions: list[tuple[str, int]]) -> dict:
    wall, stdout = sh([executable("nnunet-robust"), "run", "-i", raw / "imagesTs", "-o", out, "-m", model, "-f", "0",
                       "-device", device, "--disable_tta", "--no-progress", "--conditions",
                       *[f"{f}:{s}" for f, s in conditions]], env)
    loop, predictor, input_space = (float(x) for x in re.search(
        r"; ([\d.]+) s, ([\d.]+) s in nnU-Net's predictor, ([\d.]+) s measuring", stdout).groups())
    return {"wall": wall, "loop": loop, "predictor": predictor, "input_space": input_space}


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def compare_predictions(naive_root: Path, run_root: Path) -> dict[str, int]:
    counts = {"clean_identical": 0, "clean": 0, "corrupted_identical": 0, "corrupted": 0}
    for path in sorted(naive_root.glob("*/*.nii.gz")):
        same = np.array_equal(_array(path), _array(run_root / path.parent.name / path.name))
        kind = "clean" if path.parent.name == "clean" else "corrupted"
        counts[kind] += 1
        counts[f"{kind}_identical"] += same
    return counts


def voxel_agreement(folder_a: Path, folder_b: Path) -> float:
    """Share of voxels with the same label, over every case of two prediction folders."""
    same = total = 0
    for path in sorted(folder_a.glob("*.nii.gz")):
        a, b = _array(path), _array(folder_b / path.name)
        same, total = same + int((a == b).sum()), total + a.size
    return same / total


# ---------------------------------------------------------------- 3. surface metrics on the device


def segthor_pair(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Reference and prediction label maps: the organs, and the same shifted by about a voxel and 4 %
    larger, with two false-positive heart islands far away (their box is the whole image)."""
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    maps = []
    for shift, scale in (((0, 0, 0), 1.0), ((0.01, 0.006, -0.004), 1.04)):
        labels = np.zeros(shape, np.uint8)
        for label, centre, radii in ORGANS:
            inside = sum(((g.astype(np.float32) - (c + d) * n) / max(r * scale * n, 1.5)) ** 2
                         for g, c, d, r, n in zip(grid, centre, shift, radii, shape)) <= 1
            labels[inside] = label
        maps.append(labels)
    for corner in ((0, 0, 0), tuple(n - 3 for n in shape)):
        maps[1][tuple(slice(c, c + 3) for c in corner)] = 2
    return maps[0], maps[1]


def surface_metrics_on_device(device: str, shape: tuple[int, int, int], repeats: int,
                              max_rounds: int = MAX_ROUNDS) -> dict:
    """Seconds for HD95, ASSD and NSD of the four organs: the torch path on ``device`` (on a GPU through
    ``compare_masks(device="cuda")``, in dry mode ``surface_distances_torch`` on CPU tensors) and the
    CPU code; and the largest difference between their values."""
    from nnunet_robustness.metrics import average_symmetric_surface_distance as assd
    from nnunet_robustness.metrics import compare_masks, normalized_surface_dice, robust_hausdorff
    from nnunet_robustness.metrics.surface_torch import surface_distances_torch

    reference, prediction = segthor_pair(shape)
    pairs = [(reference == label, prediction == label) for label, _, _ in ORGANS]

    def cpu() -> list[list[float]]:
        return [[compare_masks(a, b, SEGTHOR_SPACING)[m] for m in ("hd95_mm", "assd_mm", "nsd")] for a, b in pairs]

    def ours() -> list[list[float]]:
        if device == "cuda":
            rows = [compare_masks(a, b, SEGTHOR_SPACING, device="cuda") for a, b in pairs]
            return [[row[m] for m in ("hd95_mm", "assd_mm", "nsd")] for row in rows]
        distances = [surface_distances_torch(a, b, SEGTHOR_SPACING, device="cpu") for a, b in pairs]
        return [[robust_hausdorff(d), assd(d), normalized_surface_dice(d, 1.0)] for d in distances]

    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    ours()  # warm-up (CUDA context, kernels, the surfel table)
    timing = interleaved_until_stable(ours, cpu, repeats, max_rounds, theirs_repeats=1, synchronize=synchronize)
    difference = float(np.max(np.abs(np.array(ours()) - np.array(cpu()))))
    print(f"surface metrics  ours ({device}) {timing.times['ours']:8.3f} s   CPU code {timing.times['reference']:8.3f} s"
          f"   max |difference| {difference:.2e}   spread {100 * timing.spread:.0f}% ({timing.rounds})", flush=True)
    result = {"ours": timing.times["ours"], "cpu": timing.times["reference"], "timing": timing,
              "difference": difference, "surface_voxels": [int(a.sum() + b.sum()) for a, b in pairs]}
    monai = monai_on_device(pairs, device)
    if monai is not None:
        monai()  # warm-up (its imports, and cuCIM's kernels on a GPU)
        peer = interleaved_until_stable(ours, monai, repeats, max_rounds, theirs_repeats=1, synchronize=synchronize)
        print(f"surface metrics  ours ({device}) {peer.times['ours']:8.3f} s   MONAI ({device}) "
              f"{peer.times['reference']:8.3f} s   spread {100 * peer.spread:.0f}% ({peer.rounds})", flush=True)
        result["monai"] = {"timing": peer, "cucim": cucim_installed(),
                           "difference": float(np.max(np.abs(np.array(monai()) - np.array(cpu()))))}
    return result


def cucim_installed() -> bool:
    """MONAI computes its distance transform on the GPU with cuCIM (and CuPy) when both are installed, and
    moves the masks to the CPU for SciPy's otherwise (``monai.metrics.utils.get_mask_edges``/``get_surface_distance``)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("cucim", "cupy"))


def monai_on_device(pairs: list[tuple[np.ndarray, np.ndarray]], device: str) -> Callable[[], list[list[float]]] | None:
    """MONAI's HD95, ASSD and NSD (1 mm) of each organ with the masks as tensors on ``device``, the peer a GPU
    user would pick (bench_metrics.py compares it on the CPU and documents where its definitions differ from
    ours); None when MONAI is not installed (it is in the ``bench`` extra)."""
    import importlib.util
    import warnings

    if importlib.util.find_spec("monai") is None:
        return None
    from bench_metrics import TOLERANCE_MM, monai_on_tensors

    assert TOLERANCE_MM == 1.0  # the NSD tolerance of ours here
    warnings.filterwarnings("ignore", category=FutureWarning, module="monai")  # its own deprecated defaults
    # on the device once, outside the timing (as ours, whose masks compare_masks moves itself)
    tensors = [(torch.from_numpy(reference[None, None]).to(device), torch.from_numpy(prediction[None, None]).to(device))
               for reference, prediction in pairs]

    def compute() -> list[list[float]]:
        return [[row[m] for m in ("hd95", "assd", "nsd")]
                for row in (monai_on_tensors(y, y_pred, SEGTHOR_SPACING) for y, y_pred in tensors)]
    return compute


# ---------------------------------------------------------------- report


def corruption_figures(rows: list[dict], device: str, shape: tuple[int, ...], judge) -> list[Figure]:
    return [Figure.timed(r["timing"], figure=f"{r['family']}: ours on {device} vs TorchIO on CPU (ms), {shape[0]}^3",
                         ours=r["ours"] * 1e3, reference=r["torchio"] * 1e3, ratio=r["timing"].ratios["speedup"],
                         goal=f"TorchIO CPU / ours >= {TORCHIO_SPEEDUP_GOAL:g}",
                         met=judge(r["timing"].ratios["speedup"] >= TORCHIO_SPEEDUP_GOAL)) for r in rows]


def verdict(figure: Figure) -> str:
    if figure.met is None:
        return "unstable: not judged" if figure.stable is False else "not judged"
    return "yes" if figure.met else "**no**"


def run_vs_naive(run: Callable[[], dict], naive: Callable[[], float], max_rounds: int = RUN_MAX_ROUNDS) -> Stable:
    """Measurements (one ``run``, then one naive loop) until naive / run settles; times "run_wall",
    "run_loop", "run_predictor", "run_input_space", "naive" and the predictor's "busy" share of the loop."""
    def measure() -> dict[str, float]:
        times = {f"run_{name}": seconds for name, seconds in run().items()}
        times["naive"] = naive()
        times["busy"] = times["run_predictor"] / times["run_loop"]  # per measurement: the figure is its median
        print(f"measurement: run {times['run_wall']:.1f} s, naive {times['naive']:.1f} s: "
              f"{times['naive'] / times['run_wall']:.2f}x", flush=True)
        return times

    return repeat_until_stable(measure, lambda t: {"speedup": t["naive"] / t["run_wall"]},
                               window=window_for(max_rounds), max_rounds=max_rounds)


def run_figures(timing: Stable, counts: dict[str, int], agreement: tuple[float, float], cases: int,
                conditions: list[tuple[str, int]], device: str, judge) -> list[Figure]:
    t, (agreement_ours, agreement_nnunet) = timing.times, agreement
    return [
        Figure(figure=f"run on a 3D model: predictor busy share of the loop (%), {cases} cases x "
                      f"{len(conditions) + 1} conditions", ours=100 * t["busy"], reference=None, ratio=None,
               goal=f">= {100 * BUSY_GOAL:g}%", met=judge(t["busy"] >= BUSY_GOAL)),
        Figure.timed(timing, figure="run vs naive corrupt + nnUNetv2_predict loop, whole workflow (s)",
                     ours=t["run_wall"], reference=t["naive"], ratio=timing.ratios["speedup"], goal="naive / run > 1",
                     met=judge(timing.ratios["speedup"] > 1)),
        Figure(figure="clean predictions, voxels agreeing with nnUNetv2_predict (%): run vs a second "
                      "nnUNetv2_predict process", ours=100 * agreement_ours, reference=100 * agreement_nnunet,
               ratio=None, goal="run agrees as well as nnU-Net with itself (all identical on the CPU)",
               met=judge(agreement_ours >= agreement_nnunet if device == "cuda" else
                         counts["clean_identical"] == counts["clean"])),
    ]


def run_checks(args: argparse.Namespace, cases: int, size: int, conditions: list[tuple[str, int]],
               judge) -> tuple[list[Figure], list[str]]:
    """Step 2: its figures and its paragraph of the Markdown."""
    dry = args.device == "cpu"
    shutil.rmtree(args.workdir, ignore_errors=True)
    # dry mode: two tiny training cases, for which a second torch-importing worker costs more than it saves
    env, raw, model = untrained_model(args.workdir, cases, size, workers=1 if dry else 2)

    def run() -> dict:
        shutil.rmtree(args.workdir / "run", ignore_errors=True)  # run skips finished items: start empty
        return run_command(env, raw, model, args.workdir / "run", args.device, conditions)

    def naive() -> float:
        shutil.rmtree(args.workdir / "naive", ignore_errors=True)
        return naive_loop(env, raw, args.workdir / "naive", args.device, conditions)

    timing = run_vs_naive(run, naive, args.run_max_rounds)
    counts = compare_predictions(args.workdir / "naive" / "predictions", args.workdir / "run")
    # nnU-Net against itself: a second nnUNetv2_predict process on the clean images. On a GPU, cuDNN's
    # autotuner (nnU-Net sets cudnn.benchmark) may pick other convolution algorithms in another process,
    # and a network at its random initialisation has near-ties between labels everywhere, so predictions
    # can differ between any two processes; ours is judged against that baseline.
    repeat = args.workdir / "naive" / "repeat_clean"
    sh([executable("nnUNetv2_predict"), "-i", raw / "imagesTs", "-o", repeat, "-d", DATASET_ID, "-c", CONFIGURATION,
        "-tr", TRAINER, "-f", "0", "-device", args.device, "--disable_tta"], env)
    naive_clean = args.workdir / "naive" / "predictions" / "clean"
    agreement_ours = voxel_agreement(naive_clean, args.workdir / "run" / "clean")
    agreement_nnunet = voxel_agreement(naive_clean, repeat)
    plans = json.loads((model / "plans.json").read_text())["configurations"][CONFIGURATION]
    t = timing.times
    figures = run_figures(timing, counts, (agreement_ours, agreement_nnunet), cases, conditions, args.device, judge)
    text = [
        f"**run on a 3D model**: nnU-Net's {CONFIGURATION} plan for {cases} synthetic {size}^3 cases (patch "
        f"{plans['patch_size']}, {len(plans['architecture']['arch_kwargs']['features_per_stage'])} stages), "
        f"weights at their random initialisation (timing only), no TTA, {len(conditions) + 1} conditions (clean, "
        f"{', '.join(f'{f}:{s}' for f, s in conditions)}). A measurement is one `run` then one naive loop, each "
        f"into empty folders; it is {rule(window_for(args.run_max_rounds), args.run_max_rounds)}. Medians: "
        f"run's loop {t['run_loop']:.1f} s, of which {t['run_predictor']:.1f} s inside nnU-Net's predictor (busy "
        f"{100 * t['busy']:.1f} %) and {t['run_input_space']:.1f} s of worker-thread time measuring what the model "
        f"saw; whole process {t['run_wall']:.1f} s against {t['naive']:.1f} s for the naive loop. Predictions of "
        f"the last measurement identical to the naive loop's: clean {counts['clean_identical']} of "
        f"{counts['clean']} cases ({100 * agreement_ours:.3f} % of "
        f"voxels; a second nnUNetv2_predict process agreed with the first on {100 * agreement_nnunet:.3f} %), "
        "corrupted "
        f"{counts['corrupted_identical']} of {counts['corrupted']}"
        + (" (on a GPU `run` corrupts with the GPU's random generator, `corrupt` with the CPU's: noisy inputs "
           "differ by design)." if not dry else "."),
        "",
    ]
    return figures, text


def surface_checks(device: str, dry: bool, judge, max_rounds: int = MAX_ROUNDS) -> tuple[list[Figure], list[str]]:
    """Step 3: its figures and its paragraph of the Markdown."""
    shape, repeats = ((20, 48, 48), 1) if dry else ((200, 512, 512), 3)
    result = surface_metrics_on_device(device, shape, repeats, max_rounds)
    size = " x ".join(str(n) for n in shape)
    speedup = result["timing"].ratios["speedup"]
    figures = [
        Figure.timed(result["timing"], figure=f"surface metrics (HD95, ASSD, NSD) of 4 organs, {size}: ours on "
                                              f"{device} vs the CPU code (s)", ours=result["ours"],
                     reference=result["cpu"], ratio=speedup, goal=f"CPU / ours >= {SURFACE_SPEEDUP_GOAL:g}",
                     met=judge(speedup >= SURFACE_SPEEDUP_GOAL)),
        Figure(figure="surface metrics: largest |difference| from the CPU code's values", ours=result["difference"],
               reference=None, ratio=None, goal=f"<= {SURFACE_VALUES_GOAL:g}",
               met=judge(result["difference"] <= SURFACE_VALUES_GOAL)),
    ]
    monai = result.get("monai")
    if monai is not None:
        peer = monai["timing"]
        figures.append(Figure.timed(
            peer, figure=f"surface metrics (HD95, ASSD, NSD) of 4 organs, {size}: ours vs MONAI, both on {device} "
                         f"(cuCIM {'installed' if monai['cucim'] else 'not installed: its distance transform on the CPU'})"
                         " (s)", ours=peer.times["ours"], reference=peer.times["reference"],
            ratio=peer.ratios["speedup"], goal="MONAI / ours >= 1", met=judge(peer.ratios["speedup"] >= 1)))
    peer_text = ("MONAI is not installed (`pip install monai`, and cuCIM with CuPy for its GPU distance transform): "
                 "no peer figure." if monai is None else
                 f"MONAI's three metrics with the masks on {device} (cuCIM {'installed' if monai['cucim'] else 'not installed'}"
                 f"), timed the same way against ours; its values differ from ours by up to {monai['difference']:.3g} "
                 "(its surface is the masks' boundary voxel centres, ours surface elements weighted by their area; "
                 "results/metrics.md states each definition), so no value goal applies to it.")
    text = [f"**Surface metrics**: a synthetic SegTHOR-sized pair ({size} voxels of {SEGTHOR_SPACING} mm, four "
            f"organs, {result['surface_voxels']} foreground voxels per organ in both masks), HD95, ASSD and NSD at "
            f"1 mm per organ; ours " + ("through `compare_masks(device=\"cuda\")` (the path of `eval -device cuda`), "
                                        f"median of {repeats} after a warm-up" if not dry else
                                        "`surface_distances_torch` on CPU tensors (dry mode)")
            + f", then the CPU code once; that is one measurement, {rule(window_for(max_rounds), max_rounds)}. "
            + peer_text, ""]
    return figures, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cuda: the real check; cpu: dry mode (tiny sizes, goals not judged)")
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / ".work" / "gpu_check")
    parser.add_argument("--part", choices=("all", "run", "metrics"), default="all",
                        help="run: only the run checks; metrics: only the surface metrics (shorter re-checks)")
    parser.add_argument("--cases", type=int, default=None, help="test cases of the 3D model (default 8; dry 1)")
    parser.add_argument("--conditions", type=int, default=None, metavar="K",
                        help=f"the first K corruptions of {len(CONDITIONS)} (default all; dry 1)")
    parser.add_argument("--output", type=Path, default=None,
                        help="Markdown results (default results/gpu.md on CUDA; required in dry mode)")
    parser.add_argument("--max-rounds", type=max_rounds_option, default=None,
                        help=f"measurements at most of each corruption and of the surface metrics (default {MAX_ROUNDS}; "
                             f"dry mode {DRY_MAX_ROUNDS})")
    parser.add_argument("--run-max-rounds", type=max_rounds_option, default=None,
                        help=f"measurements at most of run vs the naive loop (default {RUN_MAX_ROUNDS}, ~6 min each "
                             "on an H200; dry mode 1)")
    args = parser.parse_args()
    dry = args.device == "cpu"
    # dry mode: one run measurement (its processes each import torch; CI proves the wiring, not the figure)
    default_rounds = (DRY_MAX_ROUNDS, 1) if dry else (MAX_ROUNDS, RUN_MAX_ROUNDS)
    args.max_rounds = args.max_rounds or default_rounds[0]
    args.run_max_rounds = args.run_max_rounds or default_rounds[1]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device; use --device cpu for the dry mode")
    output = args.output or (None if dry else REPO / "benchmarks" / "results" / "gpu.md")
    if output is None:
        raise SystemExit("the dry mode writes no results/gpu.md: give --output PATH")
    shape, repeats = ((32, 32, 32), 1) if dry else ((128, 128, 128), 5)
    cases, size, conditions = (1, 32, CONDITIONS[:1]) if dry else (8, 128, CONDITIONS)
    cases = args.cases or cases
    conditions = CONDITIONS[:args.conditions] if args.conditions else conditions
    started = time.perf_counter()

    corruption_rows = corruptions_on_device(args.device, shape, repeats, args.max_rounds) if args.part == "all" else []
    card = torch.cuda.get_device_name(0) if args.device == "cuda" else "no GPU (dry mode on the CPU)"
    judge = (lambda ok: None) if dry else (lambda ok: bool(ok))
    figures = corruption_figures(corruption_rows, args.device, shape, judge)
    run_part, run_text = run_checks(args, cases, size, conditions, judge) if args.part != "metrics" else ([], [])
    surface_part, surface_text = (surface_checks(args.device, dry, judge, args.max_rounds) if args.part != "run"
                                  else ([], []))
    figures += run_part + surface_part
    load = os.getloadavg()
    rows = [f"| {f.figure} | {f.ours:.2f} | {'-' if f.reference is None else f'{f.reference:.2f}'} | "
            f"{'-' if f.ratio is None else f'{f.ratio:.1f}'} | "
            f"{'-' if f.rounds is None else f'{100 * f.spread:.0f}% ({f.rounds})'} | {f.goal} | {verdict(f)} |"
            for f in figures]
    options = ("" if args.part == "all" else f" --part {args.part}") + ("" if args.cases is None else f" --cases {cases}") + (
        "" if args.conditions is None else f" --conditions {args.conditions}") + (
        "" if args.max_rounds == default_rounds[0] else f" --max-rounds {args.max_rounds}") + (
        "" if args.run_max_rounds == default_rounds[1] else f" --run-max-rounds {args.run_max_rounds}")
    text = "\n".join([
        "# GPU check" + (" (dry mode on the CPU: goals not judged)" if dry else "")
        + {"all": "", "run": " (run checks only)", "metrics": " (surface metrics only)"}[args.part],
        "",
        f"Generated by `python benchmarks/gpu_check.py --device {args.device}{options}` in "
        f"{time.perf_counter() - started:.0f} s "
        f"on {card}; {os.cpu_count()} CPUs ({platform.machine()}), torch {torch.__version__}, load average at the "
        f"end {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}.",
        "",
        "| figure | ours | reference | ratio | spread (measurements) | goal | met? |",
        "|---|---:|---:|---:|---:|---|---|",
        *rows,
        "",
        *([f"**Corruptions**: a {shape[0]}^3 float32 phantom at severity 3; a measurement is the median of "
           f"{repeats} run(s) of each after a warm-up, ours and TorchIO interleaved; it is "
           f"{rule(window_for(args.max_rounds), args.max_rounds)}. Ours is the full public call on the device "
           "(synchronised), TorchIO the equivalent deterministic transform on the CPU.", ""]
          if corruption_rows else []),
        *run_text,
        *surface_text,
    ])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    write_figures(output, "gpu", figures, device=card)
    print(text)


if __name__ == "__main__":
    main()

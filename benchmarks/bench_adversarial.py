"""Cost of an adversarial attack through nnU-Net's whole pipeline, against one clean prediction.

    python benchmarks/bench_adversarial.py [--workdir benchmarks/.work/adversarial] [--size 64] [--memory-size 128]
                                           [--max-rounds 5]

1. Time: one 3D case of ``--size``^3 voxels (default 64^3), PGD-10 L-inf (``adv_pgd_linf:3``, no TTA)
   vs one clean ``predict_single_npy_array`` of the same case, same process, same model. A measurement
   is the median of 3 clean predictions followed by one attack; it is repeated until the last 3 ratios
   (attack / clean) lie within 10 % of each other, at most ``--max-rounds`` times
   (``figures.repeat_until_stable``), and the goal is judged on the median of those ratios (still
   unstable: not judged). One measurement takes about 1.5-2 minutes on 2 quiet CPU cores (the attack 84-110 s
   on 2026-12-07), so the default cap is 5 measurements (at most ~10 min), not ``figures.MAX_ROUNDS`` (7);
   ``--max-rounds 1`` takes one measurement, as before the stability rule. The attack's own figures
   (tiles, loss, flipped voxels) come from the first attack: with seed 0 every attack is the same.
2. Peak memory for a ``--memory-size``^3 case (default 128^3): ``resource.getrusage(RUSAGE_SELF)
   .ru_maxrss`` (the peak resident set size, Linux: KiB) of a **fresh process** that loads the model
   and runs either one clean prediction or a one-step PGD attack followed by the clean prediction of
   the result. Peak memory does not depend on the number of steps (each step frees its tiles'
   graphs; the full-size arrays are allocated once per attack). To keep the run short the memory
   processes use ``tile_step_size=1`` (non-overlapping tiles): the tile-by-tile gradient keeps one
   tile's graph alive at a time, so the peak does not depend on the number of tiles either.
   ``tracemalloc`` is not used: it does not see torch's allocations.

The first call creates a synthetic 3D blobs dataset of 32^3 cases and trains ``nnUNetTrainer_tiny``
on it (patch 32^3; a few minutes on a CPU); later calls reuse it. Writes
``benchmarks/results/adversarial.md`` and its headline figures to ``adversarial.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from copy import deepcopy
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from figures import (
    Figure,
    Stable,
    load_note,
    max_rounds_option,
    repeat_until_stable,
    rule,
    settled,
    window_for,
    write_figures,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers.synthetic import _blob_case, write_nnunet_dataset  # noqa: E402

BIN = Path(sys.executable).parent
DATASET_ID, CONFIGURATION, TRAINER = 991, "3d_fullres", "nnUNetTrainer_tiny"
ATTACK = "adv_pgd_linf:3"  # severity 3: eps = 4/255 of the robust range, 10 steps
RATIO_GOAL = 60.0  # PGD-10 / clean prediction; ~ (1 + 10 x (1 forward + 1 forward-backward) + 1) passes
CLEAN_RUNS = 3  # clean predictions per measurement (median)
# A measurement takes ~1.5-2 min on 2 quiet CPU cores: at most 5 of them (~10 min), not figures.MAX_ROUNDS (7)
MAX_ROUNDS = 5


def environment(workdir: Path) -> dict:
    return {**os.environ, "nnUNet_n_proc_DA": "2", "nnUNet_def_n_proc": "2", "nnUNet_compile": "false",
            **{n: str(workdir / n) for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}


def prepare(workdir: Path) -> Path:
    env = environment(workdir)
    raw = Path(env["nnUNet_raw"]) / "Dataset991_Blobs3D"
    model = Path(env["nnUNet_results"]) / raw.name / f"{TRAINER}__nnUNetPlans__{CONFIGURATION}"
    if not (model / "fold_0" / "checkpoint_final.pth").is_file():
        print("preparing: dataset, plan, train (once)", flush=True)
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            Path(env[name]).mkdir(parents=True, exist_ok=True)
        write_nnunet_dataset(Path(env["nnUNet_raw"]), DATASET_ID, 3, n_train=5, n_test=1, size=32, seed=0)
        for args in (["nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c", CONFIGURATION, "-np", "1", "-npfp", "1"],
                     ["nnUNetv2_train", DATASET_ID, CONFIGURATION, "0", "-tr", TRAINER, "-device", "cpu"]):
            result = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return model


def predictor_for(model: Path, step_size: float = 0.5):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=step_size, use_mirroring=False, perform_everything_on_device=False,
                                device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), (0,), "checkpoint_final.pth")
    return predictor


def case(size: int) -> tuple[np.ndarray, dict]:
    image, _ = _blob_case((size,) * 3, np.random.default_rng(size))
    return image[None], {"spacing": [1.0, 1.0, 1.0]}


def memory_child(model: Path, size: int, mode: str) -> None:
    """Run in a fresh process; print the peak RSS (MiB) as JSON."""
    import resource

    from nnunet_robustness.adversarial import attack_case

    predictor = predictor_for(model, step_size=1.0)
    image, properties = case(size)
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    tiles = None
    if mode == "attack":
        result = attack_case(predictor, image, properties, "adv_pgd_linf:eps=0.0157;steps=1", seed=0)
        image, tiles = result.image, result.num_tiles
    predictor.predict_single_npy_array(image, deepcopy(properties), None, None, False)
    print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "after_load_mib": after_load, "seconds": time.perf_counter() - start, "tiles": tiles}))


def measure_memory(model: Path, size: int, mode: str, threads: int) -> dict:
    result = subprocess.run([sys.executable, __file__, "--memory-child", mode, "--memory-size", str(size),
                             "--model", str(model), "--threads", str(threads)], capture_output=True, text=True,
                            env={**os.environ})
    if result.returncode != 0:
        raise SystemExit(f"memory child ({mode}) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def ratio(times: dict[str, float]) -> dict[str, float]:
    return {"ratio": times["attack"] / times["clean"]}


def measure_until_stable(predict: Callable[[], object], attack: Callable[[], object],
                         clock: Callable[[], float] = time.perf_counter,
                         max_rounds: int = MAX_ROUNDS) -> tuple[Stable, object]:
    """Measurements (the median of ``CLEAN_RUNS`` clean predictions, then one attack) until the ratio
    settles, at most ``max_rounds``; returns it and the first attack's result."""
    results: list = []

    def measure() -> dict[str, float]:
        clean_times = []
        for _ in range(CLEAN_RUNS):
            start = clock()
            predict()
            clean_times.append(clock() - start)
        start = clock()
        result = attack()
        times = {"clean": statistics.median(clean_times), "attack": clock() - start}
        if not results:
            results.append(result)
        print(f"measurement: clean {times['clean']:.2f} s, attack {times['attack']:.1f} s: "
              f"{ratio(times)['ratio']:.1f}x", flush=True)
        return times

    return repeat_until_stable(measure, ratio, window=window_for(max_rounds), max_rounds=max_rounds), results[0]


def headline_figures(timing: Stable, memory: dict, size: int, memory_size: int) -> list[Figure]:
    return [
        Figure.timed(timing, figure=f"PGD-10 time / clean prediction time, {size}^3 3D case",
                     ours=timing.times["attack"], reference=timing.times["clean"], ratio=timing.ratios["ratio"],
                     goal=f"<= {RATIO_GOAL:g}", met=timing.ratios["ratio"] <= RATIO_GOAL),
        Figure(figure=f"peak RSS of PGD + prediction, {memory_size}^3 (MiB)",
               ours=memory["attack"]["peak_mib"], reference=memory["clean"]["peak_mib"],
               ratio=memory["attack"]["peak_mib"] / memory["clean"]["peak_mib"], goal="informational", met=None),
    ]


def markdown(timing: Stable, result, memory: dict, size: int, memory_size: int, threads: int,
             max_rounds: int = MAX_ROUNDS) -> str:
    clean, attack = timing.times["clean"], timing.times["attack"]
    extra = memory["attack"]["peak_mib"] - memory["clean"]["peak_mib"]
    rows = [
        (f"clean `predict_single_npy_array`, {size}^3, median of {CLEAN_RUNS} per measurement (s)", f"{clean:.2f}"),
        (f"PGD-10 L-inf (`{ATTACK}`), {size}^3, attack only (s)", f"{attack:.1f}"),
        (f"PGD-10 / clean prediction (goal <= {RATIO_GOAL:g})", f"{timing.ratios['ratio']:.1f}x"),
        ("spread of the ratios (max / min - 1)", settled(timing)),
        ("tiles per pass; network calls (forward or forward+backward) of the attack",
         f"{result.num_tiles}; {result.network_calls}"),
        ("attack loss (mean CE vs clean prediction): clean -> final",
         f"{result.loss_clean:.4f} -> {result.loss_final:.4f}"),
        ("voxels flipped away from the clean prediction (preprocessed grid)", f"{100 * result.flipped_fraction:.2f}%"),
        (f"peak RSS, clean prediction of {memory_size}^3 (MiB)", f"{memory['clean']['peak_mib']:.0f}"),
        (f"peak RSS, PGD attack + prediction of {memory_size}^3 (MiB)", f"{memory['attack']['peak_mib']:.0f}"),
        ("peak RSS after loading the model, before predicting (MiB)", f"{memory['clean']['after_load_mib']:.0f}"),
        (f"attack's extra peak memory at {memory_size}^3 (MiB)", f"{extra:.0f}"),
        (f"tiles of the {memory_size}^3 memory run (tile_step_size=1)", f"{memory['attack']['tiles']}"),
    ]
    return "\n".join([
        "# Adversarial attacks through the sliding window: cost",
        "",
        f"Model `{TRAINER}` (3d_fullres, patch 32^3, fold 0, no TTA), synthetic blob cases, CPU "
        f"({os.cpu_count()} cores, torch threads {threads}, {platform.machine()}); {load_note()}.",
        "The attack makes, per step, one no-grad pass over all tiles (aggregated logits and the loss "
        "gradient) and one pass that re-runs each tile with gradients and back-propagates its share "
        "(see `nnunet_robustness/adversarial/pipeline.py`), plus a clean and a final pass.",
        f"A measurement is the median of {CLEAN_RUNS} clean predictions then one attack, in one process; it is "
        f"{rule(window_for(max_rounds), max_rounds)}. The attack's tiles, loss and flipped voxels are those of "
        "the first attack (seed 0: every attack is the same).",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        "Peak memory is `ru_maxrss` of a fresh process per mode (model loading included in both); "
        "the difference is what the attack adds: the full-size float32 arrays (input, perturbation, "
        "normalisation slope, aggregated logits, their gradient, the Gaussian weight sum) and one "
        "tile's autograd graph, never a graph of the whole volume.",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / ".work" / "adversarial")
    parser.add_argument("--size", type=int, default=64, help="edge of the timed 3D case")
    parser.add_argument("--memory-size", type=int, default=128, help="edge of the 3D case for peak memory")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "adversarial.md")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 is faster on a small shared CPU")
    parser.add_argument("--max-rounds", type=max_rounds_option, default=MAX_ROUNDS,
                        help=f"measurements at most (default {MAX_ROUNDS}; ~1.5-2 min each on 2 CPU cores)")
    parser.add_argument("--memory-child", choices=("clean", "attack"), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        return memory_child(args.model, args.memory_size, args.memory_child)

    from nnunet_robustness.adversarial import attack_case

    model = prepare(args.workdir)
    predictor = predictor_for(model)
    image, properties = case(args.size)
    predictor.predict_single_npy_array(image, deepcopy(properties), None, None, False)  # warm-up
    timing, result = measure_until_stable(
        lambda: predictor.predict_single_npy_array(image, deepcopy(properties), None, None, False),
        lambda: attack_case(predictor, image, properties, ATTACK, seed=0), max_rounds=args.max_rounds)

    memory = {mode: measure_memory(model, args.memory_size, mode, torch.get_num_threads())
              for mode in ("clean", "attack")}
    text = markdown(timing, result, memory, args.size, args.memory_size, torch.get_num_threads(), args.max_rounds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    write_figures(args.output, "adversarial", headline_figures(timing, memory, args.size, args.memory_size),
                  device="CPU")
    print(text)


if __name__ == "__main__":
    main()

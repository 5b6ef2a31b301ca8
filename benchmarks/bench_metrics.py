"""Time of our surface metrics (HD95, ASSD, NSD) against DeepMind's ``surface-distance``, MONAI and
MedPy on 3D 128^3 mask pairs, with the differences between their values and ours.

Run: ``.venv/bin/python benchmarks/bench_metrics.py [--repeats 5] [--output benchmarks/results/metrics.md]``
Smoke run (32^3 pairs, one run per measurement, no goal judged): ``--quick``.

Every implementation does the full work for one structure from its two boolean masks, through its
public calls: surface-distance ``compute_surface_distances`` + ``compute_robust_hausdorff`` +
``compute_average_surface_distance`` + ``compute_surface_dice_at_tolerance``; MONAI
``compute_hausdorff_distance(percentile=95)`` + ``compute_average_surface_distance(symmetric=True)`` +
``compute_surface_dice(use_subvoxels=True)`` (each call finds the surfaces again, as a user's three
calls do); MedPy ``hd95`` + ``assd`` (it has no NSD); ours ``surface_distances`` +
``robust_hausdorff`` + ``average_symmetric_surface_distance`` + ``normalized_surface_dice``. A
measurement is the median of ``--repeats`` runs of each after one warm-up (which also builds our
per-spacing surfel-area table), the implementations interleaved so that load from other processes hits
all alike; it is repeated until the speed-ups settle (``figures.repeat_until_stable``). Single
process, single thread (MONAI's torch is set to one thread). A peer that is not installed is skipped
with a message (``pip install -e '.[bench]'`` installs them). With ``--output``, the headline figures
also go to the same path with ``.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from figures import (
    MAX_ROUNDS,
    STABLE_SPREAD,
    STABLE_WINDOW,
    Figure,
    Stable,
    least_settled,
    repeat_until_stable,
    write_figures,
)
from scipy import ndimage

SHAPE = (128, 128, 128)
QUICK_SHAPE = (32, 32, 32)
TOLERANCE_MM = 1.0
SPEEDUP_GOAL = 2.0  # surface-distance time / ours, on every pair
GEOMETRIC_MEAN_GOAL = 3.0  # surface-distance time / ours, geometric mean over the pairs
PEER_SPEEDUP_GOAL = 1.0  # every other CPU peer: its time / ours above this on every pair (faster)
SAME_VALUES_TOLERANCE = 1e-9  # largest |difference| of HD95/ASSD (mm) and NSD that counts as the same value
METRICS = ("hd95", "assd", "nsd")
LABELS = {"hd95": "HD95 (mm)", "assd": "ASSD (mm)", "nsd": "NSD at 1 mm"}
BASELINE = "surface-distance"  # same definitions as ours: values must match, speed-up goals above


def _ellipsoid(center, radii, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1


def pairs(shape: tuple[int, int, int] = SHAPE) -> list[tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]]:
    """Reference/prediction pairs resembling real evaluations, from good to poor predictions; the
    geometry is given at 128^3 and scaled to ``shape`` (``--quick`` uses 32^3)."""
    scale = shape[0] / SHAPE[0]

    def ellipsoid(center, radii):
        return _ellipsoid([c * scale for c in center], [r * scale for r in radii], shape)

    rng = np.random.default_rng(0)
    organ = ellipsoid((64, 60, 64), (40, 35, 45))
    shifted = ellipsoid((66, 62, 63), (38, 36, 44))
    grid = np.indices(shape, dtype=np.float32)
    wavy = organ ^ ((np.sin(grid[2] / (4 * scale)) > 0.8) & ndimage.binary_dilation(organ, iterations=2)
                    & ~ndimage.binary_erosion(organ, iterations=2))
    noisy = ndimage.binary_opening(organ ^ (rng.random(shape) < 0.02)) | (ndimage.binary_dilation(rng.random(shape) < 2e-4,
                                                                                                      iterations=2))
    small = ellipsoid((30, 90, 40), (6, 5, 7))
    small_prediction = ellipsoid((31, 90, 41), (5, 6, 6))
    return [
        ("large organ, good prediction", organ, ndimage.binary_erosion(organ), (1.0, 1.0, 1.0)),
        ("large organ, shifted", organ, shifted, (1.0, 1.0, 1.0)),
        ("large organ, shifted, anisotropic", organ, shifted, (2.5, 0.8, 0.8)),
        ("large organ, wavy boundary", organ, wavy, (1.0, 0.7, 0.7)),
        ("large organ, noisy + false-positive islands", organ, noisy, (1.5, 0.9, 0.9)),
        ("small lesion", small, small_prediction, (1.0, 1.0, 1.0)),
    ]


def ours(reference, prediction, spacing) -> dict[str, float]:
    from nnunet_robustness.metrics.surface import (
        average_symmetric_surface_distance,
        normalized_surface_dice,
        robust_hausdorff,
        surface_distances,
    )

    distances = surface_distances(reference, prediction, spacing)
    return {"hd95": robust_hausdorff(distances, 95), "assd": average_symmetric_surface_distance(distances),
            "nsd": normalized_surface_dice(distances, TOLERANCE_MM)}


def deepmind(reference, prediction, spacing) -> dict[str, float]:
    import surface_distance

    distances = surface_distance.compute_surface_distances(reference, prediction, spacing)
    return {"hd95": surface_distance.compute_robust_hausdorff(distances, 95),
            "assd": float(np.mean(surface_distance.compute_average_surface_distance(distances))),
            "nsd": surface_distance.compute_surface_dice_at_tolerance(distances, TOLERANCE_MM)}


def monai_metrics(reference, prediction, spacing) -> dict[str, float]:
    import torch

    # One-hot (batch, channel, ...) views of the masks, no copy; the single channel is the structure.
    return monai_on_tensors(torch.from_numpy(reference[None, None]), torch.from_numpy(prediction[None, None]),
                            spacing)


def monai_on_tensors(y, y_pred, spacing) -> dict[str, float]:
    """MONAI's three metrics of one-hot (1, 1, ...) mask tensors, on whatever device they are (gpu_check.py
    passes CUDA tensors)."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    spacing = list(spacing)
    return {"hd95": float(compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=spacing)),
            "assd": float(compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True,
                                                           spacing=spacing)),
            "nsd": float(compute_surface_dice(y_pred, y, [TOLERANCE_MM], include_background=True, spacing=spacing,
                                              use_subvoxels=True))}


def medpy_metrics(reference, prediction, spacing) -> dict[str, float]:
    from medpy.metric.binary import assd, hd95

    return {"hd95": float(hd95(prediction, reference, voxelspacing=spacing)),
            "assd": float(assd(prediction, reference, voxelspacing=spacing))}


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    module: str  # imported to tell whether the peer is installed
    package: str  # what pip installs
    compute: Callable[[np.ndarray, np.ndarray, tuple], dict[str, float]]
    metrics: tuple[str, ...]  # those it has; the time covers these


PEERS = (
    Peer(BASELINE, "surface_distance", "surface-distance", deepmind, METRICS),
    Peer("MONAI", "monai", "monai", monai_metrics, METRICS),
    Peer("MedPy", "medpy", "medpy", medpy_metrics, ("hd95", "assd")),
)

# Where a peer's definitions differ from ours (which are surface-distance's), for the notes under the
# value table; the size of each difference on the pairs is measured in the run.
DEFINITIONS = {
    "MONAI": (
        "Surface = the mask's voxels minus its erosion (6-connected), as voxel centres, every one counting "
        "alike; ours are surface elements at the voxel corners weighted by their marching-cubes area. HD95 "
        "is the larger of the two directed 95th percentiles (as ours) but with `torch.quantile`'s linear "
        "interpolation instead of the first element reaching 95 % of the area. ASSD with `symmetric=True` "
        "is the mean over the pooled distances of both directions (the surface with more voxels weighs "
        "more), not the mean of the two directed means. NSD with `use_subvoxels=True` uses "
        "surface-distance's surfels and areas (the closest definition; without it NSD counts voxels). "
        "Spacing scales the distances of all three (and the surfel areas of NSD). MONAI computes in "
        "float32."),
    "MedPy": (
        "Surface = the mask minus its erosion (`connectivity=1`, 6-connected) as voxel centres, like MONAI. "
        "`hd95` is the 95th percentile (linear interpolation) of the distances of *both* directions pooled, "
        "not the larger directed percentile, so it is at most the larger of the two. `assd` is the mean of "
        "the two directed means over voxels (unweighted). Spacing (`voxelspacing`) scales the distance "
        "transform. It has no NSD, and each of `hd95` and `assd` runs two distance transforms of the whole "
        "image (not of a bounding box), which is most of its time."),
}


def installed_peers() -> tuple[list[Peer], list[str]]:
    """The peers importable here, and a one-line note for each one that is not."""
    available, skipped = [], []
    for peer in PEERS:
        if importlib.util.find_spec(peer.module) is None:
            skipped.append(f"{peer.name} not installed (`pip install {peer.package}`, or `pip install -e '.[bench]'`): skipped")
        else:
            available.append(peer)
    if any(peer.name == "MONAI" for peer in available):
        import torch

        torch.set_num_threads(1)  # the other implementations are single-threaded numpy/scipy
    return available, skipped


def value_differences(ours_values: dict[str, float], peer_values: dict[str, float]) -> dict[str, float]:
    """|peer - ours| for every metric the peer has."""
    return {metric: abs(peer_values[metric] - ours_values[metric]) for metric in METRICS if metric in peer_values}


def measure(reference, prediction, spacing, peers: list[Peer], repeats: int,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds of each implementation over ``repeats`` interleaved runs."""
    functions = {"ours": ours, **{peer.name: peer.compute for peer in peers}}
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = clock()
            function(reference, prediction, spacing)
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def speedups(times: dict[str, float]) -> dict[str, float]:
    return {name: seconds / times["ours"] for name, seconds in times.items() if name != "ours"}


@dataclasses.dataclass
class PairResult:
    name: str
    spacing: tuple[float, ...]
    surface_voxels: tuple[int, int]
    values: dict[str, dict[str, float]]  # implementation -> metric -> value
    timing: Stable


def run_pairs(pair_list, peers: list[Peer], repeats: int, clock: Callable[[], float] = time.perf_counter,
              **stability) -> list[PairResult]:
    results = []
    for name, reference, prediction, spacing in pair_list:
        # The first call of each is the warm-up (imports, our surfel-area table); its values are compared.
        values = {"ours": ours(reference, prediction, spacing), **{p.name: p.compute(reference, prediction, spacing) for p in peers}}
        timing = repeat_until_stable(lambda: measure(reference, prediction, spacing, peers, repeats, clock), speedups,
                                     **stability)
        surface = tuple(int((m & ~ndimage.binary_erosion(m)).sum()) for m in (reference, prediction))
        results.append(PairResult(name, spacing, surface, values, timing))
        print(f"{name}: ours {1e3 * timing.times['ours']:.1f} ms; "
              + "; ".join(f"{p.name} {timing.ratios[p.name]:.1f}x" for p in peers)
              + f" (spread {100 * timing.spread:.0f}%, {timing.rounds} measurements)", flush=True)
    return results


def headline_figures(results: list[PairResult], peers: list[Peer], judge: bool = True) -> list[Figure]:
    figures = []
    names = [peer.name for peer in peers]
    # A goal on every pair (and on their mean) is judged only when every pair's speed-ups settled.
    every_pair = least_settled([r.timing for r in results])
    if BASELINE in names:
        ratios = [r.timing.ratios[BASELINE] for r in results]
        geometric_mean = float(np.exp(np.mean(np.log(ratios))))
        slowest = results[int(np.argmin(ratios))]
        largest = max(max(value_differences(r.values["ours"], r.values[BASELINE]).values()) for r in results)
        figures += [
            Figure.timed(every_pair, figure=f"HD95+ASSD+NSD time (ms), geometric mean of {len(results)} mask pairs",
                         ours=1e3 * float(np.exp(np.mean(np.log([r.timing.times["ours"] for r in results])))),
                         reference=1e3 * float(np.exp(np.mean(np.log([r.timing.times[BASELINE] for r in results])))),
                         ratio=geometric_mean, goal=f"surface-distance / ours >= {GEOMETRIC_MEAN_GOAL:g}",
                         met=geometric_mean >= GEOMETRIC_MEAN_GOAL),
            Figure.timed(every_pair, figure=f"HD95+ASSD+NSD time (ms), pair with the smallest speed-up ({slowest.name})",
                         ours=1e3 * slowest.timing.times["ours"], reference=1e3 * slowest.timing.times[BASELINE],
                         ratio=slowest.timing.ratios[BASELINE], goal=f"surface-distance / ours >= {SPEEDUP_GOAL:g}",
                         met=slowest.timing.ratios[BASELINE] >= SPEEDUP_GOAL),
            Figure(figure="largest |ours - surface-distance| over HD95, ASSD (mm) and NSD", ours=largest,
                   reference=None, ratio=None, goal=f"<= {SAME_VALUES_TOLERANCE:g} (same values)",
                   met=largest <= SAME_VALUES_TOLERANCE),
        ]
    for peer in peers:
        if peer.name == BASELINE:
            continue
        slowest = min(results, key=lambda r: r.timing.ratios[peer.name])
        ratio = slowest.timing.ratios[peer.name]
        metrics = "+".join(LABELS[m].split(" ")[0] for m in peer.metrics)
        figures.append(Figure.timed(
            every_pair, figure=f"time (ms), ours (HD95+ASSD+NSD) vs {peer.name} ({metrics}), pair with the smallest "
                                   f"speed-up ({slowest.name})",
            ours=1e3 * slowest.timing.times["ours"], reference=1e3 * slowest.timing.times[peer.name], ratio=ratio,
            goal=f"{peer.name} / ours > {PEER_SPEEDUP_GOAL:g} on every pair", met=ratio > PEER_SPEEDUP_GOAL))
        for metric in peer.metrics:
            differs = max(results, key=lambda r: value_differences(r.values["ours"], r.values[peer.name])[metric])
            figures.append(Figure(
                figure=f"{LABELS[metric]}: ours vs {peer.name}, pair where they differ most ({differs.name})",
                ours=differs.values["ours"][metric], reference=differs.values[peer.name][metric], ratio=None,
                goal="informational (definitions differ; see metrics.md)", met=None))
    if not judge:
        figures = [dataclasses.replace(f, met=None) for f in figures]
    return figures


def _difference(metric: str, ours_value: float, peer_value: float) -> str:
    relative = f" ({100 * (peer_value - ours_value) / ours_value:+.0f}%)" if metric != "nsd" and ours_value else ""
    return f"{metric} {peer_value - ours_value:+.2g}{relative}"


def markdown(results: list[PairResult], peers: list[Peer], skipped: list[str], repeats: int, quick: bool) -> str:
    names = [peer.name for peer in peers]
    lines = ["| pair | spacing (mm) | surface voxels (ref / pred) | ours (ms) | "
             + " | ".join(f"{n} (ms, speed-up)" for n in names) + " | spread (measurements) |",
             "|---|---|---:|---:|" + "---:|" * len(names) + "---:|"]
    for r in results:
        lines.append(f"| {r.name} | {', '.join(f'{s:g}' for s in r.spacing)} | {r.surface_voxels[0]} / {r.surface_voxels[1]} "
                     f"| {1e3 * r.timing.times['ours']:.0f} | "
                     + " | ".join(f"{1e3 * r.timing.times[n]:.0f} (**{r.timing.ratios[n]:.1f}x**)" for n in names)
                     + f" | {100 * r.timing.spread:.0f}% ({r.timing.rounds}){'' if r.timing.stable else ', unstable'} |")
    values = ["| pair | ours HD95 / ASSD (mm) / NSD | " + " | ".join(f"{n}: difference from ours" for n in names) + " |",
              "|---|---|" + "---|" * len(names)]
    for r in results:
        cells = [", ".join(_difference(m, r.values["ours"][m], r.values[n][m]) for m in METRICS if m in r.values[n])
                 for n in names]
        ours_values = " / ".join(f"{r.values['ours'][m]:.3f}" for m in METRICS)
        values.append(f"| {r.name} | {ours_values} | " + " | ".join(cells) + " |")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    size = "^".join(map(str, ((QUICK_SHAPE if quick else SHAPE)[0], 3)))
    header = (
        f"# Surface metrics: nnunet_robustness.evaluation vs {', '.join(names) or 'no peer'}"
        f"{' (quick smoke run: goals not judged)' if quick else ''}\n\n"
        "Generated by `.venv/bin/python benchmarks/bench_metrics.py --output benchmarks/results/metrics.md`. "
        f"Every implementation computes its surface metrics for one structure from two {size} boolean masks "
        "through its public calls (MedPy: HD95 + ASSD only, it has no NSD; ours always all three). A measurement is "
        f"the median of {repeats} runs after a warm-up, the implementations interleaved in one process; it is "
        f"repeated until the last {STABLE_WINDOW} speed-ups of every peer lie within {100 * STABLE_SPREAD:g} % "
        f"(max / min - 1), at most {MAX_ROUNDS} times, and the table gives the median of those {STABLE_WINDOW} "
        "(still unstable: goals not judged). "
        f"{platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}), single-threaded; load average at the end {load} "
        "(a shared machine: compare the ratios).\n\n"
        + "".join(f"- {note}\n" for note in skipped) + ("\n" if skipped else "")
    )
    notes = (
        "\n\nWhy it is faster than surface-distance: it runs two Euclidean distance transforms over the whole "
        "bounding box of both masks and then sorts every surface element in Python (`sorted(zip(...))`). We "
        "compute the 2x2x2 neighbourhood codes by array slicing, give surface points that lie on both surfaces "
        "distance 0 directly, find the nearest other-surface point for the rest with a k-d tree over surface "
        "points only (or one distance transform of the bounding box when the surface points are many for its "
        "size, as with scattered false positives), and order the distances with `numpy.lexsort`. Values agree "
        "with surface-distance to floating-point rounding (same surfel areas, same distance expression, same "
        "percentile rule).\n\n## Values\n\n"
        "Differences are the peer's value minus ours (HD95 and ASSD in mm and relative to ours, NSD as a "
        "fraction); they are computed on the warm-up call of each pair.\n\n"
        + "\n".join(values) + "\n\nWhere the definitions differ from ours (= surface-distance's):\n\n"
        + "".join(f"- **{n}**: {DEFINITIONS[n]}\n" for n in names if n in DEFINITIONS)
    )
    return header + "\n".join(lines) + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (median); default 5")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 32^3 pairs, one run per measurement, no goal judged")
    parser.add_argument("--output", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # surface-distance's scipy imports
    warnings.filterwarnings("ignore", category=FutureWarning, module="monai")  # its own deprecated defaults
    peers, skipped = installed_peers()
    for note in skipped:
        print(note, flush=True)
    repeats = 1 if args.quick else args.repeats
    results = run_pairs(pairs(QUICK_SHAPE if args.quick else SHAPE), peers, repeats)
    table = markdown(results, peers, skipped, repeats, args.quick)
    print(table)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table)
        write_figures(args.output, "metrics", headline_figures(results, peers, judge=not args.quick),
                      device="CPU, single thread")


if __name__ == "__main__":
    main()

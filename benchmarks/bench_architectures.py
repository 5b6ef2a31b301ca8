"""Training-iteration cost of our U-Net variants vs nnU-Net's networks at the same patch and batch.

One iteration = forward + deep-supervision loss + backward + SGD step, as nnU-Net's training loop
does (without data loading). Network topologies come from nnU-Net's own planner rule
(``get_pool_and_conv_props``, 32 base features doubling to 320 (3D) / 512 (2D), two convs per stage,
instance norm, leaky ReLU). Architectures are timed interleaved, round by round, so that machine
load drifts affect all of them alike; a measurement is the median over ``--rounds`` rounds, repeated
until each variant's ratio to nnU-Net's network settles (``figures.repeat_until_stable``: the last 3
within 10 %, at most 7 measurements), and the figure is the median of those 3.

    python benchmarks/bench_architectures.py [--rounds 3] [--device cpu]

Writes ``benchmarks/results/architectures.md`` and its headline figures to ``architectures.json``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from figures import MAX_ROUNDS, STABLE_SPREAD, STABLE_WINDOW, Figure, repeat_until_stable, write_figures
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
from torch import nn

from nnunet_robustness.architectures import (
    SkipSelectivePlainConvUNet,
    SkipSelectiveResidualEncoderUNet,
    count_parameters,
)

SETTINGS = {  # name: (patch size, batch size) at nnU-Net's minimum batch sizes
    "3D 64^3": ((64, 64, 64), 2),
    "2D 256^2": ((256, 256), 12),
}
VARIANTS = {
    "nnU-Net": None,
    "No-Skip": dict(skip_levels="none"),
    "Attention-gated": dict(attention_gates=True),
}
FAMILIES = {"PlainConvUNet": (PlainConvUNet, SkipSelectivePlainConvUNet),
            "ResidualEncoderUNet": (ResidualEncoderUNet, SkipSelectiveResidualEncoderUNet)}


def arch_kwargs(family: str, patch: tuple[int, ...]) -> dict:
    dim = len(patch)
    _, pool_strides, kernels, _, _ = get_pool_and_conv_props([1.0] * dim, patch, 4, 999999)
    n_stages = len(kernels)
    features = [min(320 if dim == 3 else 512, 32 * 2 ** i) for i in range(n_stages)]
    kwargs = dict(
        input_channels=1, n_stages=n_stages, features_per_stage=features,
        conv_op=nn.Conv3d if dim == 3 else nn.Conv2d, kernel_sizes=kernels, strides=pool_strides, num_classes=2,
        n_conv_per_stage_decoder=[2 if family == "PlainConvUNet" else 1] * (n_stages - 1), conv_bias=True,
        norm_op=nn.InstanceNorm3d if dim == 3 else nn.InstanceNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True,
    )
    if family == "PlainConvUNet":
        kwargs["n_conv_per_stage"] = [2] * n_stages
    else:
        kwargs["n_blocks_per_stage"] = [1, 3, 4, 6, 6, 6, 6, 6][:n_stages]
    return kwargs


def build(family: str, variant: str, patch: tuple[int, ...], device: torch.device) -> nn.Module:
    stock, ours = FAMILIES[family]
    cls_kwargs = VARIANTS[variant]
    net = stock(**arch_kwargs(family, patch)) if cls_kwargs is None else ours(**arch_kwargs(family, patch),
                                                                               **cls_kwargs)
    net.apply(net.initialize)
    return net.to(device).train()


def one_iteration(net: nn.Module, optimizer, x: torch.Tensor, device: torch.device) -> float:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    outputs = net(x)
    loss = sum(o.float().mean() * 0.5 ** i for i, o in enumerate(outputs))  # deep-supervision-shaped loss
    loss.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(rounds: int, device: torch.device, iteration=one_iteration, **stability) -> list[dict]:
    rows = []
    for setting, (patch, batch) in SETTINGS.items():
        for family in FAMILIES:
            torch.manual_seed(0)
            x = torch.rand(batch, 1, *patch, device=device)
            nets = {v: build(family, v, patch, device) for v in VARIANTS}
            optimizers = {v: torch.optim.SGD(n.parameters(), lr=1e-3, momentum=0.99, nesterov=True)
                          for v, n in nets.items()}
            for v in VARIANTS:  # warm-up
                iteration(nets[v], optimizers[v], x, device)

            def measure(nets=nets, optimizers=optimizers, x=x) -> dict[str, float]:
                times = {v: [] for v in VARIANTS}
                for _ in range(rounds):
                    for v in VARIANTS:
                        times[v].append(iteration(nets[v], optimizers[v], x, device))
                return {v: statistics.median(t) for v, t in times.items()}

            timing = repeat_until_stable(measure, lambda t: {v: t[v] / t["nnU-Net"] for v in VARIANTS if v != "nnU-Net"},
                                         **stability)
            for v in VARIANTS:
                seconds, ratio = timing.times[v], timing.ratios.get(v, 1.0)
                rows.append(dict(setting=setting, batch=batch, family=family, variant=v,
                                 params=count_parameters(nets[v]), seconds=seconds, ratio=ratio, timing=timing))
                print(f"{setting:9s} {family:20s} {v:16s} {seconds:7.3f} s  x{ratio:.3f} (spread "
                      f"{100 * timing.spread:.0f}%, {timing.rounds} measurements)", flush=True)
            del nets, optimizers
    return rows


def to_markdown(rows: list[dict], rounds: int, device: torch.device) -> str:
    lines = [
        "# Training iteration time: our U-Nets vs nnU-Net's",
        "",
        f"Forward + loss + backward + SGD step; a measurement is the median of {rounds} interleaved rounds after "
        f"one warm-up, repeated until every ratio to nnU-Net's network of the last {STABLE_WINDOW} measurements lies "
        f"within {100 * STABLE_SPREAD:g} % (max / min - 1), at most {MAX_ROUNDS} times; the table gives the median "
        f"of those {STABLE_WINDOW} (still unstable: goal not judged), "
        f"on {device.type.upper()} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}. "
        "Goal: No-Skip <= 1.0x, attention-gated <= 1.3x of nnU-Net's network at the same patch and batch.",
        "",
        "| patch | batch | family | network | parameters | s / iteration | ratio to nnU-Net | spread (measurements) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['batch']} | {r['family']} | {r['variant']} | {r['params']:,} | "
                     f"{r['seconds']:.3f} | {r['ratio']:.3f} | {100 * r['timing'].spread:.0f}% ({r['timing'].rounds})"
                     f"{'' if r['timing'].stable else ', unstable'} |")
    return "\n".join(lines) + "\n"


# Goal per variant: iteration time relative to nnU-Net's network at the same patch and batch.
RATIO_GOALS = {"No-Skip": 1.0, "Attention-gated": 1.3}


def headline_figures(rows: list[dict]) -> list[Figure]:
    baseline = {(r["setting"], r["family"]): r["seconds"] for r in rows if r["variant"] == "nnU-Net"}
    return [Figure.timed(r["timing"], figure=f"{r['variant']} {r['family']} {r['setting']}: s / training iteration",
                         ours=r["seconds"], reference=baseline[r["setting"], r["family"]], ratio=r["ratio"],
                         goal=f"ours / nnU-Net <= {RATIO_GOALS[r['variant']]}",
                         met=r["ratio"] <= RATIO_GOALS[r["variant"]])
            for r in rows if r["variant"] in RATIO_GOALS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 3 rounds per measurement (was 5 in one measurement): at least 9 timed iterations per network
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement (median)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "architectures.md")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = run(args.rounds, device)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(to_markdown(rows, args.rounds, device))
    write_figures(args.output, "architectures", headline_figures(rows),
                  device=torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""Training with learnable skip gates (``nnUNetTrainerLearnedSkip``, defined in ``variants``).

The network is the plans' own U-Net with a scalar sigmoid gate on every skip level
(:mod:`nnunet_robustness.architectures.gates`), initialised open (0.95). :class:`LearnedSkipGatesMixin`
adds two things to nnU-Net's trainer:

- an optional sparsity penalty ``gate_sparsity_weight * sum_levels mean(gate)`` added to the
  training loss (not to the validation loss, so nnU-Net's val curves stay comparable across
  trainers). Default 0: the gates then show which skips the segmentation loss itself keeps open. A
  subclass sets it as a class attribute, as ``nnUNetTrainerLearnedSkipL1`` does
  (``gate_sparsity_weight = 0.01``); it is recorded in the log json;
- the gate values per epoch in ``<fold folder>/learned_gates.json`` (rewritten atomically every
  epoch) and ``learned_gates.png`` (gate value against epoch per level, written at the end).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from nnunet_robustness.architectures.gates import gate_sparsity_penalty, gate_values, skip_weight_share
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_path, atomic_write_json

GATES_LOG_NAME = "learned_gates.json"
GATES_PLOT_NAME = "learned_gates.png"
LOG_FORMAT = 1


def unwrapped_network(network: nn.Module) -> nn.Module:
    """The network under nnU-Net's DDP and torch.compile wrappers (as nnU-Net's save_checkpoint does)."""
    network = getattr(network, "module", network)  # DistributedDataParallel
    return getattr(network, "_orig_mod", network)  # torch.compile's OptimizedModule


class GateSparsityLoss(nn.Module):
    """nnU-Net's loss plus ``weight * gate_sparsity_penalty`` while the network is in training mode.

    nnU-Net's trainer uses one loss object for training and validation and switches the network to
    eval mode for validation; keying on that mode adds the penalty to the training loss only.
    """

    def __init__(self, loss: nn.Module, network: Callable[[], nn.Module], weight: float) -> None:
        super().__init__()
        self.loss = loss
        self._network = network  # a callable, so the network's parameters are not registered twice
        self.weight = weight

    def forward(self, output: Any, target: Any) -> torch.Tensor:
        value = self.loss(output, target)
        network = self._network()
        if network.training:
            value = value + self.weight * gate_sparsity_penalty(network.decoder.learned_gates.values())
        return value


class LearnedSkipGatesMixin:
    """Gate sparsity penalty and per-epoch gate log for a trainer whose network has learned skip gates.

    Put before an nnUNetTrainer subclass in the bases; defines no ``__init__`` (our schedule variants
    set hyper-parameters in theirs).
    """

    gate_sparsity_weight: float = 0.0  # the L1 weight; a class attribute, set by subclassing

    def _build_loss(self):
        loss = super()._build_loss()
        if self.gate_sparsity_weight > 0:
            self.print_to_log_file(f"learned skip gates: L1 sparsity weight {self.gate_sparsity_weight}")
            return GateSparsityLoss(loss, lambda: unwrapped_network(self.network), self.gate_sparsity_weight)
        return loss

    def current_gate_values(self) -> dict[str, list[float]]:
        return gate_values(unwrapped_network(self.network).decoder.learned_gates)

    def current_gate_state(self) -> dict[str, Any]:
        decoder = unwrapped_network(self.network).decoder
        return {"gates": gate_values(decoder.learned_gates), "skip_weight_share": skip_weight_share(decoder)}

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.local_rank == 0 and self.current_epoch == 0:
            self._write_gates_log([], initial=self.current_gate_state())

    def on_epoch_end(self) -> None:
        # before nnU-Net's on_epoch_end, which increments current_epoch
        if self.local_rank == 0:
            path = Path(self.output_folder) / GATES_LOG_NAME
            try:
                previous = read_gates_log(path) if path.is_file() else {}
            except UserInputError:
                previous = {}  # an unreadable log must not stop a training; it is rewritten below
            # continued training re-runs epochs from the checkpoint on: those entries are replaced
            epochs = [e for e in previous.get("epochs", []) if e["epoch"] < self.current_epoch]
            epochs.append({"epoch": self.current_epoch, **self.current_gate_state()})
            self._write_gates_log(epochs, initial=previous.get("initial"))
            values = ", ".join(f"{level}: {_summary(v):.3f} / {epochs[-1]['skip_weight_share'][level]:.3f}"
                               for level, v in epochs[-1]["gates"].items())
            self.print_to_log_file(f"learned skip gates (level: mean gate / skip weight share): {values}")
        super().on_epoch_end()

    def on_train_end(self) -> None:
        path = Path(self.output_folder) / GATES_LOG_NAME
        if self.local_rank == 0 and path.is_file():
            write_gates_plot(read_gates_log(path), Path(self.output_folder) / GATES_PLOT_NAME)
        super().on_train_end()

    def _write_gates_log(self, epochs: list[dict], initial: dict | None) -> None:
        decoder = unwrapped_network(self.network).decoder
        modes = {gate.mode for gate in decoder.learned_gates.values()}
        atomic_write_json(Path(self.output_folder) / GATES_LOG_NAME, {
            "format": LOG_FORMAT,
            "trainer": type(self).__name__,
            "configuration": self.configuration_name,
            "fold": self.fold,
            "gate_mode": modes.pop() if len(modes) == 1 else sorted(modes),
            "gate_sparsity_weight": self.gate_sparsity_weight,
            "definition": "gate = sigmoid(logit) multiplying the skip features of each level before "
                          "concatenation; level 0 = full resolution skip; one value per level (scalar gates) "
                          "or per skip channel; logged after each epoch's training and validation. "
                          "skip_weight_share = |g * W_skip| / (|g * W_skip| + |W_up|) of the receiving decoder "
                          "stage's first convolution (invariant to trading gate size for skip weight size)",
            "skip_channels": {str(level): int(decoder.encoder.output_channels[level]) for level in decoder.skip_levels},
            "initial": initial,
            "epochs": epochs,
        })


def _summary(values: list[float]) -> float:
    return sum(values) / len(values)


def read_gates_log(path: Path) -> dict:
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserInputError(f"{path}: cannot read the learned gates log ({e})") from None


def write_gates_plot(log: dict, path: Path) -> None:
    """Gate value against epoch, one line per skip level (mean over channels, with the channel
    min-max band for per-channel gates)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # nnU-Net's progress plot sets a large seaborn font scale globally in the training process
    with plt.style.context("default"):
        _draw_gates_plot(plt, log, path)


def _draw_gates_plot(plt, log: dict, path: Path) -> None:
    entries = ([{"epoch": -1, **log["initial"]}] if log.get("initial") else []) + list(log["epochs"])
    figure, (gate_axis, share_axis) = plt.subplots(1, 2, figsize=(8, 3.2))
    levels = sorted(entries[-1]["gates"], key=int) if entries else []
    for index, level in enumerate(levels):
        x = [e["epoch"] for e in entries]
        series = [e["gates"][level] for e in entries]
        colour = f"C{index % 10}"
        gate_axis.plot(x, [_summary(v) for v in series], marker="o", markersize=3, color=colour, label=f"level {level}")
        if any(len(v) > 1 for v in series):
            gate_axis.fill_between(x, [min(v) for v in series], [max(v) for v in series], color=colour, alpha=0.15)
        share_axis.plot(x, [e["skip_weight_share"][level] for e in entries], marker="o", markersize=3, color=colour)
    # autoscaled: early in training the gates move by thousandths, which a 0..1 axis would hide
    gate_axis.set_ylabel("gate value")
    share_axis.set_ylabel("skip weight share")
    from matplotlib.ticker import MaxNLocator

    for axis in (gate_axis, share_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch (-1: initial)")
        axis.grid(alpha=0.3)
    gate_axis.legend(fontsize="small", title="skip level (0 = full res.)", title_fontsize="small")
    figure.suptitle(f"learned skip gates ({log['trainer']}, L1 weight {log['gate_sparsity_weight']:g})", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)

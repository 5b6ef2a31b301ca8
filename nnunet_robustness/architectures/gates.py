"""Learnable skip gates: one sigmoid gate per skip level that the network trains like any weight.

The gate multiplies the skip features before they are concatenated in the decoder:

    out = sigmoid(logit) * skip        # logit: one scalar, or one value per skip channel

so a gate near 1 keeps the skip, a gate near 0 closes it, and the decoder then sees (almost) only
the upsampled deeper features, i.e. it behaves like the No-Skip U-Net at that level. The gates start
open (``initial_gate``, default 0.95), so the untrained network is close to nnU-Net's U-Net and the
data decides which skips to close. An optional L1 penalty on the gate values (see
:func:`gate_sparsity_penalty`) pushes skips the loss does not need towards closed.

Why a sigmoid of a free logit rather than a clamped weight: it keeps the gate in (0, 1) without
projection steps, so nnU-Net's optimiser, gradient clipping and checkpoints need nothing special.
A gate is exactly 0 only for a logit of -inf (the tests use that to show a closed skip is ignored);
trained gates are small but positive, so a closed-looking skip still passes a scaled-down signal.

What a gate value does *not* say on its own: the decoder stage's first convolution is linear in the
concatenated input, so ``gate * W_skip`` is what acts on the skip, and training can trade a smaller
gate for larger skip weights (the L1 penalty even invites it). :func:`skip_weight_share` measures the
skip's share of that convolution, ``|g * W_skip| / (|g * W_skip| + |W_up|)`` (Frobenius norms), which
is invariant to that trade; the trainer logs both.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import nn

GateMode = Literal["scalar", "channel"]
GATE_MODES: tuple[str, ...] = ("scalar", "channel")
DEFAULT_INITIAL_GATE = 0.95


class LearnedSkipGate(nn.Module):
    """``sigmoid(logit) * x`` with one learnable logit (``mode="scalar"``) or one per channel of the
    skip (``mode="channel"``). ``initial_gate`` in (0, 1) is the gate value before training."""

    def __init__(self, channels: int, num_spatial_dims: int, mode: GateMode = "scalar",
                 initial_gate: float = DEFAULT_INITIAL_GATE) -> None:
        super().__init__()
        if mode not in GATE_MODES:
            raise ValueError(f"learned gate mode must be one of {', '.join(GATE_MODES)}, got {mode!r}")
        if not 0.0 < initial_gate < 1.0:
            raise ValueError(f"initial_gate must lie strictly between 0 and 1, got {initial_gate}")
        self.mode = mode
        # (1, C, 1, ...) broadcasts over batch and space; the scalar form is (1, 1, 1, ...)
        shape = (1, channels if mode == "channel" else 1, *(1,) * num_spatial_dims)
        self.logit = nn.Parameter(torch.full(shape, math.log(initial_gate / (1.0 - initial_gate))))

    def gate(self) -> torch.Tensor:
        """Gate values in [0, 1], shaped like ``logit``."""
        return torch.sigmoid(self.logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate().to(x.dtype)  # autocast: keep the skip's dtype for the concatenation

    def extra_repr(self) -> str:
        return f"mode={self.mode}, channels={self.logit.shape[1]}"


def gate_values(gates: nn.ModuleDict) -> dict[str, list[float]]:
    """Current gate values per skip level (level number as a string, as in the ModuleDict): one
    value for scalar gates, one per channel otherwise."""
    with torch.no_grad():
        return {level: gate.gate().flatten().float().cpu().tolist() for level, gate in gates.items()}


def gate_sparsity_penalty(gates: Sequence[LearnedSkipGate]) -> torch.Tensor:
    """L1 norm of the gate values, averaged per level and summed over levels.

    Gates are positive, so the L1 norm is their sum; averaging over channels makes the penalty of a
    per-channel gate comparable with a scalar one (weight 1e-2 means "closing one whole skip is worth
    0.01 of loss" in both modes). Differentiable; 0-dim tensor on the gates' device.
    """
    gates = list(gates)
    if not gates:
        raise ValueError("no learned gates: the network has no learned skip gate to penalise")
    return torch.stack([g.gate().mean() for g in gates]).sum()


def skip_weight_share(decoder: nn.Module) -> dict[str, float]:
    """Per gated skip level: ``|g * W_skip| / (|g * W_skip| + |W_up|)`` for the first convolution of
    the decoder stage that receives the skip (``W_up``: its weights on the upsampled channels, which
    come first in the concatenation; ``W_skip``: on the skip channels; per-channel gates scale their
    input channels). A weight-based proxy of how much the stage listens to the skip: 0 = not at all;
    not a measure on data (input magnitudes differ between the two parts)."""
    shares = {}
    with torch.no_grad():
        for level, gate in decoder.learned_gates.items():
            stage = decoder.num_skip_levels - 1 - int(level)
            weight = decoder.stages[stage].convs[0].conv.weight  # (out, C_up + C_skip, *kernel)
            skip_channels = gate.logit.shape[1] if gate.mode == "channel" else decoder.encoder.output_channels[int(level)]
            up, skip = weight[:, :-skip_channels], weight[:, -skip_channels:]
            g = gate.gate().reshape(1, -1, *(1,) * (weight.ndim - 2))
            skip_norm, up_norm = float(torch.linalg.vector_norm(skip * g)), float(torch.linalg.vector_norm(up))
            shares[level] = skip_norm / (skip_norm + up_norm) if skip_norm + up_norm > 0 else float("nan")
    return shares

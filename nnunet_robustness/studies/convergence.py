"""Has a training run converged? Read from nnU-Net's own per-epoch log, judged by one stated rule.

nnU-Net logs, per epoch, the pseudo Dice of the validation patches (``mean_fg_dice``) and its
exponential moving average (``ema_fg_dice``, ``0.9 * previous + 0.1 * new``,
``nnunetv2/training/logging/nnunet_logger.py``). The rule is applied to the *raw* pseudo Dice: the
EMA has a time constant of about ten epochs, so after a short schedule it still rises for epochs after
the network itself has stopped improving (the first wave's U-Net: raw slope +0.001 per epoch, EMA
slope +0.004). Where only the EMA was kept (older ``study.json`` files), the raw values are recovered
exactly by inverting the recursion.

**Rule**: the least-squares slope of the raw pseudo Dice over the last ``max(9, epochs / 4)`` epochs is
below :data:`CONVERGED_SLOPE` (0.002 Dice per epoch: less than 0.01 still to gain over five more epochs
at the current rate). A falling curve counts as converged (it has stopped improving; whether it *learned*
is the trivial baseline's question, :mod:`nnunet_robustness.studies.baseline`). Fewer than
``window + 1`` epochs cannot show a plateau: unconverged. Under nnU-Net's decaying learning rate a
plateau at the end of a short schedule can still hide gains a longer schedule would make; the rule
says the run stopped improving, not that it reached nnU-Net's 1000-epoch result.

**Why at least 9 epochs**: the raw pseudo Dice scatters around its trend (residual SD 0.001-0.006 over the
cpu scale's runs), and the slope of ``w`` points with scatter ``s`` has standard error
``s / sqrt(w (w^2 - 1) / 12)``. Nine is the shortest window for which, at the largest scatter seen (0.006),
a flat curve reads "unconverged" and one rising at twice the limit reads "converged" at most 1 % of the time
each (0.6 % simulated, 0.5 % from the slope's normal distribution; 5 epochs: 15 %, 8 epochs: 1.5-1.8 %),
measured by :func:`unconverged_rate` (``benchmarks/convergence_simulation.py``). A longer window would reach back into the approach to the
plateau, where the curve still bends, and call more finished runs unconverged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CONVERGED_SLOPE = 0.002  # Dice per epoch
MIN_WINDOW = 9  # the shortest window with both error rates <= 1 % at scatter 0.006 (module docstring)
RULE = (f"converged: the least-squares slope of nnU-Net's raw validation pseudo Dice over the last max({MIN_WINDOW}, "
        f"epochs/4) epochs is below {CONVERGED_SLOPE} per epoch")


@dataclass(frozen=True)
class Convergence:
    """One training run's convergence: the slope the rule judged and the verdict."""

    run: str
    epochs: int
    window: int
    slope: float | None  # Dice per epoch over the window; None without enough epochs
    last: float | None  # raw pseudo Dice of the last epoch
    converged: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def window_of(epochs: int, min_window: int = MIN_WINDOW) -> int:
    return max(min_window, math.ceil(epochs / 4))


def judge_curve(pseudo_dice: Sequence[float], run: str, min_window: int = MIN_WINDOW) -> Convergence:
    """The rule (module docstring) applied to one run's raw per-epoch pseudo Dice (``min_window`` other than
    the rule's only to measure alternatives, as the simulation does)."""
    values = np.asarray([v for v in pseudo_dice if v is not None and math.isfinite(v)], dtype=float)
    epochs, window = len(values), window_of(len(values), min_window)
    last = float(values[-1]) if epochs else None
    if epochs < window + 1:
        return Convergence(run, epochs, window, None, last, False,
                           f"{epochs} epochs logged: too few to see a plateau (needs {window + 1})")
    slope = float(np.polyfit(np.arange(window, dtype=float), values[-window:], 1)[0])
    if slope < CONVERGED_SLOPE:
        return Convergence(run, epochs, window, slope, last, True,
                           f"pseudo Dice {'falls' if slope < 0 else 'flat'} over the last {window} epochs "
                           f"({slope:+.4f} per epoch)")
    return Convergence(run, epochs, window, slope, last, False,
                       f"pseudo Dice still rises {slope:+.4f} per epoch over the last {window} epochs "
                       f"(rule: < {CONVERGED_SLOPE})")


def unconverged_rate(epochs: int, noise_sd: float, slope: float, repetitions: int = 2000, seed: int = 0,
                     min_window: int = MIN_WINDOW) -> float:
    """How often the rule reads "unconverged" for a curve that ends on a straight line of ``slope`` Dice per
    epoch with independent normal scatter of ``noise_sd`` per epoch (a simulation: a flat curve, ``slope``
    0, measures false "unconverged"; a rising one, 1 minus it measures false "converged")."""
    rng = np.random.default_rng(seed)
    epoch = np.arange(epochs, dtype=float)
    curves = 0.9 + slope * (epoch - epochs) + rng.normal(0.0, noise_sd, (repetitions, epochs))
    return float(np.mean([not judge_curve(curve, "simulated", min_window).converged for curve in curves]))


def raw_pseudo_dice(logging: dict[str, Sequence[float]]) -> list[float]:
    """nnU-Net's raw per-epoch pseudo Dice: ``mean_fg_dice``, or recovered from ``ema_fg_dice``
    (``x_0 = ema_0``, ``x_t = (ema_t - 0.9 ema_(t-1)) / 0.1``) where only the EMA was kept."""
    raw = list(logging.get("mean_fg_dice") or [])
    if raw:
        return [float(v) for v in raw]
    ema = [float(v) for v in logging.get("ema_fg_dice") or []]
    return ema[:1] + [(ema[t] - 0.9 * ema[t - 1]) / 0.1 for t in range(1, len(ema))]


def read_training_log(fold_folder: Path) -> dict[str, list[float]] | None:
    """nnU-Net's per-epoch log from ``checkpoint_final.pth`` of a finished training (None before)."""
    checkpoint = Path(fold_folder) / "checkpoint_final.pth"
    if not checkpoint.is_file():
        return None
    logging = _checkpoint_log(str(checkpoint), checkpoint.stat().st_mtime_ns)
    return {key: list(values) for key, values in logging.items()}


@lru_cache(maxsize=64)
def _checkpoint_log(checkpoint: str, mtime_ns: int) -> dict[str, tuple[float, ...]]:
    """The log of one checkpoint, read once per file version: a study's convergence checks and its training
    curves ask for the same runs, and each read loads the whole checkpoint (tens of MB)."""
    import torch

    # our own study's checkpoint, written by nnUNetv2_train (nnU-Net loads it the same way)
    logging = torch.load(checkpoint, map_location="cpu", weights_only=False).get("logging", {})
    return {key: tuple(float(v) for v in logging.get(key, []))
            for key in ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice")}


def check_training(fold_folder: Path, run: str) -> Convergence:
    """The rule applied to a finished training's fold folder; a missing log is unconverged."""
    logging = read_training_log(fold_folder)
    if logging is None:
        return Convergence(run, 0, MIN_WINDOW, None, None, False, f"no finished training in {fold_folder}")
    return judge_curve(raw_pseudo_dice(logging), run)

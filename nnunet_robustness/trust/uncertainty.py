"""Uncertainty of nnU-Net outputs: voxel maps, per-structure features, calibration (ECE, reliability,
temperature scaling) and the false-negative-rate curves used by conformal risk control.

Probabilities are nnU-Net's saved ``probabilities`` (softmax over labels, or one sigmoid per region
for region-based models), shape (channels, *image shape), in the original image geometry. The
"structure probability" q of a label is its softmax channel (the channel index is the label value,
nnU-Net's labels being consecutive); for a region it is the region's sigmoid channel.
Definitions of every feature: ``docs/trust.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from nnunet_robustness.metrics.masks import dice

# Floor of probabilities before taking logs: float32 softmax underflows to exactly 0.
PROBABILITY_FLOOR = 1e-7
# A voxel is "uncertain" for a structure when its structure probability is in this interval: the
# model gives the structure at least 10 % and at most 90 %.
UNCERTAIN_INTERVAL = (0.1, 0.9)
RELIABILITY_BINS = 15  # Guo et al. 2017 use 15 equal-width bins
# Thresholds over which the risk-controlling mask is searched (fixed before seeing data, as CRC asks).
THRESHOLDS = np.round(np.linspace(0.0, 1.0, 1001), 6)

# Structure size is reported but not a regression feature: under corruptions the predicted volume
# moves for reasons unrelated to accuracy (noise adds false-positive specks), and a size weight
# learned on clean cases then lifts the bound exactly when the model is worse.
BASE_FEATURES = ("expected_dice", "entropy_structure", "entropy_boundary", "uncertain_fraction")
FOLD_FEATURES = ("fold_dice_disagreement", "fold_std")


# Sign of each feature's weight in the Dice quantile regressions: more uncertainty never raises the
# bound, a higher expected Dice never lowers it.
FEATURE_SIGNS = {"expected_dice": +1, "entropy_structure": -1, "entropy_boundary": -1, "uncertain_fraction": -1,
                 "fold_dice_disagreement": -1, "fold_std": -1}


def feature_names(n_members: int) -> tuple[str, ...]:
    """Features the Dice bound uses: fold-spread features only when several fold predictions exist."""
    return BASE_FEATURES + (FOLD_FEATURES if n_members > 1 else ())


def feature_signs(names: Sequence[str]) -> list[int]:
    return [FEATURE_SIGNS[name] for name in names]


# --- probabilities -------------------------------------------------------------------------------------

_BLOCK_VOXELS = 1 << 20  # voxels per block of apply_temperature (~50 MB of float64 temporaries for 3 channels)


def apply_temperature(probabilities: np.ndarray, temperature: float, regions: bool) -> np.ndarray:
    """Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) on saved
    probabilities: log p is the logit up to a per-voxel constant, so softmax(log p / T) is exactly the
    softmax of the logits divided by T; for regions, sigmoid(logit(p) / T)."""
    if temperature == 1.0:
        return probabilities
    # Voxel by voxel, so computed in blocks of voxels: the float64 temporaries of a 512x512x300 case
    # would otherwise take ~4x its float32 probabilities (the arithmetic per voxel, and so the result, is
    # the same either way).
    flat = probabilities.reshape(probabilities.shape[0], -1)
    out = np.empty(flat.shape, dtype=np.float32)
    for start in range(0, flat.shape[1], _BLOCK_VOXELS):
        block = slice(start, start + _BLOCK_VOXELS)
        p = np.clip(flat[:, block].astype(np.float64), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
        if regions:
            logits = np.log(p) - np.log1p(-p)
            out[:, block] = 1 / (1 + np.exp(-logits / temperature))
        else:
            scaled = np.log(p) / temperature
            scaled -= scaled.max(axis=0, keepdims=True)
            exp = np.exp(scaled)
            out[:, block] = exp / exp.sum(axis=0, keepdims=True)
    return out.reshape(probabilities.shape)


def binary_entropy(q: np.ndarray) -> np.ndarray:
    """Entropy of "in the structure or not", in bits (0: certain, 1: q = 0.5)."""
    q = np.clip(q.astype(np.float64, copy=False), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def voxel_entropy(probabilities: np.ndarray, regions: bool) -> np.ndarray:
    """Per-voxel entropy normalised to [0, 1]: softmax entropy / log(C), or for regions the mean of the
    regions' binary entropies."""
    if regions:
        return np.mean([binary_entropy(q) for q in probabilities], axis=0)
    p = np.clip(probabilities.astype(np.float64, copy=False), PROBABILITY_FLOOR, 1.0)
    return -(p * np.log(p)).sum(axis=0) / math.log(probabilities.shape[0])


def max_probability(probabilities: np.ndarray) -> np.ndarray:
    return probabilities.max(axis=0)


def fold_spread(member_probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """Per-voxel standard deviation across fold predictions, averaged over channels."""
    return np.std(np.stack(member_probabilities), axis=0).mean(axis=0)


# --- per-structure features ----------------------------------------------------------------------------

def _structure(ndim: int) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, 1)


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Voxels within ``width`` voxels (face connectivity) of the mask's boundary, on both sides."""
    if not mask.any():
        return np.zeros_like(mask)
    structure = _structure(mask.ndim)
    outer = ndimage.binary_dilation(mask, structure, iterations=width)
    inner = ndimage.binary_erosion(mask, structure, iterations=width)
    return outer & ~inner


def neighbourhood(mask: np.ndarray, width: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, _structure(mask.ndim), iterations=width) if mask.any() else mask.copy()


def _mean_entropy(q: np.ndarray, mask: np.ndarray) -> float:
    return float(binary_entropy(q[mask]).mean()) if mask.any() else 0.0


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    # An empty region has no uncertainty to average; 0 keeps the feature finite (an absent structure
    # with scattered probability still shows up in expected_dice and uncertain_fraction).
    return float(values[mask].mean()) if mask.any() else 0.0


def structure_features(q: np.ndarray, predicted: np.ndarray, voxel_volume: float, band_width: int,
                       member_q: Sequence[np.ndarray] = (), member_masks: Sequence[np.ndarray] = (),
                       valid: np.ndarray | None = None) -> dict[str, float]:
    """Uncertainty features of one structure in one case (definitions in ``docs/trust.md``).

    ``q``: structure probability; ``predicted``: the rated segmentation's mask of the structure;
    ``member_q``/``member_masks``: the same per fold prediction (two or more, else no fold features);
    ``valid``: voxels to consider (outside nnU-Net's ignore label, when a reference says so).
    """
    if valid is not None:
        q, predicted = np.where(valid, q, 0), predicted & valid
    band = boundary_band(predicted, band_width)
    predicted_voxels = int(np.count_nonzero(predicted))
    soft_total = float(q.sum(dtype=np.float64)) + predicted_voxels
    low, high = UNCERTAIN_INTERVAL
    uncertain_voxels = int(np.count_nonzero((q >= low) & (q <= high)))
    features = {
        # Dice of the prediction against a reference drawn from q: 2 sum_{pred} q / (|pred| + sum q)
        "expected_dice": 1.0 if soft_total < 1e-6 else 2 * float(q[predicted].sum(dtype=np.float64)) / soft_total,
        # entropy only where it is averaged (the same values in the same order as masking a full map)
        "entropy_structure": _mean_entropy(q, predicted),
        "entropy_boundary": _mean_entropy(q, band),
        "uncertain_fraction": uncertain_voxels / max(predicted_voxels, 1),
        "uncertain_volume": uncertain_voxels * voxel_volume,
        "predicted_volume": predicted_voxels * voxel_volume,
    }
    if len(member_q) > 1:
        pairs = [dice(a, b) for i, a in enumerate(member_masks) for b in member_masks[i + 1:]]
        spread = np.std(np.stack(member_q), axis=0)
        features["fold_dice_disagreement"] = 1.0 - float(np.mean(pairs))
        features["fold_std"] = _mean(spread, predicted | band)
    return features


# --- calibration ---------------------------------------------------------------------------------------

@dataclass
class Reliability:
    """Reliability-diagram counts of one structure, pooled over voxels and cases: per equal-width bin
    of the structure probability, the number of voxels, the sum of q and the number in the reference."""

    bins: int = RELIABILITY_BINS
    count: np.ndarray = field(default=None)  # type: ignore[assignment]
    sum_confidence: np.ndarray = field(default=None)  # type: ignore[assignment]
    sum_positive: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        for name in ("count", "sum_confidence", "sum_positive"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.bins))

    def add(self, q: np.ndarray, positive: np.ndarray) -> None:
        index = np.minimum((q * self.bins).astype(np.int64), self.bins - 1)
        self.count += np.bincount(index, minlength=self.bins)
        self.sum_confidence += np.bincount(index, weights=q.astype(np.float64), minlength=self.bins)
        self.sum_positive += np.bincount(index, weights=positive.astype(np.float64), minlength=self.bins)

    def merge(self, other: "Reliability") -> "Reliability":
        return Reliability(self.bins, self.count + other.count, self.sum_confidence + other.sum_confidence,
                           self.sum_positive + other.sum_positive)

    @property
    def ece(self) -> float:
        """Expected calibration error sum_b (n_b / N) |mean q_b - frequency_b| (Guo et al. 2017, eq. 3,
        here one-vs-rest per structure)."""
        total = self.count.sum()
        if total == 0:
            return math.nan
        used = self.count > 0
        gap = np.abs(self.sum_confidence[used] - self.sum_positive[used])  # = n_b |mean q_b - freq_b|
        return float(gap.sum() / total)

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean confidence, observed frequency and count of the non-empty bins."""
        used = self.count > 0
        return (self.sum_confidence[used] / self.count[used], self.sum_positive[used] / self.count[used],
                self.count[used])

    def to_json(self) -> dict:
        return {"bins": self.bins, "count": self.count.tolist(), "sum_confidence": self.sum_confidence.tolist(),
                "sum_positive": self.sum_positive.tolist(), "ece": self.ece}

    @classmethod
    def from_json(cls, data: dict) -> "Reliability":
        return cls(int(data["bins"]), np.asarray(data["count"], float), np.asarray(data["sum_confidence"], float),
                   np.asarray(data["sum_positive"], float))


def nll(probabilities_sample: np.ndarray, targets: np.ndarray, regions: bool) -> float:
    """Mean negative log-likelihood of voxel samples: ``probabilities_sample`` (channels, n); targets
    are class indices (softmax) or (channels, n) booleans (regions)."""
    p = np.clip(probabilities_sample.astype(np.float64), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    if regions:
        return float(-(targets * np.log(p) + (1 - targets) * np.log1p(-p)).sum(axis=0).mean())
    return float(-np.log(p[targets, np.arange(p.shape[1])]).mean())


def fit_temperature(probabilities_sample: np.ndarray, targets: np.ndarray, regions: bool,
                    bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature T minimising the NLL of the sample (Guo et al. 2017), searched on log T."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda log_t: nll(apply_temperature(probabilities_sample, math.exp(log_t), regions), targets, regions),
        bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded", options={"xatol": 1e-4})
    return float(math.exp(result.x))


# --- risk-control curves -------------------------------------------------------------------------------

def safe_mask(q: np.ndarray, predicted: np.ndarray, threshold: float) -> np.ndarray:
    """The prediction enlarged by every voxel whose structure probability is >= threshold."""
    return predicted | (q >= threshold)


def fnr_curve(q: np.ndarray, predicted: np.ndarray, reference: np.ndarray, thresholds: np.ndarray = THRESHOLDS,
              valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """False-negative rate of ``safe_mask`` at every threshold, and its size in voxels.

    FNR = |reference \\ safe| / |reference|, and 0 for an empty reference (nothing to miss). Computed
    from one histogram: a voxel with probability q is outside the safe mask at threshold t iff q < t.
    """
    if valid is not None:
        q, predicted, reference = q[valid], predicted[valid], reference[valid]
    outside = ~predicted
    # searchsorted(side="right") = number of thresholds <= q, so q < thresholds[j] iff index <= j
    missed = np.bincount(np.searchsorted(thresholds, q[reference & outside], side="right"),
                         minlength=thresholds.size + 1)[: thresholds.size].cumsum()
    left_out = np.bincount(np.searchsorted(thresholds, q[outside], side="right"),
                           minlength=thresholds.size + 1)[: thresholds.size].cumsum()
    reference_voxels = int(np.count_nonzero(reference))
    fnr = missed / reference_voxels if reference_voxels else np.zeros(thresholds.size)
    size = np.count_nonzero(predicted) + np.count_nonzero(outside) - left_out
    return fnr.astype(float), size.astype(float)

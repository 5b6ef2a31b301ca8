"""Trust ratings for nnU-Net segmentations (``nnunet-robust calibrate`` / ``rate``).

From the probabilities nnU-Net saves (``run --save-probabilities``; one folder per fold for
fold-spread features): per-structure uncertainty features, calibration (ECE, reliability diagrams,
optional temperature scaling), a split-conformal lower bound on each case's Dice with a rating and a
review flag, and a "safe" mask whose expected false-negative rate is controlled by conformal risk
control. Definitions and guarantees: ``docs/trust.md``.

Example::

    from nnunet_robustness.trust import calibrate, rate, write_calibrator, load_calibrator
    calibrator = calibrate(["pred_cal"], "labelsCal", "dataset.json", alpha=0.1, fnr_target=0.1)
    write_calibrator(calibrator, "calibrator.json")
    result = rate(load_calibrator("calibrator.json"), ["pred_test"], "dataset.json", output="trust")
"""

from nnunet_robustness.trust.calibrator import (
    Calibrator,
    RatingResult,
    calibrate,
    load_calibrator,
    parse_bands,
    rate,
    write_calibrator,
)
from nnunet_robustness.trust.conformal import (
    DiceLowerBound,
    LinearQuantileModel,
    RiskControl,
    conformal_quantile,
    conformal_rank,
    conformal_risk_control,
)

__all__ = [
    "Calibrator", "DiceLowerBound", "LinearQuantileModel", "RatingResult", "RiskControl", "calibrate",
    "conformal_quantile", "conformal_rank", "conformal_risk_control", "load_calibrator", "parse_bands", "rate",
    "write_calibrator",
]

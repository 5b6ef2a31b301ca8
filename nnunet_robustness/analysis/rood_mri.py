"""ROOD-MRI's severity-weighted robustness summary, so our results can be set next to published ones.

Definition (Boone et al., "ROOD-MRI: Benchmarking the robustness of deep learning segmentation models
to out-of-distribution and corrupted data in MRI", NeuroImage 278, 2023,
https://doi.org/10.1016/j.neuroimage.2023.120289; reference implementation
``roodmri.metrics.calculate_metrics`` in https://github.com/AICONSlab/roodmri). For one model and
one corruption family, with ``m_s`` the mean of a metric over cases at severity ``s`` (``s`` = 1..5,
each level present in the data) and ``m_0`` its mean on the clean images:

- severity weights ``w_s = alpha ** s`` with ``alpha = 2/3`` (ROOD-MRI's default ``alpha_deg`` and
  ``alpha_oa``): mild corruptions, which are the likely ones in practice, weigh most;
- degradation ``D = sum_s w_s d_s / sum_s w_s`` with ``d_s = m_0 - m_s`` for metrics where higher is
  better (Dice) and ``d_s = m_s - m_0`` where lower is better (HD95), so a positive ``D`` is always a
  loss, in the metric's unit (ROOD-MRI's "Degradation", e.g. wDSC degradation);
- overall ``O = (m_0 + sum_s w_s m_s) / (1 + sum_s w_s)``: the clean level counts with weight 1
  (ROOD-MRI's "Overall", e.g. wmDSC).

Means over cases skip missing values (NaN), as pandas does in the reference code. Our own severity
summary (``auc``, the trapezoidal mean of the metric over severity 0..5, in the evaluation's
severity curves) weighs all levels alike; ROOD-MRI's numbers emphasise low severities. The two are
reported side by side; neither replaces the other.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.metrics.masks import METRICS

#: ROOD-MRI's default severity weighting parameter (``alpha_oa`` = ``alpha_deg`` = 2/3).
ROOD_MRI_ALPHA = 2.0 / 3.0

#: Whether a higher value is better, under the short names of ROOD-MRI's own tables; eval's metrics carry
#: their direction in the metric registry (``metrics/masks.py``).
HIGHER_IS_BETTER: dict[str, bool] = {"dice": True, "hd95": False, "nsd": True, "assd": False, "iou": True}


def rood_mri_summary(per_case: pd.DataFrame, metrics: Sequence[str] = ("dice", "hd95"), by_label: bool = True,
                     alpha: float = ROOD_MRI_ALPHA,
                     higher_is_better: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """ROOD-MRI's weighted degradation and overall score per (model, family[, label]) and metric.

    ``per_case`` has one row per model x condition x case (x label) with columns ``model``,
    ``family``, ``severity``, ``case``, ``label`` and the metric columns. Clean rows have ``family``
    None/NaN and ``severity`` 0; they are shared by all families of a model (and label). Rows of
    other conditions must have a family and a severity > 0 (preset conditions without a severity are
    left out). With ``by_label=False`` the metric is first averaged over labels per case.

    Returns columns ``model, family[, label], metric, clean, degradation, overall, severities`` (the
    severities present, sorted). Raises ``ValueError`` if a column is missing or a model has no clean rows.
    """
    directions = {**HIGHER_IS_BETTER, **{name: m.higher_is_better for name, m in METRICS.items()
                                         if m.higher_is_better is not None}, **(higher_is_better or {})}
    required = {"model", "family", "severity", "case", *metrics} | ({"label"} if by_label else set())
    missing = sorted(required - set(per_case.columns))
    if missing:
        raise ValueError(f"rood_mri_summary: per-case table lacks column(s) {', '.join(missing)}")
    unknown = [m for m in metrics if m not in directions]
    if unknown:
        raise ValueError(f"rood_mri_summary: say whether higher is better for {', '.join(unknown)} "
                         f"(higher_is_better={{...}})")
    if not 0 < alpha <= 1:
        raise ValueError(f"rood_mri_summary: alpha must be in (0, 1], got {alpha}")

    table = per_case.copy()
    table["severity"] = pd.to_numeric(table["severity"], errors="coerce")
    is_clean = table["family"].isna() & (table["severity"].fillna(0) == 0)
    keys = ["model", "label"] if by_label else ["model"]
    if not by_label:  # one value per case and condition: the mean over labels
        table = (table.assign(family=table["family"].astype(object).where(~is_clean, "__clean__"))
                 .groupby(["model", "family", "severity", "case"], dropna=False)[list(metrics)].mean().reset_index())
        is_clean = table["family"] == "__clean__"
    clean = table[is_clean].groupby(keys)[list(metrics)].mean()
    corrupted = table[~is_clean & table["family"].notna() & (table["severity"] > 0)]
    models_without_clean = sorted(set(corrupted["model"]) - set(clean.index.get_level_values("model")))
    if models_without_clean:
        raise ValueError(f"rood_mri_summary: no clean rows (family None, severity 0) for model(s) "
                         f"{', '.join(map(str, models_without_clean))}")
    # Mean over cases per severity: ROOD-MRI aggregates over subjects first.
    level_means = corrupted.groupby([*keys, "family", "severity"])[list(metrics)].mean().reset_index()

    rows = []
    for group_key, levels in level_means.groupby([*keys, "family"], sort=True):
        group = dict(zip([*keys, "family"], group_key))
        clean_key = tuple(group[k] for k in keys) if len(keys) > 1 else group[keys[0]]
        if clean_key not in clean.index:
            continue  # e.g. a label never present in the clean evaluation
        severities = levels["severity"].to_numpy(dtype=float)
        weights = alpha ** severities
        for metric in metrics:
            means = levels[metric].to_numpy(dtype=float)
            clean_mean = float(clean.loc[clean_key, metric])
            sign = 1.0 if directions[metric] else -1.0
            degradation = float(np.sum(weights * sign * (clean_mean - means)) / np.sum(weights))
            overall = float((clean_mean + np.sum(weights * means)) / (1.0 + np.sum(weights)))
            rows.append({**group, "metric": metric, "clean": clean_mean, "degradation": degradation,
                         "overall": overall, "severities": sorted(severities.tolist())})
    columns = ["model", "family", *keys[1:], "metric", "clean", "degradation", "overall", "severities"]
    return pd.DataFrame(rows, columns=columns)

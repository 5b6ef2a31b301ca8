"""Before and after robust training: what a corruption-augmented (or adversarially trained) model bought.

A robust trainer records what it trained with next to its checkpoints
(:class:`~nnunet_robustness.records.training_record.TrainingRecord`,
``<model folder>/robust_training_record.json``). ``eval`` reads it through each prediction folder's
``run.json`` and, for every pair of a robust model R and a model B trained without a record (the
baseline), reports on the same test cases:

- per corruption family, the paired difference in degradation R - B (the family's area under the
  degradation curve, per case; negative = R degrades less), marked *seen* when R trained on a family
  of the same effect group (what the family does to the image: blur, noise, intensity, k-space,
  structured artefacts; :data:`nnunet_robustness.condition_words.EFFECT_GROUPS`) and *unseen*
  otherwise, so microscope defocus counts as seen after training on Gaussian blur; a family outside
  the catalogue is its own group. These are the verdict's own family comparisons, with their
  report-wide Benjamini-Hochberg p;
- pooled over the seen families and over the unseen ones (per case, the mean area over the group's
  families), so "robust to what it saw" and "robust to what it did not see" each get one number;
- the clean cost: the paired difference of clean Dice R - B (negative = R is worse on clean images).

The pooled and clean rows are paired differences of per-case values with a 95 % interval (t united
with the studentized bootstrap) and a Wilcoxon test like every comparison of the report; their p-values are adjusted by Benjamini-Hochberg
over the rows of this table. Torch-free, like the rest of ``eval``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.strata import ALL_CASES, STRATUM
from nnunet_robustness.condition_words import family_effect
from nnunet_robustness.records.run_manifest import RunManifest
from nnunet_robustness.records.training_record import TrainingRecord

COLUMNS = ["robust", "baseline", "scope", "name", "group", "seen", "n", "mean_difference", "hodges_lehmann", "ci_low",
           "ci_high", "direction", "p_value", "p_fdr"]


def effect_group(family: str) -> str:
    """The group a family counts in for seen/unseen: its effect group, or the family itself outside the
    catalogue (a folder name eval cannot place)."""
    return family_effect(family) or family


def seen_groups(record: TrainingRecord) -> set[str]:
    return {effect_group(f) for f in record.seen_families}


def training_records(prediction_folders: Mapping[str, Path]) -> dict[str, TrainingRecord]:
    """model -> the record of the model behind its ``run`` output folder (models without one left out)."""
    records = {}
    for model, folder in prediction_folders.items():
        manifest = RunManifest.read_if_present(folder)
        if manifest is not None and manifest.model_folder.is_dir():
            record = TrainingRecord.read_if_present(manifest.model_folder)
            if record is not None:
                records[model] = record
    return records


def before_after(records: Mapping[str, TrainingRecord], models: list[str], comparisons: pd.DataFrame,
                 degradation: pd.DataFrame, per_case_clean: pd.DataFrame, label: str, seed: int,
                 n_bootstrap: int) -> pd.DataFrame:
    """The before/after table (module docstring) for every robust model x baseline pair.

    ``comparisons``: the report's robustness comparisons; ``degradation``: per-case degradation rows of
    the foreground mean (``robustness.per_case_degradation``); ``per_case_clean``: model, case, dice of
    the clean condition (foreground mean).
    """
    from nnunet_robustness.analysis import robustness

    rows = []
    areas = robustness.family_area(degradation[degradation["metric"] == "dice"]) if len(degradation) else None
    for robust in (m for m in models if m in records):
        seen = seen_groups(records[robust])
        for baseline in (m for m in models if m not in records):
            pair = {"robust": robust, "baseline": baseline}
            # per family: the verdict's own comparison, oriented robust - baseline
            family_rows = comparisons[(comparisons["scope"] == "family") & (comparisons["metric"] == "dice")
                                      & (comparisons["axis"] == "drop")
                                      & (comparisons["label"] == label)
                                      & comparisons["model_a"].isin([robust, baseline])
                                      & comparisons["model_b"].isin([robust, baseline])]
            for _, r in family_rows.iterrows():
                sign = 1.0 if r["model_a"] == robust else -1.0
                low, high = sorted((sign * r["ci_low"], sign * r["ci_high"]))
                group = effect_group(r["name"])
                rows.append({**pair, "scope": "family", "name": r["name"], "group": group, "seen": group in seen,
                             "n": r["n"],
                             "mean_difference": sign * r["mean_difference"],
                             "hodges_lehmann": sign * r["hodges_lehmann"], "ci_low": low, "ci_high": high,
                             "direction": sign * r["direction"],
                             "p_value": r["p_value"], "p_fdr": r["p_fdr"]})
            pooled = []
            if areas is not None and len(areas):
                wide = areas.pivot_table(index=["case", "family"], columns="model", values="area", aggfunc="first")
                if robust in wide and baseline in wide:
                    wide = wide[[robust, baseline]].dropna().reset_index()
                    in_seen_group = wide["family"].map(effect_group).isin(seen)
                    for group, is_seen in (("seen families", True), ("unseen families", False)):
                        members = wide[in_seen_group == is_seen]
                        if not len(members):
                            continue
                        per_case = members.groupby("case")[[robust, baseline]].mean()
                        d = (per_case[robust] - per_case[baseline]).to_numpy(dtype=float)
                        families = ", ".join(sorted(members["family"].unique()))
                        groups = ", ".join(sorted({effect_group(f) for f in members["family"].unique()}))
                        pooled.append({**pair, "scope": "pooled", "name": f"{group} ({families})", "group": groups,
                                       "seen": is_seen,
                                       **_paired(d, seed, n_bootstrap)})
            clean = per_case_clean.pivot_table(index="case", columns="model", values="dice", aggfunc="first")
            if robust in clean and baseline in clean:
                both = clean[[robust, baseline]].dropna()
                pooled.append({**pair, "scope": "clean", "name": "clean Dice (robust - baseline)", "group": None,
                               "seen": None,
                               **_paired((both[robust] - both[baseline]).to_numpy(dtype=float), seed, n_bootstrap)})
            if pooled:
                adjusted = robustness.benjamini_hochberg(np.array([r["p_value"] for r in pooled], dtype=float))
                rows += [{**r, "p_fdr": float(p)} for r, p in zip(pooled, adjusted)]
    return pd.DataFrame(rows, columns=COLUMNS)


def robust_training_table(records: Mapping[str, TrainingRecord], judged: list[str], runs: Mapping[str, Sequence[str]],
                          comparisons: pd.DataFrame, degradation_rows: pd.DataFrame, with_mean: pd.DataFrame,
                          clean: str | None, seed: int, n_bootstrap: int) -> pd.DataFrame:
    """``eval``'s before/after table (:func:`before_after` of the judged models on the pooled comparisons);
    empty without a robust model and a baseline, or with several runs per model (it reads one run per model)."""
    clean_foreground = with_mean[(with_mean["label"] == stats.FOREGROUND_MEAN) & (with_mean["condition"] == clean)]
    single_runs = all(len(members) == 1 for members in runs.values())
    return (before_after(records, judged, comparisons[comparisons[STRATUM] == ALL_CASES],
                         degradation_rows, clean_foreground, stats.FOREGROUND_MEAN, seed, n_bootstrap)
            if records and len(judged) > 1 and single_runs else pd.DataFrame())


def _paired(d, seed: int, n_bootstrap: int) -> dict:
    from nnunet_robustness.analysis.robustness import paired_difference

    result = paired_difference(d, seed, n_bootstrap)
    return {k: result[k] for k in ("n", "mean_difference", "hodges_lehmann", "ci_low", "ci_high", "direction",
                                   "p_value")}


def sentences(table: pd.DataFrame) -> list[str]:
    """One quotable sentence per robust/baseline pair and pooled group, and the clean cost (the verdict's
    rule ``robustness.detected``: BH-adjusted p < 0.05, the interval excludes 0, directions agree)."""
    from nnunet_robustness.analysis.robustness import detected

    out = []
    for _, r in table[table["scope"] != "family"].iterrows():
        numbers = (f"paired difference {r['mean_difference']:+.3f}, 95% CI [{r['ci_low']:+.3f}, "
                   f"{r['ci_high']:+.3f}], n = {int(r['n'])}, FDR-adjusted p = {r['p_fdr']:.3g}")
        found = detected(r)
        if r["scope"] == "clean":
            what = (("loses" if r["mean_difference"] < 0 else "gains") + " clean Dice" if found
                    else "changes clean Dice by no detectable amount")
            out.append(f"Clean cost: {r['robust']} {what} against {r['baseline']} ({numbers}).")
        else:
            what = (("degrades less" if r["mean_difference"] < 0 else "degrades more") + f" than {r['baseline']}"
                    if found else f"shows no detectable difference in degradation from {r['baseline']}")
            out.append(f"{r['name'][0].upper()}{r['name'][1:]}: {r['robust']} {what} (Dice, area over severities; "
                       f"{numbers}; negative = degrades less).")
    return out

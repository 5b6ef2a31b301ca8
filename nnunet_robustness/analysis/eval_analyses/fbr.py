"""Context vs FBR: the metric against the test image's foreground fraction, beside the range of the
training patches (``analysis/fbr.py``; the FBR columns of the per-case table); report section "Metric vs
test FBR"."""

from __future__ import annotations

from nnunet_robustness.analysis.eval_analyses.base import Analysis, Result, Section
from nnunet_robustness.reports.html import note, png, table


def _has_fbr_study(result: Result) -> bool:
    """A context condition was run, or a model has a training FBR log."""
    return (result.conditions["family"].eq("context").any()
            or any(result.settings.get("training_fbr_ranges", {}).values()))


def _fbr_section(result: Result) -> str:
    """HTML: metric vs test FBR per model, the training range shaded, and counts of flagged cases."""
    per_case = result.per_case
    if "test_fbr" not in per_case or not per_case["test_fbr"].notna().any():
        return note("No test FBR (no reference foreground).")
    import matplotlib.pyplot as plt

    cases = (per_case.groupby(["model", "condition", "case"], sort=False)
             .agg(dice=("dice", "mean"), test_fbr=("test_fbr", "first"), low=("training_fbr_low", "first"),
                  high=("training_fbr_high", "first"), outside=("fbr_outside_training", "first"))
             .reset_index())
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for index, model in enumerate(result.models):
        colour = f"C{index % 10}"
        rows = cases[cases["model"] == model]
        if rows["low"].notna().any():
            low, high = rows["low"].iloc[0], rows["high"].iloc[0]
            axis.axvspan(max(low, 1e-4), high, color=colour, alpha=0.12, linewidth=0,
                         label=f"{model}: training FBR {low:.2f}-{high:.2f}")
        axis.scatter(rows["test_fbr"].clip(lower=1e-4), rows["dice"], s=14, alpha=0.5, color=colour)
        means = rows.groupby("condition", sort=False)[["test_fbr", "dice"]].mean().sort_values("test_fbr")
        axis.plot(means["test_fbr"].clip(lower=1e-4), means["dice"], marker="o", color=colour, label=model)
    axis.set_xscale("log")
    axis.set_xlabel("test FBR (foreground fraction of the evaluated image)")
    axis.set_ylabel("Dice (per case, mean over labels)")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize="small")
    figure.tight_layout()
    image = png(figure)
    plt.close(figure)
    counts = (cases.groupby(["model", "condition"], sort=False)
              .agg(n=("case", "size"), fbr=("test_fbr", "mean"), dice=("dice", "mean"),
                   outside=("outside", lambda s: int(s.fillna(False).sum()) if s.notna().any() else None))
              .reset_index())
    rows = [[r["model"], r["condition"], r["n"], r["fbr"], r["dice"], r["outside"]] for _, r in counts.iterrows()]
    return (note("One point per case and condition; lines join the per-condition means. Shaded: the range of "
                 "foreground fractions of the training patches (fbr_train.json of the model's folds).")
            + image + table(["model", "condition", "cases", "mean test FBR", "mean Dice",
                             "cases outside training FBR"], rows, text_columns=(0, 1)))


# context conditions or FBR-logging trainers: the context-vs-FBR study
ANALYSIS = Analysis(
    name="FBR",
    sections=(Section(100, "Metric vs test FBR (foreground fraction)", _fbr_section, shown=_has_fbr_study),),
)

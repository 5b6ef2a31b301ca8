"""``study.html``: a seed study's verdict per finding first, then the paper-style table with the
published numbers beside it, the training curves, and how it was run (command, scale, wall time,
versions). Everything comes from ``study.json`` (``nnunet_robustness.studies.study_summary``)."""

from __future__ import annotations

from typing import Any

from nnunet_robustness.reports.html import esc, fmt, html_page, note, png, section, table

VERDICT_COLOURS = {"reproduced": "#d8f0d8", "not reproduced": "#f8d8d8", "inconclusive": "#f3f3f3",
                   "not evaluated": "#ffffff"}


def study_html(summary: dict[str, Any]) -> str:
    sections = [
        f"<p>{esc(summary['question'])}</p>",
        section("Verdict per finding", _findings(summary["findings"])),
        *[section(title, _table_plot(rows) + _records_table(rows)) for title, rows in summary["tables"].items()],
        *([section("Recommendation for example datasets (nnunet-robust recommend)",
                   _records_table(summary["recommendations"]))] if summary.get("recommendations") else []),
        section("Training curves", _curves(summary["training_curves"], summary["scale"])),
        section("Sanity gate (eval)", _checks(summary["model_checks"])),
        section("How this was run", _provenance(summary)),
    ]
    return html_page(f"{summary['title']} ({summary['scale']['name']} scale)", "".join(sections))


def study_markdown(summary: dict[str, Any]) -> str:
    """``study.md``: the verdicts and tables as Markdown, for docs and repositories that render it."""
    scale = summary["scale"]
    lines = [f"# {summary['title']} ({scale['name']} scale)", "", summary["question"], "",
             f"Command: `{summary['command']}` (device {summary['device']}); steps took "
             f"{summary['wall_seconds_steps'] / 60:.1f} min in all. Full report: study.html; data: study.json.", "",
             "## Verdict per finding", "",
             "| finding | verdict | paired difference | mean | 95% CI | n | FDR p | why | published |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in summary["findings"]:
        s = f["statistics"] or {}
        numbers = ([f"{s['mean_difference']:+.3f}", f"[{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]", str(s["n"]),
                    fmt(f["p_fdr"])] if s else ["n/a"] * 4)
        lines.append("| " + " | ".join([f["claim"], f"**{f['verdict']}**", f["difference"], *numbers, f["reason"],
                                         f["published"]]) + " |")
    lines += ["", *[f"- {f['sentence']}" for f in summary["findings"] if f.get("sentence")]]
    for title, rows in [*summary["tables"].items(), *([("Recommendation for example datasets",
                                                          summary["recommendations"])]
                                                        if summary.get("recommendations") else [])]:
        if not rows:
            continue
        header = list(rows[0])
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md(r[h]) for h in header) + " |" for r in rows]
    checks = summary.get("model_checks") or []
    if checks:
        lines += ["", "## eval's sanity gate", "", "| evaluation | model | mean clean Dice | gate |", "|---|---|---|---|"]
        lines += [f"| {c['evaluation']} | {c['model']} | {_md(c['clean_dice'])} | "
                  f"{'passed' if c['passed'] else 'failed: ' + '; '.join(c['reasons'])} |" for c in checks]
    return "\n".join(lines) + "\n"


def _md(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value).replace("|", "/")


def _findings(findings: list[dict]) -> str:
    def signed(value: Any) -> str:
        return "n/a" if value is None else f"{value:+.3f}"

    rows = []
    for f in findings:
        s = f["statistics"] or {}
        ci = f"[{signed(s['ci_low'])}, {signed(s['ci_high'])}]" if s else "n/a"
        rows.append([f["claim"], f["verdict"], f["difference"], signed(s.get("mean_difference")), ci,
                     signed(s.get("hodges_lehmann")), s.get("n"), f["p_fdr"], f["reason"], f["published"]])
    header = ["finding", "verdict", "paired difference", "mean", "95% CI", "Hodges-Lehmann", "n", "FDR p",
              "why", "published"]
    return (note("Each finding is a paired difference per test case whose expected sign is positive: reproduced "
                 "= the 95 % interval lies above 0 and the Benjamini-Hochberg-adjusted Wilcoxon p < 0.05 "
                 "(over this study's findings); not reproduced = the interval lies below 0 (the opposite holds); "
                 "inconclusive otherwise.")
            + table(header, rows, text_columns=(0, 1, 2, 8, 9),
                    row_styles=[f"background:{VERDICT_COLOURS.get(f['verdict'], '#ffffff')}" for f in findings])
            + "<ul>" + "".join(f"<li>{esc(f['sentence'])}</li>" for f in findings if f.get("sentence")) + "</ul>")


def _records_table(rows: list[dict]) -> str:
    if not rows:
        return note("No evaluation yet.")
    header = list(rows[0])
    text = [i for i, h in enumerate(header) if isinstance(rows[0][h], str)]
    return table(header, [[r.get(h) for h in header] for r in rows], text_columns=text)


def _table_plot(rows: list[dict]) -> str:
    """The paper-style plot of a table: its numeric columns (one line per model) against its last text
    column, one panel per value of the first text column when there are two."""
    if not rows:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = [k for k, v in rows[0].items() if isinstance(v, str)]
    numeric = [k for k in rows[0] if k not in text]
    if not text or not numeric:
        return ""
    panel_key = text[0] if len(text) > 1 else None
    panels = list(dict.fromkeys(r[panel_key] for r in rows)) if panel_key else [None]
    figure, axes = plt.subplots(1, len(panels), figsize=(min(4.5 * len(panels), 13), 3.4), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        chosen = [r for r in rows if panel_key is None or r[panel_key] == panel]
        x = [r[text[-1]] for r in chosen]
        for column in numeric:
            axis.plot(x, [r[column] if r[column] is not None else float("nan") for r in chosen], marker="o",
                      label=column)
        axis.set_xlabel(text[-1])
        axis.set_ylabel("mean Dice")
        axis.set_ylim(0, 1)
        axis.tick_params(axis="x", labelrotation=20)
        axis.grid(alpha=0.3)
        if panel_key:
            axis.set_title(f"{panel_key} {panel}")
    axes[0][0].legend(fontsize="small")
    figure.tight_layout()
    image = png(figure)
    plt.close(figure)
    return image


def _curves(curves: dict[str, dict[str, list[float]]], scale: dict) -> str:
    if not curves:
        return note("No finished training yet.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, curve in curves.items():
        epochs = range(1, len(curve["train_losses"]) + 1)
        line, = axes[0].plot(epochs, curve["train_losses"], marker=".", label=f"{name} train")
        axes[0].plot(epochs, curve["val_losses"], linestyle="--", marker=".", color=line.get_color())
        axes[1].plot(range(1, len(curve["ema_fg_dice"]) + 1), curve["ema_fg_dice"], marker=".",
                     color=line.get_color(), label=name)
    axes[0].set_title("loss (solid: training, dashed: validation)")
    axes[1].set_title("EMA pseudo Dice on validation patches")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize="x-small", loc="lower right")
    figure.tight_layout()
    image = png(figure)
    plt.close(figure)
    final = [[name, len(c["train_losses"]), c["train_losses"][-1] if c["train_losses"] else None,
              c["val_losses"][-1] if c["val_losses"] else None, c["ema_fg_dice"][-1] if c["ema_fg_dice"] else None]
             for name, c in curves.items()]
    return (note(f"nnU-Net's own per-epoch log of each model (schedule suffix '{scale['schedule'] or '1000 epochs'}'"
                 f"; about {scale['iterations']} iterations per model including validation).") + image
            + table(["model", "epochs", "final train loss", "final validation loss", "final EMA pseudo Dice"], final,
                    text_columns=(0,)))


def _checks(checks: list[dict]) -> str:
    if not checks:
        return note("No evaluation yet.")
    rows = [[c["evaluation"], c["model"], c["clean_dice"], c["iterations"], "passed" if c["passed"] else "failed",
             "; ".join(c["reasons"])] for c in checks]
    return (note("eval's gate per model (a model with mean clean Dice below 0.2 or mostly empty predictions fails "
                 "it); the study keeps every model in its findings, so a failed model's numbers are read with this "
                 "in mind.")
            + table(["evaluation", "model", "mean clean Dice", "training iterations", "gate", "why"], rows,
                    text_columns=(0, 1, 4, 5)))


def _provenance(summary: dict[str, Any]) -> str:
    scale = summary["scale"]
    steps = [[s["title"], s["status"], s["seconds"]] for s in summary["steps"]]
    versions = [[k, v] for k, v in summary["versions"].items()]
    return (f"<p>Command: <code>{esc(summary['command'])}</code> (device {esc(summary['device'])}); "
            f"its steps took {esc(round(summary['wall_seconds_steps'] / 60, 1))} min in all (summed over the "
            f"invocations that ran them; a reused step keeps the time it took when it ran).</p>"
            + table(["scale setting", "value"], [[k, str(v)] for k, v in scale.items()], text_columns=(0, 1))
            + table(["step", "status", "seconds"], steps, text_columns=(0, 1))
            + table(["package", "version"], versions, text_columns=(0, 1))
            + note(f"Machine: {summary['machine']}"))

"""``study.html``: a seed study's verdict per finding first, then the paper-style table with the
published numbers beside it, the training curves, and how it was run (command, scale, wall time,
versions). Everything comes from ``study.json`` (``nnunet_robustness.studies.study_summary``)."""

from __future__ import annotations

from typing import Any

from nnunet_robustness.reports.html import esc, html_page, note, png, section, table

VERDICT_COLOURS = {"reproduced": "#d8f0d8", "same direction, smaller": "#e8f4d8", "same direction, larger": "#e8f4d8",
                   "same direction": "#e8f4d8", "contradicted": "#f8d8d8", "inconclusive": "#f3f3f3",
                   "unconverged": "#fbe8c8", "not learned": "#f0d0f0", "not evaluated": "#ffffff"}


def study_html(summary: dict[str, Any]) -> str:
    sections = [
        f"<p>{esc(summary['question'])}</p>",
        section("Verdict per finding", _findings(summary["findings"])),
        *[section(title, _table_plot(rows) + _records_table(rows)) for title, rows in summary["tables"].items()],
        *([section("Recommendation for example datasets (nnunet-robust recommend)",
                   _records_table(summary["recommendations"]))] if summary.get("recommendations") else []),
        section("Training curves", _curves(summary["training_curves"], summary["scale"])),
        section("Arms: training runs, convergence, trivial baseline", _arms(summary.get("arms") or [],
                                                                           summary.get("convergence_rule", ""))),
        section("How this was run", _provenance(summary)),
    ]
    return html_page(f"{summary['title']} ({summary['scale']['name']} scale)", "".join(sections))


def study_markdown(summary: dict[str, Any]) -> str:
    """``study.md``: the verdicts and tables as Markdown, for docs and repositories that render it."""
    scale = summary["scale"]
    lines = [f"# {summary['title']} ({scale['name']} scale)", "", summary["question"], "",
             f"Command: `{summary['command']}` (device {summary['device']}); steps took "
             f"{summary['wall_seconds_steps'] / 60:.1f} min in all. Full report: study.html; data: study.json.", "",
             "## Verdict per finding", "", f"Rule: {_rule(summary)}", "",
             "| finding | published | ours (runs, 95% CI) | verdict | converged | why |",
             "|---|---|---|---|---|---|"]
    for f in summary["findings"]:
        lines.append("| " + " | ".join([f["claim"], _published(f), _ours(f), f"**{f['verdict']}**", _converged(f),
                                         f["reason"]]).replace("\n", " ") + " |")
    lines += ["", *[f"- {f['sentence']}" for f in summary["findings"] if f.get("sentence")]]
    for title, rows in [*summary["tables"].items(), *([("Recommendation for example datasets",
                                                          summary["recommendations"])]
                                                        if summary.get("recommendations") else [])]:
        if not rows:
            continue
        header = list(rows[0])
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md(r[h]) for h in header) + " |" for r in rows]
    arms = summary.get("arms") or []
    if arms:
        lines += ["", "## Arms", "", "| model | runs | converged runs | in-distribution Dice | trivial baseline | "
                  "learned |", "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(_arm_row(a)) + " |" for a in arms]
    return "\n".join(lines) + "\n"


def _md(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value).replace("|", "/")


def _signed(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and value != value) else f"{value:+.3f}"


def _rule(summary: dict[str, Any]) -> str:
    return next((f["rule"] for f in summary["findings"] if f.get("rule")), "")


def _published(f: dict) -> str:
    p = f["published"]
    if p.get("low") is None:
        return f"direction only ({p['source']})"
    size = _signed(p["low"]) if p["low"] == p["high"] else f"{_signed(p['low'])} to {_signed(p['high'])}"
    return f"{size} ({p['source']}{'; ' + p['conversion'] if p.get('conversion') else ''})"


def _ours(f: dict) -> str:
    s = f["statistics"] or {}
    if not s:
        return "n/a"
    runs = f"{s.get('runs_a', 1)} vs {s.get('runs_b', 1)} runs"
    return f"{_signed(s['mean_difference'])} [{_signed(s['ci_low'])}, {_signed(s['ci_high'])}], {runs}, n = {s['n']}"


def _converged(f: dict) -> str:
    converged = f.get("converged") or {}
    if not converged:
        return "n/a"
    return ", ".join(f"{model}: {'yes' if ok else 'no'}" for model, ok in converged.items())


def _findings(findings: list[dict]) -> str:
    rows = [[f["claim"], _published(f), _ours(f), f["verdict"], _converged(f), f["reason"],
             _signed((f.get("beside") or {}).get("mean_difference"))] for f in findings]
    header = ["finding", "published", "ours (95% CI, runs, cases)", "verdict", "converged", "why", "beside"]
    rule = next((f["rule"] for f in findings if f.get("rule")), "")
    besides = [f"{f['key']}: {f['beside']['what']} = {_signed(f['beside'].get('mean_difference'))} "
               f"[{_signed(f['beside'].get('ci_low'))}, {_signed(f['beside'].get('ci_high'))}]"
               for f in findings if (f.get("beside") or {}).get("mean_difference") is not None]
    return (note(f"Each finding is one difference per test case whose expected sign is positive, between two arms "
                 f"of training runs (intervals: the two-level bootstrap over runs and cases with several runs). "
                 f"{rule}")
            + table(header, rows, text_columns=(0, 1, 2, 3, 4, 5, 6),
                    row_styles=[f"background:{VERDICT_COLOURS.get(f['verdict'], '#ffffff')}" for f in findings])
            + ("<p>Beside: " + "; ".join(esc(b) for b in besides) + "</p>" if besides else "")
            + "<ul>" + "".join(f"<li>{esc(f['sentence'])}</li>" for f in findings if f.get("sentence")) + "</ul>")


def _arm_row(a: dict) -> list[str]:
    learned = a.get("learned") or {}
    ok = sum(1 for c in a["convergence"] if c["converged"])
    verdict = {True: "yes", False: "no", None: "unknown"}[learned.get("learned")] if learned else "unknown"
    return [a["model"], str(a["runs"]), f"{ok} of {len(a['convergence'])}", _md(learned.get("model_dice")),
            _md(learned.get("baseline_dice")), verdict]


def _arms(arms: list[dict], rule: str) -> str:
    if not arms:
        return note("No evaluation yet.")
    rows = [_arm_row(a) for a in arms]
    runs = [[a["model"], c["run"], c["epochs"], c["slope"], c["last"], "yes" if c["converged"] else "no", c["reason"]]
            for a in arms for c in a["convergence"]]
    return (note("Each arm is a model trained on several of nnU-Net's folds (its runs). Learned = its in-distribution "
                 "clean Dice beats the trivial baseline (the best image-independent prediction fitted on the training "
                 "labels: prior mask, everything or nothing), paired per case, 95 % interval above 0.")
            + table(["model", "runs", "converged runs", "in-distribution Dice", "trivial baseline", "learned"], rows,
                    text_columns=(0, 1, 2, 5))
            + (note(rule[0].upper() + rule[1:] + ".") if rule else "")
            + table(["model", "run", "epochs", "slope (Dice/epoch)", "last pseudo Dice", "converged", "why"], runs,
                    text_columns=(0, 1, 5, 6)))


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


def _schedules(scale: dict) -> str:
    """The scale's trainer schedules as words: its own, then each architecture that trains longer."""
    def words(schedule: str) -> str:
        return f"'{schedule}'" if schedule else "nnU-Net's 1000 epochs"

    longer = "".join(f"; {architecture} {words(schedule)}" + (f" ({only[0]})" if only else "")
                     for architecture, schedule, *only in scale.get("longer_schedules") or ())
    return f"schedule {words(scale['schedule'])}{longer}"


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
        raw = curve.get("mean_fg_dice") or []
        axes[1].plot(range(1, len(raw) + 1), raw, linestyle=":", color=line.get_color())
    axes[0].set_title("loss (solid: training, dashed: validation)")
    axes[1].set_title("pseudo Dice on validation patches (solid: EMA, dotted: raw)")
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
    return (note(f"nnU-Net's own per-epoch log of each model ({_schedules(scale)}; "
                 "the table's epochs are what each run logged).") + image
            + table(["model", "epochs", "final train loss", "final validation loss", "final EMA pseudo Dice"], final,
                    text_columns=(0,)))


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

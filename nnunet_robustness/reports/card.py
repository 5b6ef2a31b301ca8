"""The robustness card as Markdown and HTML, both from the card's JSON document (``analysis/card.py``).

One list of sections feeds both formats, in a fixed order with fixed row names, whatever the model: a
card of another model has the same lines in the same places, so a reader (or ``diff``) compares two cards
line by line. Absent information is written "n/a" in its place rather than left out.
"""

from __future__ import annotations

import html
from typing import Any

from nnunet_robustness.reports.html import fmt, html_page, table

Rows = list[list[Any]]
# a block: ("pairs", [[name, value], ...]) | ("table", header, rows) | ("list", [text, ...]) | ("text", text)
Block = tuple


def _interval(entry: dict | None, key: str = "mean") -> str:
    if not entry or entry.get(key) is None:
        return "n/a"
    return f"{fmt(entry[key])} [{fmt(entry.get('ci_low'))}, {fmt(entry.get('ci_high'))}]"


def _drop(entry: dict) -> str:
    return f"{fmt(entry.get('degradation'))} [{fmt(entry.get('ci_low'))}, {fmt(entry.get('ci_high'))}]"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(fmt(v) if isinstance(v, (int, float)) else str(v) for v in value) or "n/a"
    return fmt(value)


def _size(values: list | None) -> str:
    """A patch size or spacing as nnU-Net prints it: 128 x 128 x 128."""
    return "n/a" if not values else " x ".join(fmt(v) for v in values)


def sections(card: dict) -> list[tuple[str, list[Block]]]:
    """The card's sections: (title, blocks), the same titles and row names for every card."""
    return [*_model_sections(card), *_robustness_sections(card), *_context_sections(card)]


def _model_sections(card: dict) -> list[tuple[str, list[Block]]]:
    """The model, its training and its clean scores."""
    model, training = card["model_summary"], card["training"]
    gate = training["sanity_gate"]
    out: list[tuple[str, list[Block]]] = []
    out.append(("Model and plans", [("pairs", [
        ["model", card["model"]], ["dataset", model["dataset"]], ["trainer", model["trainer"]],
        ["plans", model["plans"]], ["configuration", model["configuration"]],
        ["network class", model["network_class"]], ["patch size", _size(model["patch_size"])],
        ["spacing (mm)", _size(model["spacing"])], ["batch size", model["batch_size"]], ["folds", model["folds"]],
        ["checkpoint", model["checkpoint"]], ["test-time mirroring", model["tta"]],
        ["model folder", model["model_folder"]], ["prediction folder", model["prediction_folder"]]])]))
    share = training["share_of_nnunet_default"]
    out.append(("Training schedule and sanity gate", [("pairs", [
        ["iterations (epochs x per epoch)", training["iterations"]],
        ["share of nnU-Net's default (1000 x 250)", None if share is None else f"{100 * share:.3g}%"],
        ["short schedule", training["short_schedule"]], ["sanity gate passed", gate["passed"]],
        ["kept in the verdict", gate["kept_in_verdict"]], ["clean Dice (gate)", gate["clean_dice"]],
        ["clean structures predicted empty", gate["empty_share"]],
        ["reasons", "; ".join(gate["reasons"]) or "none"]])]))
    clean = card["clean_scores"]
    out.append((f"Clean scores ({fmt(clean['n'])} cases; mean [95% CI], median)", [
        ("table", ["metric", "mean [95% CI]", "median"],
         [[name, _interval(clean["metrics"][name]), clean["metrics"][name]["median"]]
          for name in ("dice", "nsd", "hd95_mm", "assd_mm")]),
        ("pairs", [["lowest clean Dice", ", ".join(f"{c['case']} ({fmt(c['dice'])})" for c in clean["worst_cases"])
                    or "n/a"]])]))
    return out


def _robustness_sections(card: dict) -> list[tuple[str, list[Block]]]:
    """What the corruptions did: the operating envelope, the worst families, other conditions, subgroups."""
    envelope = card["operating_envelope"]
    tolerance = envelope["tolerance_dice"]
    out: list[tuple[str, list[Block]]] = []
    families = envelope["families"]
    out.append((f"Operating envelope (tolerance {fmt(tolerance)} Dice)", [
        ("text", f"Rule: the {envelope['rule']}."),
        ("table", ["family", "tolerated up to severity", "status", "Dice degradation [95% CI] by severity"],
         [[f["family"], f["largest_tolerated_severity"] if f["largest_tolerated_severity"] is not None else "none",
           f["status"], "; ".join(f"{fmt(s['severity'])}: {_drop(s)}" for s in f["severities"])]
          for f in families] or [["n/a", None, "no graded family", None]])]))
    out.append(("Worst families (mean Dice degradation over their severities)", [
        ("table", ["family", "mean degradation", "largest severity", "degradation there", "upper 95% bound"],
         [[w["family"], w["mean_degradation"], w["largest_severity"], w["degradation_at_largest"],
           w["ci_high_at_largest"]] for w in card["worst_families"]] or [["n/a", None, None, None, None]])]))
    others = card["other_conditions"]
    out.append(("Other conditions (presets, attacks, single levels)", [
        ("table", ["condition", "family", "Dice degradation [95% CI]", f"within {fmt(tolerance)}"],
         [[o["condition"], o["family"], _drop(o), o["within"]] for o in others] or [["none", None, None, None]]),
        ("pairs", [["cancelled by the model's normalisation", ", ".join(card["cancelled_conditions"]) or "none"]])]))
    groups = card["subgroups"]
    out.append(("Subgroups", [
        ("table", ["grouping", "group", "cases", "clean Dice [95% CI]", "mean degradation", "worst condition",
                   "its degradation (upper bound)", f"conditions beyond {fmt(tolerance)}"],
         [[g["grouping"], g["group"], f"{g['cases']}{' (small)' if g['small'] else ''}", _interval(g["clean_dice"]),
           g["mean_degradation"], g["worst_condition"], f"{fmt(g['worst_degradation'])} ({fmt(g['worst_ci_high'])})",
           g["conditions_beyond_tolerance"]] for g in groups or []]
         or [["none given", None, None, None, None, None, None, None]])]))
    return out


def _context_sections(card: dict) -> list[tuple[str, list[Block]]]:
    """Beyond the synthetic conditions, and where the numbers come from: real shift, conformal ratings,
    the ROOD-MRI summary, the evaluation's verdict, versions and commands, notes."""
    evaluation = card["evaluation"]
    out: list[tuple[str, list[Block]]] = []
    shifts = card["real_shift"]
    out.append(("Real shift (other sites or scanners)", [
        ("table", ["shifted set", "cases", "clean Dice", "Dice there", "degradation [95% Welch CI]",
                   "best predicting condition (Kendall tau [95% CI])"],
         [[r["shift"], r["cases"], r["clean_dice"], r["shift_dice"],
           f"{fmt(r['degradation'])} [{fmt(r['degradation_ci_low'])}, {fmt(r['degradation_ci_high'])}]",
           "n/a" if r["best_predictor"] is None else
           f"{r['best_predictor']['condition']} ({fmt(r['best_predictor']['kendall_tau'])} "
           f"[{fmt(r['best_predictor']['tau_ci_low'])}, {fmt(r['best_predictor']['tau_ci_high'])}])"]
          for r in shifts or []] or [["none given", None, None, None, None, None]])]))
    out.append(("Conformal coverage and ratings", [("text", "not included" if card["conformal"] is None else
                                                    str(card["conformal"]))]))
    out.append(("ROOD-MRI-comparable summary", [
        ("table", ["family", "metric", "clean", "degradation", "overall", "severities"],
         [[r["family"], r["metric"], r["clean"], r["degradation"], r["overall"], _text(r["severities"])]
          for r in card["rood_mri"]] or [["n/a", None, None, None, None, None]])]))
    out.append(("Verdict of the evaluation (all its models)", [("list", card["verdict"] or ["n/a"])]))
    versions = card["versions"]
    names = sorted(set(versions["eval"]) | set(versions["card"]))
    out.append(("Versions and commands", [
        ("table", ["package", "eval", "card"], [[n, versions["eval"].get(n), versions["card"].get(n)] for n in names]),
        ("pairs", [["eval command", evaluation["eval_command"]], ["card command", evaluation["card_command"]],
                   ["evaluation folder", evaluation["folder"]], ["cases", evaluation["cases"]],
                   ["labels", evaluation["labels"]], ["clean condition", evaluation["clean_condition"]],
                   ["reference", evaluation["reference"]], ["dataset.json", evaluation["dataset_json"]],
                   ["seed, bootstrap resamples", f"{fmt(evaluation['seed'])}, {fmt(evaluation['n_bootstrap'])}"],
                   ["NSD tolerance (mm)", evaluation["nsd_tolerance_mm"]]])]))
    out.append(("Notes", [("list", card["notes"] or ["none"])]))
    return out


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _md_cell(value: Any) -> str:
    return _text(value).replace("|", "\\|").replace("\n", " ")


def markdown(card: dict) -> str:
    lines = [f"# Robustness card: {card['model']}", ""]
    for title, blocks in sections(card):
        lines += [f"## {title}", ""]
        for block in blocks:
            if block[0] == "pairs":
                lines += ["| | |", "|---|---|", *[f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in block[1]], ""]
            elif block[0] == "table":
                header, rows = block[1], block[2]
                lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                          *["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows], ""]
            elif block[0] == "list":
                lines += [f"- {item}" for item in block[1]] + [""]
            else:
                lines += [block[1], ""]
    return "\n".join(lines)


def html_card(card: dict) -> str:
    parts = []
    for title, blocks in sections(card):
        body = []
        for block in blocks:
            if block[0] == "pairs":
                # a name-value list: names as row headers, no column header to leave empty
                body.append("<table>" + "".join(f"<tr><th class='text'>{html.escape(str(k))}</th><td class='text'>"
                                                 f"{html.escape(_text(v))}</td></tr>" for k, v in block[1]) + "</table>")
            elif block[0] == "table":
                rows = [[v if _numeric(v) else _text(v) for v in row] for row in block[2]]
                # numbers right-aligned to compare down a column, text (and "1 [0.9, 1]") left-aligned
                text = tuple(i for i in range(len(block[1])) if not any(_numeric(row[i]) for row in rows))
                body.append(table(block[1], rows, text_columns=text))
            elif block[0] == "list":
                body.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block[1]) + "</ul>")
            else:
                body.append(f"<p class='note'>{html.escape(block[1])}</p>")
        parts.append(f"<section><h2>{html.escape(title)}</h2>{''.join(body)}</section>")
    return html_page(f"Robustness card: {card['model']}", "".join(parts))

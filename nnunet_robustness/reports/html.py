"""The HTML every report shares: one self-contained page shell (inline style, no scripts, nothing
fetched) and the helpers that fill it, so the eval and trust reports look and format alike."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Iterable, Sequence

import numpy as np

GENERATOR = "nnunet-robust"
# the first line of the style sheet, which every report has carried since before the generator tag
_OLDER_REPORT_SIGN = ".warning { background: #fff4e0; border-left: 4px solid #e69500;"


def is_our_report(head: str) -> bool:
    """Whether the start of an HTML file is a report of this package (a command replaces only its own
    report.html, never one the user or another tool put there)."""
    return f'<meta name="generator" content="{GENERATOR}">' in head or _OLDER_REPORT_SIGN in head


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page (inline style, no scripts, nothing fetched) around ``body``; shared by
    every report of the package so they look alike."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} td.text, th.text {{ text-align: left; }}
img {{ max-width: 100%; }} .note {{ color: #555; font-size: 0.9em; }}
.warning {{ background: #fff4e0; border-left: 4px solid #e69500; padding: 0.5em 1em; }}
</style></head><body>
<h1>{esc(title)}</h1>
{body}
</body></html>
"""


def finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt(value: Any) -> str:
    """Numbers to text a reader can compare down a column: whole numbers as such, otherwise fixed
    decimals by magnitude (3 below 10, 2 below 100, 1 above), never scientific notation or "-0.000";
    values too small to show as "< 0.001"; undefined values (None, NaN, inf) as 'n/a'."""
    if value is None or isinstance(value, str):
        return "n/a" if value is None else value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if not finite(value):
        return "n/a"
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:  # severities, counts, tolerances: 3, not 3.000
        return str(int(value))
    magnitude = abs(value)
    if 0 < magnitude < 0.0005:
        return "< 0.001" if value > 0 else "> -0.001"
    decimals = 3 if magnitude < 10 else 2 if magnitude < 100 else 1
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def nan_array(values: Sequence[Any]) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in values])


def esc(value: Any) -> str:
    return html.escape(fmt(value))


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], text_columns: Sequence[int] = (),
          row_styles: Sequence[str] | None = None) -> str:
    """An HTML table; ``row_styles``: one inline CSS style per row (e.g. a background by verdict)."""
    def cell(tag: str, index: int, value: Any) -> str:
        css = " class='text'" if index in text_columns else ""
        return f"<{tag}{css}>{esc(value)}</{tag}>"

    rows = list(rows)
    styles = [f" style='{html.escape(style)}'" if style else "" for style in (row_styles or [""] * len(rows))]
    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(f"<tr{style}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>"
                   for row, style in zip(rows, styles))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def note(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


def png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='plot' src='data:image/png;base64,{encoded}'>"

#!/usr/bin/env python3
"""Does an HTML report fit a given width? Renders it in headless Chromium (Debian's ``chromium``) with a
small script injected that records the page's scroll width, and fails when it exceeds the window.

    scripts/check_report_width.py REPORT.html [REPORT.html ...] [--width 1400]

Not part of CI (Chromium is not installed there); run it after changing a report's layout.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = ("<script>window.addEventListener('load', () => document.body.setAttribute('data-scroll-width', "
         "document.documentElement.scrollWidth));</script>")


def scroll_width(report: Path, width: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe.html"
        probe.write_text(report.read_text().replace("</body>", PROBE + "</body>", 1))
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", f"--user-data-dir={folder}/profile", f"--window-size={width},1000",
             "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120).stdout
    match = re.search(r'data-scroll-width="(\d+)"', dom)
    if match is None:
        raise SystemExit(f"{report}: Chromium gave no measurement")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        print("needs Debian's chromium: apt-get install chromium", file=sys.stderr)
        return 2
    failed = 0
    for report in args.reports:
        measured = scroll_width(report, args.width)
        fits = measured <= args.width
        failed += not fits
        print(f"{'fits' if fits else 'OVERFLOWS'}: {report} is {measured} px wide in a {args.width} px window")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

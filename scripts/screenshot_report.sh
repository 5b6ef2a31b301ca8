#!/usr/bin/env bash
# Render an HTML report to PNG with headless Chromium (Debian's `chromium` package), to look at it as a
# person would. Not part of CI.
#   scripts/screenshot_report.sh [REPORT_HTML] [OUT_PNG] [WIDTHxHEIGHT]
# Defaults: the demo's report -> docs/report_screenshot.png, 1280x2200.
set -euo pipefail
report=${1:-demo_output/evaluation/report.html}
out=${2:-docs/report_screenshot.png}
size=${3:-1280x2200}
command -v chromium >/dev/null || { echo "needs Debian's chromium: apt-get install chromium" >&2; exit 1; }
[ -f "$report" ] || { echo "$report: no such report (run make demo first)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# the networking flags keep Chromium from reaching out (the report is self-contained)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size="${size/x/,}" --screenshot="$(realpath -m "$out")" "file://$(realpath "$report")" 2>/dev/null
echo "wrote $out"

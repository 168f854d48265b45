#!/usr/bin/env bash
# Makes docs/report.png, the picture of a run report the README shows: the
# committed report.html of the demo (run scripts/demo.sh first) or of the run
# given, drawn by headless Chromium (Debian's chromium) at 1200x1500 CSS pixels.
# Usage: scripts/report-screenshot.sh [REPORT.html] [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
report=${1:-$(ls -t demo/audiences/dt=*/run=*/report.html 2>/dev/null | head -1)}
out=${2:-docs/report.png}
if [ -z "$report" ] || [ ! -f "$report" ]; then
  echo "no report.html: run scripts/demo.sh first, or pass one" >&2
  exit 2
fi
chromium=${AUDIENCE_CHROMIUM:-/usr/bin/chromium}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# The flags keep the browser itself off the network (no updates, sync or first-run pages).
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
  --user-data-dir="$profile" --window-size=1200,1500 --screenshot="$out" \
  "file://$(realpath "$report")" 2>/dev/null
size=$(stat -c %s "$out")
echo "$out: $size bytes from $report"
if [ "$size" -gt 307200 ]; then
  echo "$out is over 300 KB" >&2
  exit 1
fi

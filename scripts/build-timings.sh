#!/usr/bin/env bash
# Measures the first build as a newcomer pays it: the demo's binary, built with
# cargo's --timings into an empty target directory (libtorch already laid out),
# then summarised by phase, crate family and unit (scripts/timings-summary.py).
# Usage: scripts/build-timings.sh [DIR]  (DIR: where the target directory and
# the report go; default a new temporary directory). docs/build.md quotes it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-$(mktemp -d)}"
mkdir -p "$dir"
export CARGO_TARGET_DIR="$dir/target"
if [ -e "$CARGO_TARGET_DIR/debug" ]; then
  echo "error: $CARGO_TARGET_DIR is not empty; a cold build needs an empty target directory" >&2
  exit 2
fi
source scripts/env.sh
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) logical CPUs"
start=$(date +%s)
cargo build --locked --bin audience --timings
echo "build wall: $(( $(date +%s) - start )) s"
python3 scripts/timings-summary.py "$CARGO_TARGET_DIR/cargo-timings/cargo-timing.html" 25
echo "report: $CARGO_TARGET_DIR/cargo-timings/cargo-timing.html"
